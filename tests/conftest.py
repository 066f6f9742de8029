"""Shared test set-up: heavy fixtures (tiny models, PostgreSQL, the Argilla stack) are built once a session."""

import os
from pathlib import Path

# Nothing in the test-suite may reach the Hugging Face Hub (it is unreachable here and must stay optional).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Every module in tests/fixtures/ is a plugin of session fixtures (database, tiny models, Argilla...).
pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)
