"""Length groups: a batch's rows split into runs of similar length that pad fewer tokens than one call."""

from __future__ import annotations

import itertools

import pytest

from loop.ml.length_groups import EAGER_ATTENTION_BYTES, eager_calls, length_groups


def _padded(lengths, groups) -> int:
    return sum(len(g) * max(lengths[i] for i in g) for g in groups)


def test_chosen_long_and_rejected_short_go_in_separate_calls() -> None:
    lengths = [90, 88, 95, 91, 20, 22, 19, 25]  # [chosen..., rejected...], as TRL's collator stacks them
    groups = length_groups(lengths, max_groups=4, call_cost=64)
    assert sorted(i for g in groups for i in g) == list(range(8))  # every row once
    assert sorted(map(sorted, groups)) == [[0, 1, 2, 3], [4, 5, 6, 7]]  # a third call would save 12 tokens
    assert _padded(lengths, groups) < 0.65 * len(lengths) * max(lengths)


def test_similar_lengths_stay_one_call() -> None:
    assert length_groups([50, 52, 51, 49], max_groups=4, call_cost=64) == [[3, 0, 2, 1]]


@pytest.mark.parametrize("max_groups", [1, 2, 3])
def test_never_more_runs_than_allowed_and_each_run_is_a_length_range(max_groups: int) -> None:
    lengths = [5, 300, 40, 41, 150, 160, 7, 299]
    groups = length_groups(lengths, max_groups=max_groups, call_cost=0)
    assert 1 <= len(groups) <= max_groups
    spans = [(min(lengths[i] for i in g), max(lengths[i] for i in g)) for g in groups]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_no_rows_no_groups() -> None:
    assert length_groups([]) == []


class _Config:
    """The config fields eager_calls reads (a SmolLM2-135M's: 9 heads, 30 layers)."""

    def __init__(self, implementation: str = "sdpa") -> None:
        self._attn_implementation = implementation
        self.num_attention_heads, self.num_hidden_layers = 9, 30

    def get_text_config(self):
        return self


class _Model:
    def __init__(self, implementation: str = "sdpa", checkpointing: bool = False) -> None:
        self.config, self.is_gradient_checkpointing = _Config(implementation), checkpointing


class _Device:
    def __init__(self, kind: str) -> None:
        self.type = kind


def _weights(rows: int, tokens: int) -> int:
    return rows * 9 * tokens * tokens * 30 * 6


def test_eager_attention_fits_one_budget_for_all_the_calls_of_a_forward() -> None:
    """The calls' attention weights all live until the one backward: their sum, not each, must fit."""
    shapes = [(4, 250), (4, 300), (4, 350), (4, 390)]
    assert all(_weights(*s) <= EAGER_ATTENTION_BYTES for s in shapes)  # each alone would fit
    eager = eager_calls(_Model(), shapes, _Device("cpu"))
    assert eager == [True, True, False, False]  # the smallest first, while the sum fits
    assert sum(_weights(*s) for s, e in zip(shapes, eager, strict=True) if e) <= EAGER_ATTENTION_BYTES


@pytest.mark.parametrize(
    ("model", "device"),
    [
        (_Model(), _Device("cuda")),
        (_Model("flash_attention_2"), _Device("cpu")),
        (_Model(checkpointing=True), _Device("cpu")),
    ],
)
def test_eager_attention_only_for_an_sdpa_model_on_cpu_without_checkpointing(model, device) -> None:
    assert eager_calls(model, [(8, 100)], device) == [False]
