"""The `pvar-loop` command line (entry point: loop.cli.app:main)."""
