"""What a report holds: plain dataclasses filled by loop.report.data from the database and read by the verdict,
the plots and the HTML page (kept apart so those readers do not depend on the database code)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PvarPool:
    """The PVar values of every scored prompt for one (policy, reward model): what a round selected from."""

    key: str
    checkpoint_id: str
    reward_model: str
    values: list[float]  # sorted ascending
    mean: float
    median: float


@dataclass
class RoundPvar:
    pool: str  # PvarPool.key
    reward_model: str
    pool_size: int
    selected: list[float]  # PVar of this round's item prompts, ascending
    selected_missing: int  # item prompts without a score in the pool
    selected_mean: float | None
    pool_mean: float
    # Mean mid-rank percentile (0-100) of the selected prompts in the pool: ~50 is random, ~100 is top-k.
    selected_percentile: float | None


@dataclass
class EvalPoint:
    checkpoint_id: str
    reference_id: str
    judge: str
    n_prompts: int
    win_rate: float
    ci_low: float
    ci_high: float
    # Mean judge score of the policy's samples with its bootstrap CI over prompts (None: stored before
    # evaluations kept it).
    score_mean: float | None = None
    score_low: float | None = None
    score_high: float | None = None


@dataclass
class RoundRow:
    id: int
    arm: str
    number: int
    status: str
    reason: str | None
    strategy: str
    seed: int
    budget: int
    policy_in: str | None
    policy_out: str | None
    created_at: str | None
    finished_at: str | None
    items: int = 0
    pushed: int = 0
    pending: int = 0
    decided: int = 0  # items decided a or b (the DPO pairs; ties apart)
    ties: int = 0
    undecided: int = 0
    labels: int = 0  # annotator answers, discards included: the labelling effort
    annotators: int = 0
    agreement_items: int = 0
    pairwise_agreement: float | None = None
    fleiss_kappa: float | None = None
    undecided_share: float | None = None  # of resolved items
    tie_share: float | None = None  # of resolved items
    cum_labels: int = 0  # labels of this arm up to and including this round
    cum_decided: int = 0
    eval: EvalPoint | None = None  # of policy_out, with the report's reference and judge
    pvar: RoundPvar | None = None
    # Candidate draw and scoring cost (storage.repositories.candidates.scoring_costs; None: not scored yet)
    scoring: dict[str, Any] | None = None


@dataclass
class CurvePoint:
    round_number: int | None  # None: the arm's starting policy, before any label
    labels: int
    decided: int
    eval: EvalPoint


@dataclass
class ReportData:
    generated_at: str
    pool: dict[str, Any]
    total_labels: int
    rounds: list[RoundRow]
    arms: dict[str, str]  # arm -> its strategy ("mixed" if the operator changed it between rounds)
    pools: dict[str, PvarPool]
    eval_reference: str | None
    eval_judge: str | None
    other_eval_pairs: list[list[str]]  # (reference, judge) pairs left out of the curves
    curves: dict[str, list[CurvePoint]]
    verdict: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)  # PVar vs audit picks (loop.evaluation.audit)
    judge_warning: str | None = None  # the curves' judge is the selection reward model (a biased judge)
    # Per round: the selection reward model's refresh ([reward] refresh; storage reward_refreshes rows)
    reward_refresh: list[dict[str, Any]] = field(default_factory=list)
    # Per-annotator reliability (loop.quality.inputs.annotator_reliability: "annotators", "rounds") and the
    # [quality] thresholds it was flagged against ("thresholds")
    annotators: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)
