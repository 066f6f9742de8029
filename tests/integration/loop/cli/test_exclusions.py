"""`annotators exclude` / `include` with no Argilla reachable: the exclusion is recorded and the open round is
decided again at once from the stored answers (the queue work is left to the next push or pull); refusals
are one `error:` line with exit 2 and record nothing."""

from __future__ import annotations

from sqlalchemy import select, update

from loop.cli.app import main
from storage.models import AnnotationItem, AnnotatorExclusion, OperatorAction, Round
from storage.repositories.labels import LabelRow, add_label_versions
from storage.statuses import RoundStatus
from tests.support.annotation_setup import make_round_items


def _outcomes(uow, round_id: int) -> list[tuple]:
    with uow() as s:
        rows = s.scalars(
            select(AnnotationItem).where(AnnotationItem.round_id == round_id).order_by(AnnotationItem.id)
        )
        return [(str(i.status), i.decision, dict(i.votes), i.confidence) for i in rows]


def test_exclude_and_include_without_argilla(uow, sqlite_url, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no local Argilla stack here, and no key: Argilla cannot be reached
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("PVAR_LOOP_ARGILLA_API_KEY", raising=False)
    monkeypatch.setenv("PVAR_LOOP_ACTOR", "alice")
    items = make_round_items(uow, 2, status=RoundStatus.COLLECTING)
    split, outvoted = items.item_ids
    answers = [(split, "ann", "a"), (split, "carol", "b")]
    answers += [(outvoted, "ann", "a"), (outvoted, "bob", "a"), (outvoted, "carol", "b")]
    with uow() as s:
        add_label_versions(s, [LabelRow(i, w, c, None, None, annotator_id=f"id-{w}") for i, w, c in answers])
        s.execute(update(Round).values(min_submitted=2))
        s.execute(update(AnnotationItem).values(argilla_record_id="rec", status="pushed"))
    capsys.readouterr()

    assert main(["annotators", "include", "carol"]) == 2  # not excluded: refused, nothing recorded
    assert capsys.readouterr().err.strip() == "error: annotator 'carol' is not excluded"
    assert main(["annotators", "exclude", "mallory"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown annotator 'mallory'") and err.count("\n") == 1

    assert main(["annotators", "exclude", "carol", "--reason", "always b"]) == 0
    out = capsys.readouterr().out
    assert "excluded annotator 'carol' since" in out and "Argilla not reached" in out, out
    assert _outcomes(uow, items.round_id) == [
        ("pushed", None, {"a": 1}, None),  # one counted answer of the two it needs: back to waiting
        ("decided", "a", {"a": 2}, 1.0),
    ]
    assert main(["annotators", "exclude", "carol"]) == 2
    assert "already excluded" in capsys.readouterr().err

    assert main(["annotators", "include", "carol"]) == 0
    assert "annotator 'carol' counts again" in capsys.readouterr().out
    [split_row, outvoted_row] = _outcomes(uow, items.round_id)
    assert split_row == ("undecided", None, {"a": 1, "b": 1}, None)
    assert outvoted_row[:3] == ("decided", "a", {"a": 2, "b": 1}) and abs(outvoted_row[3] - 2 / 3) < 1e-9
    with uow() as s:
        [period] = s.scalars(select(AnnotatorExclusion))
        assert (period.excluded_by, period.reason, period.included_by) == ("alice", "always b", "alice")
        assert period.included_at >= period.excluded_at
        actions = [a.action for a in s.scalars(select(OperatorAction).order_by(OperatorAction.id))]
        assert actions == ["exclude annotator", "include annotator"]


def test_exclude_while_another_command_holds_the_lease_records_nothing(
    uow, engine, sqlite_url, tmp_path, monkeypatch, capsys
) -> None:
    """A by-hand command holds the lease: the exclusion is refused before it is recorded, so once the lease is
    free a rerun excludes and decides the open round again (it does not say "already excluded")."""
    from loop.rounds.scheduler import BY_HAND, LOCK
    from storage.locks import acquire, release

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("PVAR_LOOP_ARGILLA_API_KEY", raising=False)
    items = make_round_items(uow, 1, status=RoundStatus.COLLECTING)
    [item] = items.item_ids
    with uow() as s:
        add_label_versions(s, [LabelRow(item, "carol", "b", None, None, annotator_id="id-carol")])
        s.execute(update(AnnotationItem).values(argilla_record_id="rec", status="pushed"))
    other = f"{BY_HAND}other-host:1:abc"
    acquire(engine, LOCK, other, 3600)
    try:
        capsys.readouterr()
        assert main(["annotators", "exclude", "carol"]) == 2
        assert capsys.readouterr().err.startswith("error: ")
        with uow() as s:
            assert list(s.scalars(select(AnnotatorExclusion))) == []
    finally:
        release(engine, LOCK, other)
    assert main(["annotators", "exclude", "carol"]) == 0
    assert "round 1: decided again" in capsys.readouterr().out
    assert _outcomes(uow, items.round_id) == [("pushed", None, {}, None)]
