"""The schema. Every table has a named unique constraint that makes its natural key explicit, so every write
can be an idempotent upsert (see storage/upsert.py). Schema changes go through Alembic revisions only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.statuses import (
    PRODUCTION_ARM,
    Choice,
    CommandState,
    ItemStatus,
    Metric,
    RoundStatus,
    TrainingRunStatus,
)
from storage.types import ModelText, StrEnumType, UTCDateTime

# Deterministic constraint names: Alembic can then drop/alter them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

HASH_LEN = 64  # sha256 hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}


class Prompt(Base):
    __tablename__ = "prompts"
    id: Mapped[str] = mapped_column(
        String(HASH_LEN), primary_key=True, comment="sha256 of the normalised text"
    )
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(500))
    source_id: Mapped[str | None] = mapped_column(String(500))
    split: Mapped[str] = mapped_column(String(16), index=True)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Checkpoint(Base):
    """A policy: the initial one (round None) or one produced by a training run."""

    __tablename__ = "checkpoints"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    path: Mapped[str] = mapped_column(Text, comment="hub id or local directory")
    base_id: Mapped[str | None] = mapped_column(ForeignKey("checkpoints.id"))
    round_id: Mapped[int | None] = mapped_column(comment="round that trained it (no FK: rounds refer here)")
    label_count: Mapped[int] = mapped_column(default=0)
    data_hash: Mapped[str | None] = mapped_column(String(HASH_LEN))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Generation(Base):
    __tablename__ = "generations"
    __table_args__ = (
        UniqueConstraint("prompt_id", "checkpoint_id", "sample_index", name="uq_generations_sample"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id"))
    checkpoint_id: Mapped[str] = mapped_column(ForeignKey("checkpoints.id"))
    sample_index: Mapped[int]
    text: Mapped[str] = mapped_column(ModelText)
    n_tokens: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RewardScore(Base):
    __tablename__ = "reward_scores"
    __table_args__ = (
        UniqueConstraint("generation_id", "reward_model", name="uq_reward_scores_generation_model"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id"))
    reward_model: Mapped[str] = mapped_column(String(500))
    score: Mapped[float] = mapped_column(Float, comment="raw logit, no sigmoid")


class RewardExclusion(Base):
    """A sample a reward model gave no score, and why (its response alone is over [reward] max_length): it has
    no reward_scores row and no part in its prompt's PVar; this row lets status and queries count them."""

    __tablename__ = "reward_exclusions"
    __table_args__ = (
        UniqueConstraint("generation_id", "reward_model", name="uq_reward_exclusions_generation_model"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id"))
    reward_model: Mapped[str] = mapped_column(String(500))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptScore(Base):
    """A per-prompt acquisition score (pvar, reward_gap) of one policy's K samples under one reward model."""

    __tablename__ = "prompt_scores"
    __table_args__ = (
        UniqueConstraint("prompt_id", "checkpoint_id", "reward_model", "metric", name="uq_prompt_scores_key"),
        Index("ix_prompt_scores_lookup", "checkpoint_id", "reward_model", "metric"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id"))
    checkpoint_id: Mapped[str] = mapped_column(ForeignKey("checkpoints.id"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"), comment="round that asked for it")
    reward_model: Mapped[str] = mapped_column(String(500))
    metric: Mapped[Metric] = mapped_column(StrEnumType(Metric, 32))
    k: Mapped[int]
    value: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Round(Base):
    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("arm", "number", name="uq_rounds_arm_number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    arm: Mapped[str] = mapped_column(
        String(100), default=PRODUCTION_ARM, comment="experiment arm; 'main' in production"
    )
    number: Mapped[int]
    status: Mapped[RoundStatus] = mapped_column(
        StrEnumType(RoundStatus, 20), default=RoundStatus.PLANNED, index=True
    )
    reason: Mapped[str | None] = mapped_column(Text, comment="why cancelled/failed/waiting")
    budget: Mapped[int]
    strategy: Mapped[str] = mapped_column(String(32))  # a loop.acquisition.strategies.Strategy value
    seed: Mapped[int] = mapped_column(default=0)
    min_submitted: Mapped[int | None] = mapped_column(
        comment="[argilla] min_submitted the round collects with, recorded at its first step (NULL: not yet)"
    )
    gold_per_round: Mapped[int | None] = mapped_column(
        comment="gold records per queue the round takes, fixed at its first push (NULL: not pushed yet)"
    )
    policy_in: Mapped[str | None] = mapped_column(ForeignKey("checkpoints.id"))
    policy_out: Mapped[str | None] = mapped_column(ForeignKey("checkpoints.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deadline_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    queue_links: Mapped[dict[str, Any] | None] = mapped_column(
        comment="where annotators label the round, recorded at its push: who ('' = everyone) -> URL"
    )


class RoundScoring(Base):
    """A round's scoring step: the candidate draw ([selection] candidates) and what the step cost, added per
    committed batch, so a killed and resumed step counts each stored batch once."""

    __tablename__ = "round_scoring"
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), primary_key=True)
    candidates: Mapped[int | None] = mapped_column(
        comment="candidate prompts asked for; NULL: the whole pool (no draw, nothing in round_candidates)"
    )
    free_pool: Mapped[int | None] = mapped_column(comment="prompts the arm could still take at the draw")
    drawn: Mapped[int | None] = mapped_column(comment="prompts in the candidate set (round_candidates rows)")
    prompts_scored: Mapped[int] = mapped_column(default=0, comment="prompts scored by this round's step")
    samples_generated: Mapped[int] = mapped_column(default=0, comment="responses the policy sampled")
    tokens_generated: Mapped[int] = mapped_column(BigInteger, default=0)
    scoring_s: Mapped[float] = mapped_column(Float, default=0.0, comment="seconds of the committed batches")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RoundCandidate(Base):
    """A prompt of a round's candidate set: scored under the round's policy; the round selects among these."""

    __tablename__ = "round_candidates"
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), primary_key=True)
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id"), primary_key=True)


class AnnotationItem(Base):
    """The pair of one prompt pushed for labelling in one round. `id` is a content hash of prompt and pair,
    is also the Argilla record id, so a re-push updates instead of duplicating."""

    __tablename__ = "annotation_items"
    __table_args__ = (UniqueConstraint("round_id", "prompt_id", name="uq_annotation_items_round_prompt"),)
    id: Mapped[str] = mapped_column(String(HASH_LEN), primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), index=True)
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id"), index=True)
    generation_a_id: Mapped[int] = mapped_column(ForeignKey("generations.id"), comment="highest reward")
    generation_b_id: Mapped[int] = mapped_column(ForeignKey("generations.id"), comment="lowest reward")
    swapped: Mapped[bool] = mapped_column(Boolean, default=False, comment="b shown as 'response_a'")
    audit: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), comment="drawn at random outside the strategy's picks"
    )
    argilla_record_id: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[ItemStatus] = mapped_column(
        StrEnumType(ItemStatus, 20), default=ItemStatus.PENDING, comment="pending|pushed|decided|undecided"
    )
    decision: Mapped[Choice | None] = mapped_column(
        StrEnumType(Choice, 8), comment="a|b|tie after aggregation"
    )
    votes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    decision_method: Mapped[str | None] = mapped_column(String(20), comment="majority | dawid-skene")
    confidence: Mapped[float | None] = mapped_column(
        Float, comment="posterior probability of the decision (majority: share of the votes)"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Label(Base):
    """One version of one annotator's answer, in our orientation (a = generation_a), whatever side Argilla showed
    it on. Append-only: a changed answer (a late edit, a discard after an answer, an answer given again) is a new
    row with the next `version`; no row is ever updated or deleted by a pull. An answer is keyed by the Argilla
    user id, not the username (a username can be removed and given to somebody else)."""

    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("item_id", "annotator_id", "version", name="uq_labels_item_annotator_version"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("annotation_items.id"), index=True)
    annotator: Mapped[str] = mapped_column(String(200), comment="username when the answer was pulled")
    annotator_id: Mapped[str | None] = mapped_column(
        String(100), comment="Argilla user id (NULL: stored before answers were keyed by it, until re-pulled)"
    )
    version: Mapped[int] = mapped_column(default=1, server_default="1", comment="1 = the first answer")
    response_id: Mapped[str | None] = mapped_column(String(100), comment="Argilla response id")
    choice: Mapped[Choice] = mapped_column(StrEnumType(Choice, 8), comment="a|b|tie|discard")
    rationale: Mapped[str | None] = mapped_column(Text)
    submitted_at: Mapped[datetime | None] = mapped_column(comment="Argilla's updated_at of the response")
    answered_at: Mapped[datetime | None] = mapped_column(
        comment="Argilla's inserted_at of the response: when the answer was first given"
    )
    stored_at: Mapped[datetime | None] = mapped_column(
        default=utcnow, comment="when pull stored this version"
    )


class DecisionLabel(Base):
    """A label version an item's decision was made from. Rewritten while the item's round collects (it follows
    each answer's latest version); frozen once collection ends, so a closed round's agreement, export and report
    read the versions it was decided and trained on."""

    __tablename__ = "decision_labels"
    item_id: Mapped[str] = mapped_column(ForeignKey("annotation_items.id"), primary_key=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id"), primary_key=True)
    counted: Mapped[bool] = mapped_column(
        Boolean,
        default=True,
        server_default=true(),
        comment="false: the annotator was excluded (linked for export, not counted)",
    )


class AnnotatorExclusion(Base):
    """One period in which an annotator's answers do not count (`annotators exclude` .. `include`): their
    answers stay stored; open rounds are re-decided without them, closed rounds keep their decisions."""

    __tablename__ = "annotator_exclusions"
    id: Mapped[int] = mapped_column(primary_key=True)
    annotator: Mapped[str] = mapped_column(String(200), index=True, comment="Argilla username")
    reason: Mapped[str | None] = mapped_column(Text)
    excluded_by: Mapped[str] = mapped_column(String(200))
    excluded_at: Mapped[datetime] = mapped_column(default=utcnow)
    included_by: Mapped[str | None] = mapped_column(String(200))
    included_at: Mapped[datetime | None] = mapped_column(comment="NULL: still excluded")


class GoldItem(Base):
    """An operator's gold (honeypot) pair: a prompt, two responses and the answer a careful annotator gives.
    Mixed into rounds' queues ([argilla] gold_per_round) to measure annotators; never an item, never trained
    on or exported as a preference. `key` is a content hash of the pair, so adding a file again is a no-op."""

    __tablename__ = "gold_items"
    __table_args__ = (UniqueConstraint("key", name="uq_gold_items_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(HASH_LEN), comment="sha256 of prompt and pair")
    prompt: Mapped[str] = mapped_column(ModelText)
    response_a: Mapped[str] = mapped_column(ModelText)
    response_b: Mapped[str] = mapped_column(ModelText)
    expected: Mapped[Choice] = mapped_column(StrEnumType(Choice, 8), comment="a|b|tie")
    rationale: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(500), comment="file it was added from")
    source_id: Mapped[str | None] = mapped_column(String(500), comment="the file's own id of the row")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(
        comment="`gold retire`: no longer placed (NULL: in use)"
    )


class GoldRecord(Base):
    """A gold item placed in one round's queue: in the shared dataset (annotator NULL) or in one annotator's
    own dataset (blind overlap). `id` is the record's external id, a hash like an item id, so nothing in the
    record tells it apart; its swap and priority stay here, as an item's do."""

    __tablename__ = "gold_records"
    __table_args__ = (UniqueConstraint("gold_id", "round_id", "annotator", name="uq_gold_records_placement"),)
    id: Mapped[str] = mapped_column(String(HASH_LEN), primary_key=True)
    gold_id: Mapped[int] = mapped_column(ForeignKey("gold_items.id"), index=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), index=True)
    annotator: Mapped[str | None] = mapped_column(
        String(200), comment="username whose own dataset holds it; NULL: the shared dataset"
    )
    swapped: Mapped[bool] = mapped_column(Boolean, default=False, comment="b shown as 'response_a'")
    priority: Mapped[int] = mapped_column(comment="its place among the round's records (1 = first)")
    argilla_record_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GoldAnswerRow(Base):
    """An annotator's answer to a gold record, un-swapped to the gold item's own a/b. The latest answer per
    record and Argilla user: an edit replaces it (a gold answer is a measurement, not a trained-on label)."""

    __tablename__ = "gold_answers"
    __table_args__ = (UniqueConstraint("record_id", "annotator_id", name="uq_gold_answers_record_annotator"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("gold_records.id"), index=True)
    gold_id: Mapped[int] = mapped_column(ForeignKey("gold_items.id"), index=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), index=True)
    annotator: Mapped[str] = mapped_column(String(200), comment="username when the answer was pulled")
    annotator_id: Mapped[str] = mapped_column(String(100), comment="Argilla user id")
    shown_swapped: Mapped[bool] = mapped_column(Boolean, comment="b was shown as 'response_a'")
    answer: Mapped[Choice] = mapped_column(StrEnumType(Choice, 8), comment="a|b|tie|discard, gold's a/b")
    response_id: Mapped[str | None] = mapped_column(String(100), comment="Argilla response id")
    answered_at: Mapped[datetime | None] = mapped_column(comment="Argilla's updated_at of the response")
    stored_at: Mapped[datetime] = mapped_column(default=utcnow, comment="when pull stored it")


class TrainingRun(Base):
    __tablename__ = "training_runs"
    __table_args__ = (UniqueConstraint("round_id", "data_hash", name="uq_training_runs_round_data"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"))
    data_hash: Mapped[str] = mapped_column(String(HASH_LEN))
    label_count: Mapped[int]
    status: Mapped[TrainingRunStatus] = mapped_column(
        StrEnumType(TrainingRunStatus, 20), default=TrainingRunStatus.RUNNING
    )
    checkpoint_id: Mapped[str | None] = mapped_column(ForeignKey("checkpoints.id"))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class DpoMargin(Base):
    """DPO's implicit reward margin on one trained-on label under one checkpoint:
    beta * [(log pi - log pi_ref)(chosen) - (log pi - log pi_ref)(rejected)], pi_ref the initial policy.
    Recorded for rounds with audit items, so PVar picks and audit picks can be compared on what DPO made of
    them (loop.evaluation.audit)."""

    __tablename__ = "dpo_margins"
    __table_args__ = (UniqueConstraint("item_id", "checkpoint_id", name="uq_dpo_margins_item_checkpoint"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("annotation_items.id"), index=True)
    checkpoint_id: Mapped[str] = mapped_column(ForeignKey("checkpoints.id"))
    margin: Mapped[float] = mapped_column(Float)


class RewardRefresh(Base):
    """One round's selection reward-model refresh ([reward] refresh): a candidate trained from `base_model` on
    the decided labels so far, compared with the model in use on the same held-out labels. The row is written
    once the comparison is done, so a round without one has not refreshed (a crash left the old model)."""

    __tablename__ = "reward_refreshes"
    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), unique=True)
    base_model: Mapped[str] = mapped_column(String(500), comment="[reward] model the candidate started from")
    previous_model: Mapped[str] = mapped_column(String(500), comment="selection RM before this refresh")
    candidate_model: Mapped[str | None] = mapped_column(
        String(500), comment="the candidate's directory (NULL: none trained)"
    )
    kept: Mapped[bool] = mapped_column(comment="the candidate selects from the next round on")
    n_pairs: Mapped[int] = mapped_column(comment="decided a/b labels (all rounds so far)")
    n_train: Mapped[int]
    n_heldout: Mapped[int]
    old_agreement: Mapped[float | None] = mapped_column(Float, comment="previous model on the held-out")
    new_agreement: Mapped[float | None] = mapped_column(Float, comment="candidate on the held-out")
    reason: Mapped[str | None] = mapped_column(Text, comment="why it was kept or not")
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Evaluation(Base):
    __tablename__ = "evaluations"
    __table_args__ = (
        UniqueConstraint(
            "checkpoint_id", "reference_id", "judge", name="uq_evaluations_checkpoint_reference"
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_id: Mapped[str] = mapped_column(ForeignKey("checkpoints.id"))
    reference_id: Mapped[str] = mapped_column(ForeignKey("checkpoints.id"))
    judge: Mapped[str] = mapped_column(String(500))
    n_prompts: Mapped[int]
    win_rate: Mapped[float]
    ci_low: Mapped[float]
    ci_high: Mapped[float]
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reference_key: Mapped[str | None] = mapped_column(
        String(HASH_LEN), index=True, comment="hash of what the reference's samples depend on (the cache key)"
    )
    reference_samples_id: Mapped[int | None] = mapped_column(
        ForeignKey("evaluations.id"), comment="evaluation whose reference rows this one reuses; NULL: its own"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvaluationSample(Base):
    """One sampled response of an evaluation: the policy's or the reference's sample_index-th response to an
    eval prompt, with its sampling seed and the judge's score. The evidence behind an Evaluation's means."""

    __tablename__ = "evaluation_samples"
    __table_args__ = (
        UniqueConstraint(
            "evaluation_id", "prompt_id", "side", "sample_index", name="uq_evaluation_samples_sample"
        ),
        CheckConstraint("side IN ('policy', 'reference')", name="side"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id"), index=True)
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id"))
    side: Mapped[str] = mapped_column(String(16), comment="policy|reference")
    sample_index: Mapped[int]
    seed: Mapped[int] = mapped_column(BigInteger, comment="seed the generator drew this sample index with")
    text: Mapped[str] = mapped_column(ModelText)
    n_tokens: Mapped[int]
    score: Mapped[float] = mapped_column(Float, comment="the evaluation's judge score")


class EvalComparison(Base):
    """One eval prompt of a human evaluation ([evaluation] judge = "human"): a response of the checkpoint and
    one of the reference, shown in Argilla with the checkpoint's on side `policy_side` (drawn at random with
    [evaluation] seed, recorded here only). `id` is a content hash and the Argilla record's external id, so a
    re-push updates instead of duplicating."""

    __tablename__ = "eval_comparisons"
    __table_args__ = (
        UniqueConstraint("checkpoint_id", "reference_id", "prompt_id", name="uq_eval_comparisons_key"),
    )
    id: Mapped[str] = mapped_column(String(HASH_LEN), primary_key=True)
    checkpoint_id: Mapped[str] = mapped_column(ForeignKey("checkpoints.id"), index=True)
    reference_id: Mapped[str] = mapped_column(ForeignKey("checkpoints.id"))
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id"))
    policy_text: Mapped[str] = mapped_column(ModelText)
    reference_text: Mapped[str] = mapped_column(ModelText)
    policy_side: Mapped[str] = mapped_column(String(1), comment="a|b: where Argilla shows the checkpoint's")
    min_submitted: Mapped[int] = mapped_column(comment="answers needed (the round's overlap)")
    argilla_record_id: Mapped[str | None] = mapped_column(String(100))
    answers: Mapped[dict[str, Any]] = mapped_column(
        default=dict, comment="annotator -> policy|reference|tie|discard (the swap undone)"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoopSetting(Base):
    """Operator-set values (budget, strategy) that apply from a given round on."""

    __tablename__ = "loop_settings"
    __table_args__ = (UniqueConstraint("arm", "key", "from_round", name="uq_loop_settings_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    arm: Mapped[str] = mapped_column(String(100), default=PRODUCTION_ARM)
    key: Mapped[str] = mapped_column(String(50))
    value: Mapped[str] = mapped_column(String(200))
    from_round: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OperatorAction(Base):
    """The audit log: who did what, with what (done at once; see OperatorCommand for queued ones)."""

    __tablename__ = "operator_actions"
    id: Mapped[int] = mapped_column(primary_key=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class OperatorCommand(Base):
    """A round command (cancel, advance) given while a scheduler runs: the scheduler carries it out at its next
    tick, under its lease, and records the outcome here (what `status` shows)."""

    __tablename__ = "operator_commands"
    id: Mapped[int] = mapped_column(primary_key=True)
    command: Mapped[str] = mapped_column(String(20), comment="cancel | advance")
    arm: Mapped[str] = mapped_column(String(100), default=PRODUCTION_ARM)
    round_number: Mapped[int]
    reason: Mapped[str | None] = mapped_column(Text, comment="a cancel's reason")
    actor: Mapped[str] = mapped_column(String(200))
    state: Mapped[CommandState] = mapped_column(
        StrEnumType(CommandState, 10), default=CommandState.PENDING, index=True
    )
    outcome: Mapped[str | None] = mapped_column(Text, comment="what the scheduler did, or why it could not")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]


class ProjectSecret(Base):
    """A project's random secrets, drawn once by a migration: `record_ids` keys the hashes that become Argilla
    external ids (items, gold records, eval comparisons), so an annotator cannot recompute them from what a
    record shows (which response the reward model ranks higher, which records are gold)."""

    __tablename__ = "project_secrets"
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class SchedulerLock(Base):
    """One row per database: the scheduler that holds it (host/pid) and its heartbeat."""

    __tablename__ = "scheduler_locks"
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime]
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
