"""Gold items in the annotators' queue: `[argilla] gold_per_round` gold pairs mixed into each round when it is
pushed, and the answers to them pulled aside (never labels, decisions, DPO data or exports).

A gold record is made exactly like an item's (annotation.records.to_record): the same fields and layout, the
round's number and strategy in its metadata, a 64-hex external id, a seeded random priority among the
round's records and its own seeded random A/B swap (kept in our database, as an item's is). So neither the
record, its metadata nor the API tells an annotator which records are gold.

Who sees what: in the shared dataset (min_submitted = 1) a gold item goes into one round at most (any
annotator may take any record); with blind overlap each annotator who holds items of the round gets their own
gold records, drawn from the gold items they were never shown (in any round, or in the shared dataset). The
annotator's own progress bar (Argilla's, over their dataset) counts gold records like any other: leaving them
out would tell gold apart.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence

from annotation.api import DEFAULT_BACKOFF, Backoff, request, request_json
from annotation.dataset import DatasetHandle
from annotation.records import Answer, Rejected, parse_response
from annotation.transfer import DELETE_BATCH, fetch_records
from storage.repositories import gold as repo
from storage.repositories.items import ItemContent
from storage.repositories.project_secrets import keyed_id, record_secret

_LOG = logging.getLogger(__name__)
_WARNED: set[tuple[int, str | None]] = set()  # (round id, annotator) told to have fewer gold items


def gold_slots(seed: int, round_id: int, n_items: int, g: int) -> list[int]:
    """The priorities (1-based) that `g` gold records take among a round of `n_items` items: a seeded random
    choice over 1..n_items+g, the same on every push of the round."""
    if g <= 0:
        return []
    rng = random.Random(f"gold-slots\0{seed}\0{round_id}")
    return sorted(rng.sample(range(1, n_items + g + 1), g))


def record_id(secret: str, gold_key: str, round_id: int, annotator: str | None) -> str:
    """A gold record's external id: a keyed hash like an item id, unique per round and annotator. Keyed with
    the project's secret: from the gold item's texts, the round and a username nobody can recompute it."""
    return keyed_id(secret, "gold", gold_key, str(round_id), annotator or "")


def reserved_priorities(
    uow, round_id: int, n_items: int, per_round: int, *, blind: bool, first_push: bool
) -> tuple[set[int], int]:
    """(the priorities the round's items must leave to its gold records, the round's gold count). The count is
    fixed at the round's first push (`first_push`: none of its items is in Argilla yet): `per_round` when
    there is gold then, else 0. Gold added or gold_per_round raised later waits for the next round: placed
    mid-round it would take places the items already hold, or come after all of them.
    Shared dataset: the gold records are placed now and keep their slots. Blind overlap: the round's slots,
    which each annotator's gold records take (placed per annotator by blind_todo)."""
    with uow() as session:
        rows = repo.round_gold(session, round_id)
        placed = {p.priority for p in rows}
        count = repo.gold_count(session, round_id)
        if count is None:  # a round placed before counts were fixed keeps placing with `per_round`
            count = max(per_round, 0) if (rows or first_push) and repo.gold_keys(session) else 0
            repo.fix_gold_count(session, round_id, count)
        if count <= 0:
            return placed, 0
        key = repo.round_key(session, round_id)
        if blind:
            return placed | set(gold_slots(key.seed, round_id, n_items, count)), count
        if first_push and not any(p.annotator is None for p in rows):
            _place(session, round_id, key, None, n_items, count)
        return {p.priority for p in repo.round_gold(session, round_id)}, count


def _place(session, round_id: int, key: repo.RoundKey, annotator: str | None, n_items: int, per_round: int):
    """Record `annotator`'s gold records for the round (None: the shared dataset's): up to `per_round` gold
    items they were never shown, at the round's gold slots, each with a seeded swap. The shared dataset's
    round takes only as many slots as it has gold (its priorities stay 1..n without gaps)."""
    keys = repo.gold_keys(session)
    placed = repo.placed_gold(session)
    if annotator is None:  # anyone may answer a shared record: only gold nobody was shown
        seen = set().union(*placed.values()) if placed else set()
    else:
        seen = placed.get(annotator, set()) | placed.get(None, set())
    fresh = [gid for gid in keys if gid not in seen]
    rng = random.Random(f"gold\0{key.seed}\0{round_id}\0{annotator or ''}")
    chosen = rng.sample(fresh, min(per_round, len(fresh)))
    slots = gold_slots(key.seed, round_id, n_items, len(chosen) if annotator is None else per_round)
    rng.shuffle(slots)  # which slots an annotator's fewer gold records take
    secret = record_secret(session)
    rows = [
        {
            "id": record_id(secret, keys[gid], round_id, annotator),
            "gold_id": gid,
            "round_id": round_id,
            "annotator": annotator,
            "swapped": rng.random() < 0.5,
            "priority": slot,
        }
        for gid, slot in zip(chosen, slots, strict=False)
    ]
    repo.add_gold_records(session, rows)
    if len(chosen) < per_round and (round_id, annotator) not in _WARNED:
        _WARNED.add((round_id, annotator))  # blind placement asks again every collecting poll: say it once
        _LOG.warning(
            "round id %d: %d gold items for %s (gold_per_round = %d): the others were shown already; "
            "add more with `pvar-loop gold add`",
            round_id,
            len(chosen),
            annotator or "the shared dataset",
            per_round,
        )


def _content(p: repo.GoldPlacement, key: repo.RoundKey) -> ItemContent:
    """The gold record as an item's content: to_record then makes it the way it makes an item's."""
    return ItemContent(
        id=p.id,
        round_number=key.number,
        strategy=key.strategy,
        swapped=p.swapped,
        prompt=p.prompt,
        text_a=p.response_a,
        text_b=p.response_b,
        argilla_record_id=p.argilla_record_id,
        source_id=None,  # a round with gold shows no source_id at all (annotation.gateway)
    )


def shared_todo(uow, round_id: int, *, include_pushed: bool) -> list[tuple[ItemContent, int]]:
    """(content, priority) of the round's shared-dataset gold records not in Argilla yet (all of them with
    include_pushed): push_items sends them in its batches."""
    with uow() as session:
        todo = [p for p in repo.round_gold(session, round_id) if p.annotator is None]
        todo = [p for p in todo if include_pushed or p.argilla_record_id is None]
        key = repo.round_key(session, round_id) if todo else None
    return [(_content(p, key), p.priority) for p in todo]


def blind_todo(
    uow, round_id: int, n_items: int, per_round: int, *, include_pushed: bool
) -> Callable[[str], list[tuple[ItemContent, int]]]:
    """For annotation.blind.push_to_annotators: username -> (content, priority) of their gold records of the
    round to send, placed (once per annotator and round) when first asked for."""

    def todo(name: str) -> list[tuple[ItemContent, int]]:
        with uow() as session:
            if not repo.gold_keys(session):
                return []
            key = repo.round_key(session, round_id)
            mine = [p for p in repo.round_gold(session, round_id) if p.annotator == name]
            if not mine and per_round > 0:
                _place(session, round_id, key, name, n_items, per_round)
                mine = [p for p in repo.round_gold(session, round_id) if p.annotator == name]
        return [(_content(p, key), p.priority) for p in mine if include_pushed or p.argilla_record_id is None]

    return todo


def split_gold(uow, records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(gold records, the others) of records read from Argilla."""
    ext = {r.get("external_id") for r in records} - {None}
    with uow() as session:
        gold = set(repo.gold_records_by_id(session, ext))
    return (
        [r for r in records if r.get("external_id") in gold],
        [r for r in records if r.get("external_id") not in gold],
    )


def store_answers(uow, records: list[dict], users: dict[str, str]) -> int:
    """Store the submitted and discarded answers on gold records, un-swapped to the gold item's a/b (drafts
    and malformed answers are left out). Returns the answers new or changed."""
    if not records:
        return 0
    with uow() as session:
        placed = repo.gold_records_by_id(session, {r["external_id"] for r in records})
        writes = []
        for record in records:
            rec = placed[record["external_id"]]
            for response in record.get("responses") or []:
                parsed = parse_response(response, rec.swapped)
                if parsed is None or isinstance(parsed, Rejected):
                    continue
                assert isinstance(parsed, Answer)
                user_id = str(response.get("user_id"))
                writes.append(
                    repo.GoldAnswerWrite(
                        rec.id,
                        users.get(user_id, f"user-{user_id}"),
                        user_id,
                        str(parsed.choice),
                        None if response.get("id") is None else str(response["id"]),
                        parsed.answered_at or parsed.submitted_at,  # first given, as items' answers
                    )
                )
        return repo.store_gold_answers(session, writes)


def withdraw_idle_gold(uow, dataset: DatasetHandle, *, backoff: Backoff = DEFAULT_BACKOFF) -> int:
    """Withdraw the unanswered gold records of every round that no longer collects (done, training, cancelled
    ...), whether or not its items left the queue: a gold record waiting with an old `round` value would
    tell gold apart. Their answers so far are stored first. Returns the records deleted."""
    from annotation.blind import annotator_records

    with uow() as session:
        rounds = repo.rounds_with_idle_gold(session)
    if not rounds:
        return 0
    records = fetch_records(dataset, backoff) + annotator_records(dataset, backoff)
    users = request_json(dataset.http, "GET", "/api/v1/users", what="list users", backoff=backoff)
    store_answers(uow, split_gold(uow, records)[0], {u["id"]: u["username"] for u in users["items"]})
    return withdraw_gold(uow, dataset, rounds, backoff=backoff)


def withdraw_gold(
    uow, dataset: DatasetHandle, round_ids: Sequence[int], *, backoff: Backoff = DEFAULT_BACKOFF
) -> int:
    """Delete the unanswered gold records of `round_ids` from the shared dataset and the annotators' own
    (the answers were pulled first); returns the records deleted."""
    from annotation.blind import withdraw_from_annotators

    with uow() as session:
        pushed = repo.withdrawable_gold(session, round_ids)
        shared = {p.id for rid in round_ids for p in repo.round_gold(session, rid) if p.annotator is None}
        shared &= set(pushed)
    if not pushed:
        return 0
    withdraw_from_annotators(dataset, set(pushed) - shared, what="withdraw gold records", backoff=backoff)
    ids = [pushed[g] for g in sorted(shared)]
    for start in range(0, len(ids), DELETE_BATCH):
        chunk = ids[start : start + DELETE_BATCH]
        request(
            dataset.http,
            "DELETE",
            f"/api/v1/datasets/{dataset.id}/records",
            params={"ids": ",".join(chunk)},
            what=f"withdraw {len(chunk)} gold records",
            backoff=backoff,
        )
    with uow() as session:
        repo.mark_gold_withdrawn(session, pushed)
    return len(pushed)
