"""Item ids (loop.rounds.pairing.item_id) are keyed with the project's secret: the same for a fixed secret
(re-planning and re-pushing are idempotent), unrecoverable from the texts an annotator sees without it."""

from __future__ import annotations

import hashlib
import re

from loop.rounds.pairing import item_id, swap_flag

S1, S2 = "11" * 32, "22" * 32


def _unkeyed(round_id: int, prompt_id: str, a: str, b: str) -> str:
    """The formula item ids had before the secret: anyone could recompute it from a record."""
    h = hashlib.sha256()
    for part in (str(round_id), prompt_id, a, b):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def test_item_ids_are_stable_for_a_secret_and_depend_on_it() -> None:
    iid = item_id(S1, 3, "p" * 64, "best", "worst")
    assert re.fullmatch(r"[0-9a-f]{64}", iid)
    assert iid == item_id(S1, 3, "p" * 64, "best", "worst")
    assert iid != item_id(S2, 3, "p" * 64, "best", "worst")
    assert iid not in {_unkeyed(3, "p" * 64, "best", "worst"), _unkeyed(3, "p" * 64, "worst", "best")}
    assert len({item_id(S1, 3, "p", "best", "worst"), item_id(S1, 3, "p", "worst", "best")}) == 2
    assert len({item_id(S1, r, "p", "best", "worst") for r in (1, 2)}) == 2


def test_the_swap_follows_the_keyed_id() -> None:
    # Derived from the id, the A/B swap is as unpredictable as the id is without the secret.
    flips = {
        swap_flag(0, item_id(secret, 1, "p", "best", "worst"))
        for secret in (f"{k:02x}" * 32 for k in range(16))
    }
    assert flips == {True, False}
