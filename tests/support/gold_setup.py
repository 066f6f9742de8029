"""Gold items for annotation tests, and the records an annotator's own key can read."""

from __future__ import annotations

import httpx

from loop.gold import gold_key
from storage.repositories.gold import add_gold_items, gold_keys


def add_gold(uow, n: int, tag: str, *, source_ids: bool = False) -> dict[int, dict]:
    """n gold items shaped like make_round_items' prompts (expected: a); returns {gold id: row}."""
    rows = []
    for k in range(n):
        prompt = f"{tag}Question 9.{k}: explain topic {k} briefly."
        a, b = f"answer 2 to <{prompt}>", f"answer 0 to <{prompt}>"
        rows.append(
            {
                "key": gold_key(prompt, a, b),
                "prompt": prompt,
                "response_a": a,
                "response_b": b,
                "expected": "a",
                "rationale": None,
                "source": "gold.jsonl",
                "source_id": f"gold-{k}" if source_ids else None,
            }
        )
    with uow() as s:
        add_gold_items(s, rows)
    with uow() as s:
        by_key = {v: k for k, v in gold_keys(s).items()}
    return {by_key[r["key"]]: r for r in rows}


def readable(stack, api_key: str, name: str) -> list[dict]:
    """Every record of the datasets called `name` that the key can read (its records search), with the
    metadata GET /api/v1/records/{id} gives it as well (hidden metadata included: Argilla returns it there)."""
    with httpx.Client(base_url=stack.url, headers={"X-Argilla-Api-Key": api_key}, timeout=60) as http:
        out = []
        for d in http.get("/api/v1/me/datasets").json()["items"]:
            if d["name"] == name:
                r = http.post(
                    f"/api/v1/me/datasets/{d['id']}/records/search", params={"limit": 1000}, json={}
                )
                r.raise_for_status()
                out += [i["record"] for i in r.json()["items"]]
        for record in out:
            direct = http.get(f"/api/v1/records/{record['id']}")
            direct.raise_for_status()
            record["metadata"] = {**(record.get("metadata") or {}), **(direct.json().get("metadata") or {})}
    return out
