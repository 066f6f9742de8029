"""A causal LM's fused-head forward over a right-padded batch, run as a few sub-batches of similar length.

TRL's DPO puts a batch's chosen and rejected sequences in one tensor padded to the longest of them all, so on a CPU
(no padding-free attention kernel) a short rejected answer costs as much as the longest chosen one. `GroupedForward`
sorts the rows by length, splits them into at most `max_groups` runs that minimise the padded tokens, trims each
run's padding, and puts the per-token outputs back in row order, zero beyond each row's length as before. A real
token's outputs do not depend on padding after it (causal attention), so the log-probs are the same up to float
rounding; autograd flows through the reassembly. Dropout draws its masks per call, so in training the masks (not
their distribution) differ from one call over the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

# Padded tokens one more sub-batch must save to be worth its call (a forward and backward of every layer).
CALL_COST_TOKENS = 64
MAX_GROUPS = 4
_PER_TOKEN = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1", "label_mask")


def length_groups(
    lengths: Sequence[int], max_groups: int = MAX_GROUPS, call_cost: int = CALL_COST_TOKENS
) -> list[list[int]]:
    """Row indices split into runs of the rows sorted by length, minimising sum(rows x longest) + call_cost per
    run (at most max_groups runs); one run when splitting saves nothing."""
    if not lengths:
        return []
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    ls = [lengths[i] for i in order]
    n, inf = len(ls), float("inf")
    # best[g][j]: least cost of the first j sorted rows in g runs; cut[g][j]: where the last run starts
    best = [[inf] * (n + 1) for _ in range(max_groups + 1)]
    cut = [[0] * (n + 1) for _ in range(max_groups + 1)]
    best[0][0] = 0.0
    for g in range(1, max_groups + 1):
        for j in range(1, n + 1):
            for i in range(j):
                cost = best[g - 1][i] + (j - i) * ls[j - 1] + call_cost
                if cost < best[g][j]:
                    best[g][j], cut[g][j] = cost, i
    groups_used = min(range(1, max_groups + 1), key=lambda g: (best[g][n], g))
    runs, j = [], n
    for g in range(groups_used, 0, -1):
        i = cut[g][j]
        runs.append(order[i:j])
        j = i
    return runs[::-1]


class GroupedForward:
    """Calls `model(input_ids=..., attention_mask=..., labels=..., fused_lm_head=True, ...)` per length group and
    returns the fused head's output for the whole batch. Anything it cannot split (no attention mask, a mask that
    is not right padding, MoE router outputs) goes through as one call. On CPU the calls may attend eagerly
    (`eager_calls`)."""

    def __init__(self, model: Any, max_groups: int = MAX_GROUPS) -> None:
        self.model = model
        self.max_groups = max_groups

    def __getattr__(self, name: str) -> Any:  # anything else a caller reads is the model's
        return getattr(self.model, name)

    def __call__(self, **kwargs: Any) -> Any:
        import torch

        mask, ids = kwargs.get("attention_mask"), kwargs.get("input_ids")
        if (
            mask is None
            or ids is None
            or kwargs.get("output_router_logits")
            or not kwargs.get("fused_lm_head")
        ):
            return self.model(**kwargs)
        lengths = mask.sum(dim=1)
        rows, width = mask.shape
        right_padded = bool((mask == (torch.arange(width, device=mask.device) < lengths[:, None])).all())
        per_row = lengths.tolist()
        groups = length_groups(per_row, self.max_groups) if right_padded else []
        if len(groups) <= 1:
            groups = [list(range(rows))]
            kept = [width]
        else:
            kept = [max(per_row[i] for i in g) for g in groups]
        eager = eager_calls(self.model, [(len(g), k) for g, k in zip(groups, kept, strict=True)], ids.device)
        if len(groups) == 1:
            with _attention(self.model, eager[0]):
                return self.model(**kwargs)
        outputs = []
        for g, keep, fast in zip(groups, kept, eager, strict=True):
            index = torch.tensor(g, device=mask.device)
            part = {
                k: (v.index_select(0, index)[:, :keep] if _per_row(v, rows, width) else v)
                for k, v in kwargs.items()
            }
            with _attention(self.model, fast):
                outputs.append(self.model(**part))
        return _reassemble(outputs, groups, kept, width)


# Eager attention keeps each layer's rows x heads x L x L weights for the backward pass (fp32 softmax output and
# its bf16 copy under autocast); sdpa's CPU flash kernel keeps none but its backward is slow at these lengths.
EAGER_ATTENTION_BYTES = 1 << 30
_EAGER_BYTES_PER_WEIGHT = 6


def eager_calls(model: Any, shapes: Sequence[tuple[int, int]], device: Any) -> list[bool]:
    """For the calls of one forward, (rows, tokens) each: which attend eagerly. On CPU, a plain (text-only) model
    set to sdpa and not checkpointing attends eagerly in its smallest calls while their attention weights, all
    alive until the one backward, fit EAGER_ATTENTION_BYTES together. On a 2-core CPU a SmolLM2 LoRA forward and
    backward of 8 x 100 tokens took 4.2 s eager against 5.3 s with sdpa (bf16 autocast), 8 x 250 tokens 10.7 s
    against 12.0 s; the same attention either way, up to float rounding."""
    config = getattr(model, "config", None)
    none = [False] * len(shapes)
    if (
        getattr(device, "type", None) != "cpu"
        or getattr(config, "_attn_implementation", None) != "sdpa"
        or not hasattr(config, "get_text_config")
        or config.get_text_config() is not config  # composite: its sub-configs keep their own kernels
        or getattr(model, "is_gradient_checkpointing", False)  # a recomputed layer must attend as it did
    ):
        return none
    heads, layers = getattr(config, "num_attention_heads", 0), getattr(config, "num_hidden_layers", 0)
    cost = [rows * heads * tokens * tokens * layers * _EAGER_BYTES_PER_WEIGHT for rows, tokens in shapes]
    out, spent = list(none), 0
    for i in sorted(range(len(shapes)), key=lambda i: cost[i]):
        if spent + cost[i] > EAGER_ATTENTION_BYTES:
            break
        out[i], spent = True, spent + cost[i]
    return out


@contextmanager
def _attention(model: Any, eager: bool) -> Iterator[None]:
    """While open, `model` attends eagerly if `eager` (eager_calls said the model can); then as before."""
    if not eager:
        yield
        return
    config = model.config
    stock = config._attn_implementation
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = stock


def _per_row(value: Any, rows: int, width: int) -> bool:
    return hasattr(value, "shape") and len(value.shape) >= 2 and tuple(value.shape[:2]) == (rows, width)


def _reassemble(outputs: list, groups: list[list[int]], kept: list[int], width: int) -> Any:
    """One output for the whole batch: each per-token field padded with zeros by the tokens its call trimmed (the
    head's own shift kept), rows put back in their order."""
    import torch

    order = [i for g in groups for i in g]
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    fields = {}
    for name in _PER_TOKEN:
        parts = [getattr(o, name, None) for o in outputs]
        if any(p is None for p in parts):
            fields[name] = None
            continue
        padded = [
            torch.cat([p, p.new_zeros(p.size(0), width - keep)], dim=1)
            for p, keep in zip(parts, kept, strict=True)
        ]
        fields[name] = torch.cat(padded, dim=0).index_select(0, inverse.to(padded[0].device))
    log_probs, mask = fields["log_probs"], fields["label_mask"]
    count = mask.sum().clamp(min=1) if mask is not None else log_probs.numel()
    return type(outputs[0])(loss=-log_probs.sum() / count, aux_loss=None, **fields)
