"""deploy/argilla-compose.yaml cannot run here (no Docker): check it against what argilla_server reads."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from annotation.stack.services import argilla_venv

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS_PROBE = """
import json
from argilla_server._version import __version__
from argilla_server.security.settings import Settings as AuthSettings
from argilla_server.settings import Settings
print(json.dumps({"version": __version__, "ARGILLA_": sorted(Settings.model_fields),
                  "ARGILLA_AUTH_": sorted(AuthSettings.model_fields)}))
"""


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "argilla-compose.yaml").read_text())


def _argilla_services(compose: dict) -> dict[str, dict]:
    return {n: s for n, s in compose["services"].items() if s["image"].startswith("argilla/argilla-server:")}


def test_compose_has_the_production_services_and_documents_its_secrets() -> None:
    compose = _compose()
    images = {name: s["image"] for name, s in compose["services"].items()}
    assert images["argilla"] == images["worker"] == "argilla/argilla-server:v2.8.0"
    assert images["elasticsearch"].split(":")[1].startswith("8.")
    assert images["postgres"] == "postgres:16"
    assert images["redis"] == "redis:7"
    assert "worker" in compose["services"]["worker"]["command"]
    required = set(re.findall(r"\$\{(\w+):\?", (DEPLOY / "argilla-compose.yaml").read_text()))
    readme = (DEPLOY / "README.md").read_text()
    assert required and all(f"{name}=" in readme for name in required)


@pytest.mark.argilla
def test_compose_argilla_variables_are_settings_argilla_server_reads(tmp_path: Path) -> None:
    python = argilla_venv() / "bin" / "python"
    if not python.exists():
        pytest.skip(f"Argilla server venv not installed ({python})")
    # Importing argilla_server builds the app: keep its UI copy and home dir inside tmp_path.
    env = {"TMPDIR": str(tmp_path), "ARGILLA_HOME_PATH": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [str(python), "-P", "-c", SETTINGS_PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    known = json.loads(done.stdout.strip().splitlines()[-1])

    services = _argilla_services(_compose())
    assert {s["image"].split(":v")[1] for s in services.values()} == {known["version"]}
    for name, service in services.items():
        for key in service["environment"]:
            if key.startswith("ARGILLA_AUTH_"):
                assert key.removeprefix("ARGILLA_AUTH_").lower() in known["ARGILLA_AUTH_"], (name, key)
            elif key.startswith("ARGILLA_"):
                assert key.removeprefix("ARGILLA_").lower() in known["ARGILLA_"], (name, key)
        assert service["environment"]["ARGILLA_DATABASE_URL"].startswith("postgresql+asyncpg://")
