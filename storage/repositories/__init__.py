"""Repositories: one module per aggregate; each function takes a Session and never commits (the caller's unit
of work does)."""
