"""The local Argilla stack: answers, authenticates the owner, has the workspace, restarts, stops cleanly."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import argilla as rg
import httpx
import pytest

from annotation.stack.local_stack import (
    STATE_FILE,
    ArgillaPrerequisiteError,
    ArgillaStackError,
    restart_server,
    stack_status,
    start_stack,
    stop_stack,
)
from annotation.stack.processes import is_alive
from tests.fixtures.argilla import ArgillaTarget

pytestmark = pytest.mark.argilla


def test_stack_answers_and_all_processes_run(argilla_stack: ArgillaTarget) -> None:
    assert httpx.get(f"{argilla_stack.url}/api/v1/me", headers=argilla_stack.headers).status_code == 200
    if argilla_stack.root is None:
        pytest.skip("external Argilla: no local processes to inspect")
    status = stack_status(argilla_stack.root)
    assert status.running
    assert set(status.processes) == {"redis", "osmem", "server", "worker"}
    assert all(p.rss_bytes > 0 for p in status.processes.values())


def test_owner_key_authenticates_with_the_sdk_and_workspace_exists(argilla_stack: ArgillaTarget) -> None:
    client = rg.Argilla(api_url=argilla_stack.url, api_key=argilla_stack.api_key)
    assert client.me.username == argilla_stack.username
    assert client.me.role == "owner"
    workspace = client.workspaces(argilla_stack.workspace)
    assert workspace is not None
    assert workspace.name == argilla_stack.workspace


def test_wrong_key_is_rejected(argilla_stack: ArgillaTarget) -> None:
    r = httpx.get(f"{argilla_stack.url}/api/v1/me", headers={"X-Argilla-Api-Key": "not-a-key"})
    assert r.status_code == 401


def test_create_annotator_via_rest(argilla_stack: ArgillaTarget) -> None:
    username = f"annotator-{secrets.token_hex(4)}"
    with httpx.Client(base_url=f"{argilla_stack.url}/api/v1", headers=argilla_stack.headers) as http:
        created = http.post(
            "/users",
            json={"first_name": "Ann", "username": username, "password": "s3cret-pass", "role": "annotator"},
        )
        assert created.status_code == 201, created.text
        user = created.json()
        workspaces = http.get("/me/workspaces").json()["items"]
        ws_id = next(w["id"] for w in workspaces if w["name"] == argilla_stack.workspace)
        added = http.post(f"/workspaces/{ws_id}/users", json={"user_id": user["id"]})
        assert added.status_code == 201, added.text
        member_names = {u["username"] for u in http.get(f"/workspaces/{ws_id}/users").json()["items"]}
        assert username in member_names

    # The new annotator's own key works and sees the workspace.
    own = {"X-Argilla-Api-Key": user["api_key"]}
    me = httpx.get(f"{argilla_stack.url}/api/v1/me", headers=own).json()
    assert (me["username"], me["role"]) == (username, "annotator")
    seen = httpx.get(f"{argilla_stack.url}/api/v1/me/workspaces", headers=own).json()["items"]
    assert [w["name"] for w in seen] == [argilla_stack.workspace]


@pytest.mark.slow
def test_private_stack_restarts_server_and_stops_without_leftovers(tmp_path: Path) -> None:
    """A second, private stack (the session one must keep running): start, restart the server, stop."""
    try:
        info = start_stack(tmp_path, workspace="ws-private")
    except ArgillaPrerequisiteError as e:
        pytest.skip(f"local Argilla stack not installed: {e}")
    try:
        state = tmp_path / STATE_FILE
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
        assert info.api_key in state.read_text()
        with pytest.raises(ArgillaStackError, match="already runs"):
            start_stack(tmp_path)
        assert rg.Argilla(api_url=info.url, api_key=info.api_key).workspaces("ws-private") is not None

        restarted = restart_server(tmp_path)
        assert not is_alive(info.processes["server"])
        assert restarted.processes["server"].pid != info.processes["server"].pid
        assert restarted.url == info.url
        assert stack_status(tmp_path).running
        # Data survives a server restart (Redis, osmem and the DB keep running).
        client = rg.Argilla(api_url=restarted.url, api_key=restarted.api_key)
        assert client.workspaces("ws-private") is not None
    finally:
        stopped = stop_stack(tmp_path, purge=True)

    refs = [*info.processes.values(), restarted.processes["server"]]
    assert not [r for r in refs if is_alive(r)]
    assert set(stopped) == {"redis", "osmem", "server", "worker"}
    assert not stack_status(tmp_path).running
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]
    assert (tmp_path / "logs" / "server.log").read_text().count("Application startup complete") == 2
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{info.url}/api/v1/me", headers={"X-Argilla-Api-Key": info.api_key})
