"""`pvar-loop annotators list|remove|reset-password` against the session Argilla server, the operator's own
prompt ids on Argilla records, and `argilla up` on the port of `[argilla] url`."""

from __future__ import annotations

import json
import logging
import re
import socket
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import select

from annotation.blind import annotator_datasets
from annotation.dataset import SOURCE_ID, open_dataset
from annotation.gateway import fetch_records
from annotation.records import flip
from loop.cli.app import main
from storage.models import AnnotationItem, Label, Prompt
from storage.statuses import RoundStatus
from tests.fixtures.argilla import ArgillaTarget
from tests.support.annotation_setup import make_round_items
from tests.support.argilla_helpers import annotator_in, fresh_workspace, own_records, owner, respond, unique

pytestmark = pytest.mark.argilla


def _project(
    tmp_path: Path,
    monkeypatch,
    sqlite_url: str,
    stack: ArgillaTarget,
    dataset: str,
    *,
    workspace: str | None = None,
    min_submitted: int = 1,
) -> list[str]:
    config = tmp_path / "pvar-loop.toml"
    config.write_text(
        f'[paths]\ndata_dir = "{tmp_path / "data"}"\n\n'
        f'[argilla]\nworkspace = "{workspace or stack.workspace}"\ndataset = "{dataset}"\n'
        f"min_submitted = {min_submitted}\n"
    )
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_URL", stack.url)
    monkeypatch.setenv("PVAR_LOOP_ARGILLA_API_KEY", stack.api_key)
    return ["--config", str(config)]


def _sign_in(stack: ArgillaTarget, username: str, password: str) -> int:
    return httpx.post(
        f"{stack.url}/api/v1/token", data={"username": username, "password": password}, timeout=60
    ).status_code


def _responses(stack: ArgillaTarget, name: str) -> dict[str, list[dict]]:
    dataset = open_dataset(owner(stack), name, stack.workspace)
    return {r["external_id"]: r.get("responses") or [] for r in fetch_records(dataset)}


def test_annotators_list_reset_password_and_remove(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path, monkeypatch, capsys, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    items = make_round_items(uow, 3, status=RoundStatus.COLLECTING)
    with uow() as s:  # the ids the operator's rows had at ingest
        for item in s.scalars(select(AnnotationItem)):
            s.get(Prompt, item.prompt_id).source_id = f"row-{item.id[:6]}"
    name = unique("ds-ann")
    cli = _project(tmp_path, monkeypatch, sqlite_url, argilla_stack, name)
    who = unique("ann-rm")
    assert main([*cli, "annotators", "add", who]) == 0
    out = capsys.readouterr().out
    api_key = re.search(r"API key:\s+(\S+)", out).group(1)
    first_password = re.search(r"password:\s+(\S+)", out).group(1)
    assert main([*cli, "push", "--round", "1"]) == 0
    capsys.readouterr()

    # The operator's own prompt id travels with each record (metadata, hidden from annotators).
    http = owner(argilla_stack).http_client
    dataset = open_dataset(owner(argilla_stack), name, argilla_stack.workspace)
    meta = http.get(f"/api/v1/me/datasets/{dataset.id}/metadata-properties").json()["items"]
    assert {m["name"]: m["visible_for_annotators"] for m in meta}[SOURCE_ID] is False
    records = fetch_records(dataset, responses=False)
    assert {r["external_id"]: r["metadata"][SOURCE_ID] for r in records} == {
        i: f"row-{i[:6]}" for i in items.item_ids
    }

    with uow() as s:
        record_of = dict(s.execute(select(AnnotationItem.id, AnnotationItem.argilla_record_id)).all())
    ann = SimpleNamespace(api_key=api_key)
    first, second, third = items.item_ids
    respond(argilla_stack, ann, record_of[first], "submitted", preference="a", rationale="clearer")
    respond(argilla_stack, ann, record_of[second], "discarded")
    assert main([*cli, "pull"]) == 0
    respond(argilla_stack, ann, record_of[third], "submitted", preference="b")  # not pulled yet
    capsys.readouterr()

    assert main([*cli, "annotators", "list", "--json"]) == 0
    listed = {r["username"]: r for r in json.loads(capsys.readouterr().out)}
    reliability = listed[who].pop("reliability")
    assert [r["round"] for r in listed[who].pop("rounds")] == ["main/1"]
    assert listed[who] == {
        "username": who,
        "role": "annotator",
        "in_workspace": True,
        "submitted": 1,
        "discarded": 1,
        "excluded": None,
    }
    assert (reliability["answers"], reliability["discard_rate"], reliability["flags"]) == (2, 0.5, [])
    assert main([*cli, "annotators", "list"]) == 0
    assert re.search(rf"{who}\s+annotator\s+1\s+1\s", capsys.readouterr().out)

    # Errors name the user and why.
    assert main([*cli, "annotators", "remove", "nobody-here"]) == 2
    err = capsys.readouterr().err
    assert "no Argilla user named 'nobody-here'" in err and who in err
    assert main([*cli, "annotators", "remove", argilla_stack.username]) == 2
    err = capsys.readouterr().err
    assert f"{argilla_stack.username!r} is the Argilla owner, not an annotator" in err
    assert main([*cli, "annotators", "reset-password", argilla_stack.username]) == 2
    assert "not an annotator" in capsys.readouterr().err
    assert main([*cli, "annotators", "remove", who]) == 2
    err = capsys.readouterr().err
    assert f"annotator {who!r} has 1 answers" in err and "pvar-loop pull" in err and "--force" in err
    assert _sign_in(argilla_stack, who, first_password) == 201  # refused: nothing changed

    # A new password, printed once: the old one stops working, nothing of it is logged or stored.
    assert main([*cli, "annotators", "reset-password", who]) == 0
    out = capsys.readouterr().out
    password = re.search(r"password:\s+(\S+)", out).group(1)
    assert "not shown again" in out and password != first_password
    assert _sign_in(argilla_stack, who, password) == 201
    assert _sign_in(argilla_stack, who, first_password) == 401
    assert password not in caplog.text
    assert password.encode() not in Path(sqlite_url.removeprefix("sqlite:///")).read_bytes()

    # Removing after the pull: the account goes (and Argilla drops its responses), our labels stay.
    assert main([*cli, "pull"]) == 0
    capsys.readouterr()
    assert main([*cli, "annotators", "remove", who]) == 0
    out = capsys.readouterr().out
    assert f"deleted annotator {who!r}" in out and "deleted its 3 responses" in out
    assert "3 of their answers were pulled and stay in the database" in out
    assert _sign_in(argilla_stack, who, password) == 401
    assert (
        httpx.get(f"{argilla_stack.url}/api/v1/me", headers={"X-Argilla-Api-Key": api_key}).status_code == 401
    )
    assert all(not r for r in _responses(argilla_stack, name).values())
    assert main([*cli, "pull", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["new_labels"] == 0
    with uow() as s:
        stored = dict(s.execute(select(Label.item_id, Label.choice).where(Label.annotator == who)).all())
        decisions = {i.id: i.decision for i in s.scalars(select(AnnotationItem))}
    ours = {i: flip(shown, items.swapped[i]) for i, shown in ((first, "a"), (third, "b"))}  # as shown -> ours
    assert stored == {**ours, second: "discard"}
    assert decisions == {**ours, second: None}  # the decisions they made stay
    assert main([*cli, "annotators", "list", "--json"]) == 0
    gone = {r["username"]: r for r in json.loads(capsys.readouterr().out)}[who]
    assert (gone["in_workspace"], gone["submitted"], gone["discarded"]) == (False, 2, 1)
    assert main([*cli, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {"username": who, "submitted": 2, "discarded": 1} in status["annotators"]


def test_blind_overlap_add_gets_an_own_dataset_and_remove_keeps_answers_and_frees_the_rest(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path, monkeypatch, capsys
) -> None:
    workspace, name = fresh_workspace(argilla_stack), unique("ds-blind-cli")
    cli = _project(
        tmp_path, monkeypatch, sqlite_url, argilla_stack, name, workspace=workspace, min_submitted=2
    )
    items = make_round_items(uow, 4, status=RoundStatus.COLLECTING, tag="blind cli ")
    keep, leave = (
        annotator_in(argilla_stack, workspace, "keep"),
        annotator_in(argilla_stack, workspace, "leave"),
    )
    assert main([*cli, "push", "--round", "1"]) == 0
    out = capsys.readouterr().out
    assert f"annotator {keep.username}: " in out and f"annotator {leave.username}: " in out  # one link each
    assert set(own_records(argilla_stack, leave, name)) == set(items.item_ids)

    newcomer = unique("newcomer")
    assert main([*cli, "annotators", "add", newcomer]) == 0
    out = capsys.readouterr().out
    assert "own queue:" in out and "/dataset/" in out.split("own queue:")[1]
    assert set(annotator_datasets(open_dataset(owner(argilla_stack), name, workspace))) == {
        keep.username,
        leave.username,
        newcomer,
    }

    answered = items.item_ids[:2]
    mine = own_records(argilla_stack, leave, name)
    for item_id in answered:
        respond(argilla_stack, leave, mine[item_id], "submitted", preference="a")
    assert main([*cli, "pull"]) == 0
    assert main([*cli, "annotators", "remove", leave.username]) == 0
    assert "deleted annotator" in capsys.readouterr().out  # their own workspace does not keep the account
    with uow() as s:
        stored = set(s.scalars(select(Label.item_id).where(Label.annotator == leave.username)))
    assert stored == set(answered)  # the answers stay

    # The next placement: what `leave` never answered goes to the newcomer; the answered items stay covered.
    assert main([*cli, "push", "--round", "1"]) == 0
    key = re.search(r"API key:\s+(\S+)", out).group(1)
    with httpx.Client(base_url=argilla_stack.url, headers={"X-Argilla-Api-Key": key}, timeout=60) as http:
        ids = [d["id"] for d in http.get("/api/v1/me/datasets").json()["items"] if d["name"] == name]
        got = {
            i["record"]["external_id"]
            for d in ids
            for i in http.post(f"/api/v1/me/datasets/{d}/records/search", json={}).json()["items"]
        }
    assert got == set(items.item_ids[2:])

    # The bot command answers in the annotator's own dataset (blind overlap), not only in the shared one.
    capsys.readouterr()
    monkeypatch.setenv("PVAR_LOOP_BOT_API_KEY", key)
    assert main([*cli, "annotators", "bot", "--seed", "1"]) == 0
    assert f"{newcomer} answered 2 records" in capsys.readouterr().out


def test_push_adds_source_id_to_a_dataset_created_without_it(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path, monkeypatch, capsys
) -> None:
    """A dataset an older pvar-loop created has no `source_id` metadata property (and refuses records that
    carry one): push adds it."""
    from annotation.dataset import ensure_dataset

    items = make_round_items(uow, 2, status=RoundStatus.COLLECTING)
    with uow() as s:
        for p in s.scalars(select(Prompt)):
            p.source_id = f"old-{p.id[:4]}"
    name = unique("ds-old")
    dataset = ensure_dataset(owner(argilla_stack), name, argilla_stack.workspace)
    http = owner(argilla_stack).http_client
    meta = http.get(f"/api/v1/me/datasets/{dataset.id}/metadata-properties").json()["items"]
    prop = next(m for m in meta if m["name"] == SOURCE_ID)
    assert http.delete(f"/api/v1/metadata-properties/{prop['id']}").status_code == 200
    cli = _project(tmp_path, monkeypatch, sqlite_url, argilla_stack, name)
    assert main([*cli, "push", "--round", "1"]) == 0, capsys.readouterr().err
    records = fetch_records(
        open_dataset(owner(argilla_stack), name, argilla_stack.workspace), responses=False
    )
    assert sorted(r["external_id"] for r in records) == items.item_ids
    assert all(r["metadata"][SOURCE_ID].startswith("old-") for r in records)


def test_argilla_up_refuses_a_taken_configured_port(tmp_path, monkeypatch, sqlite_url, capsys) -> None:
    """The port of `[argilla] url` is the one `up` uses: taken, it says so and names the key."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "pvar-loop.toml"
        config.write_text(
            f'[paths]\ndata_dir = "{tmp_path / "data"}"\n\n[argilla]\nurl = "http://127.0.0.1:{port}"\n'
        )
        monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
        monkeypatch.delenv("PVAR_LOOP_ARGILLA_URL", raising=False)
        assert main(["--config", str(config), "argilla", "up"]) == 2
    err = capsys.readouterr().err
    assert f"port {port} from [argilla] url" in err and "Traceback" not in err
    assert not (tmp_path / "data" / "argilla" / "stack.json").exists()


def test_the_priority_link_on_every_path_that_readies_a_round(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path, monkeypatch, capsys
) -> None:
    """Issue 26: the link that sorts the queue by priority and filters it to the round was printed by `push`
    only; `annotators add`, `argilla up` (here: already up), `round status` and `status` show it too."""
    if argilla_stack.root is None:
        pytest.skip("an external Argilla server: `argilla up` has no local stack to find")
    make_round_items(uow, 2, status=RoundStatus.COLLECTING)
    name = unique("ds-link")
    cli = _project(tmp_path, monkeypatch, sqlite_url, argilla_stack, name)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "argilla").symlink_to(argilla_stack.root)  # `argilla up` finds the session's stack
    assert main([*cli, "annotators", "add", unique("ann-early")]) == 0
    assert "annotate at" not in capsys.readouterr().out  # no dataset yet: nothing to link to
    assert main([*cli, "push", "--round", "1"]) == 0
    [link] = [w for w in capsys.readouterr().out.split() if "/annotation-mode?" in w]
    dataset = open_dataset(owner(argilla_stack), name, argilla_stack.workspace)
    assert (
        link
        == f"{argilla_stack.url}/dataset/{dataset.id}/annotation-mode?sort=metadata.priority.asc&metadata=round.ge1.le1"
    )
    for argv in (
        ["annotators", "add", unique("ann-late")],
        ["argilla", "up"],
        ["round", "status"],
        ["status"],
    ):
        assert main([*cli, *argv]) == 0, argv
        assert f"annotate at {link}  (round 1, in priority order)" in capsys.readouterr().out, argv


def test_annotators_bot_labels_its_pending_records_through_the_cli(
    argilla_stack: ArgillaTarget, uow, sqlite_url, tmp_path, monkeypatch, capsys
) -> None:
    """Issue 26: the annotator bot has a command; it answers as the annotator whose key it is given."""
    items = make_round_items(uow, 3, status=RoundStatus.COLLECTING)
    name = unique("ds-bot")
    cli = _project(tmp_path, monkeypatch, sqlite_url, argilla_stack, name)
    who = unique("ann-bot")
    assert main([*cli, "annotators", "add", who]) == 0
    out = capsys.readouterr().out
    api_key = re.search(r"API key:\s+(\S+)", out).group(1)
    assert "pvar-loop annotators bot" in out  # `add` names the command the key is for
    assert main([*cli, "push", "--round", "1"]) == 0
    capsys.readouterr()

    # A saved draft: `status` lists it by annotator, read from Argilla (issue 26).
    with uow() as s:
        record_id = s.get(AnnotationItem, items.item_ids[0]).argilla_record_id
    bot_user = SimpleNamespace(username=who, api_key=api_key)
    respond(argilla_stack, bot_user, record_id, "draft", preference="a")
    assert main([*cli, "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["drafts"] == {"by_annotator": {who: 1}}
    assert main([*cli, "status"]) == 0
    assert f"drafts saved, not submitted (not answers): {who} 1" in capsys.readouterr().out

    monkeypatch.delenv("PVAR_LOOP_BOT_API_KEY", raising=False)
    assert main([*cli, "annotators", "bot"]) == 2
    assert "set PVAR_LOOP_BOT_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("PVAR_LOOP_BOT_API_KEY", api_key)
    assert main([*cli, "annotators", "bot", "--limit", "2", "--seed", "3"]) == 0
    assert f"{who} answered 2 records in {name!r}" in capsys.readouterr().out
    assert main([*cli, "annotators", "bot"]) == 0
    assert f"{who} answered 1 records" in capsys.readouterr().out
    responses = _responses(argilla_stack, name)
    assert {i: [r["user_id"] is not None for r in responses[i]] for i in items.item_ids} == {
        i: [True] for i in items.item_ids
    }
    assert main([*cli, "pull"]) == 0
    with uow() as s:
        assert {lb.annotator for lb in s.scalars(select(Label))} == {who}
    capsys.readouterr()
    assert main([*cli, "status", "--json"]) == 0  # the bot submitted over its draft: none left
    assert json.loads(capsys.readouterr().out)["drafts"] == {"by_annotator": {}}
