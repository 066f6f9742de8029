"""Training the selection reward model (TRL 1.16 RewardTrainer) on the preference labels collected so far.

A deterministic share of prompts (by hash) is held out; accuracy is measured afterwards with
loop.ml.rewards.RewardScorer on the saved checkpoint, i.e. through the same code path that selection uses.
Pairs are encoded by the encoder RewardScorer uses (loop.ml.rewards.encode_reward_inputs), so the model is
trained on the inputs it will later score. trl, torch and transformers are imported inside the functions (trl
only through loop.ml.trl_backend), so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from loop.ml.settings import RewardTrainSettings
from storage.errors import PvarLoopError

log = logging.getLogger(__name__)

# Written into every checkpoint so a re-run can report what produced it without retraining.
REWARD_META_FILE = "pvar_reward_training.json"

# (prompt, response) -> gold score, or None when the judge has no opinion on that prompt.
Judge = Callable[[str, str], float | None]


class RewardTrainingError(PvarLoopError, RuntimeError):
    """Reward-model training, saving or measuring failed; the message keeps the library's error."""


class Pair(Protocol):
    """Anything with prompt/chosen/rejected text: storage.repositories.items.DecidedPair, loop.ml.dpo.PreferencePair."""

    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class RewardTrainResult:
    """What one reward-model run produced. Accuracies are pairwise: share of pairs with score(chosen) >
    score(rejected). heldout_accuracy is None when the split left no held-out pairs (too few prompts)."""

    checkpoint_dir: Path
    steps: int
    seconds: float
    train_accuracy: float
    heldout_accuracy: float | None
    n_train: int
    n_heldout: int
    judge_agreement: float | None = None  # held-out pairs ordered like the judge (judge ties excluded)
    n_judged: int = 0
    data_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "checkpoint_dir": str(self.checkpoint_dir)}


@dataclass(frozen=True)
class PairEvaluation:
    """Pairwise accuracy (and optional judge agreement) of one reward model on a set of pairs."""

    accuracy: float | None
    n: int
    judge_agreement: float | None = None
    n_judged: int = 0
    # per input pair, in order: chosen scored strictly above rejected; None where a side could not be read
    correct: tuple[bool | None, ...] = ()


def in_heldout(prompt: str, fraction: float) -> bool:
    """Whether a prompt belongs to the held-out share: a hash of its text, stable across runs and machines."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_pairs(pairs: Sequence[Pair], fraction: float) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out) by prompt hash, so every pair of one prompt lands on the same side.

    When either side would be empty (a handful of prompts), everything is trained on and nothing is held out.
    """
    train = [p for p in pairs if not in_heldout(p.prompt, fraction)]
    heldout = [p for p in pairs if in_heldout(p.prompt, fraction)]
    if not train or not heldout:
        return list(pairs), []
    return train, heldout


def reward_data_hash(pairs: Sequence[Pair], base: str, settings: RewardTrainSettings) -> str:
    """sha256 over the pairs (as a multiset), the base model and the settings: same inputs, same run."""
    rows = sorted(json.dumps([p.prompt, p.chosen, p.rejected], ensure_ascii=False) for p in pairs)
    digest = hashlib.sha256(json.dumps([base, asdict(settings)], sort_keys=True).encode())
    for row in rows:
        digest.update(b"\n" + row.encode("utf-8"))
    return digest.hexdigest()


def pairwise_accuracy(chosen_scores: Sequence[float], rejected_scores: Sequence[float]) -> float | None:
    """Share of pairs with chosen strictly above rejected (a tie counts as wrong); None for no pairs."""
    if len(chosen_scores) != len(rejected_scores):
        raise ValueError(f"got {len(chosen_scores)} chosen but {len(rejected_scores)} rejected scores")
    if not len(chosen_scores):
        return None
    return sum(c > r for c, r in zip(chosen_scores, rejected_scores, strict=True)) / len(chosen_scores)


def agreement_with(
    judge: Judge, pairs: Sequence[Pair], chosen_scores: Sequence[float], rejected_scores: Sequence[float]
) -> tuple[float | None, int]:
    """(share, n): of the pairs the judge orders strictly, the share the reward model orders the same way.

    The judge is a gold scorer such as the rule-based verifier. Pairs it ties, or has no opinion on (None),
    carry no order and are left out; n counts the pairs compared. share is None when n is 0.
    """
    agree = n = 0
    for pair, rc, rr in zip(pairs, chosen_scores, rejected_scores, strict=True):
        gc, gr = judge(pair.prompt, pair.chosen), judge(pair.prompt, pair.rejected)
        if gc is None or gr is None or gc == gr:
            continue
        n += 1
        if rc != rr and (rc > rr) == (gc > gr):  # an RM tie orders nothing: it counts as disagreement
            agree += 1
    return (agree / n if n else None), n


def evaluate_reward_model(
    model: str | os.PathLike,
    pairs: Sequence[Pair],
    *,
    max_length: int = 512,
    batch_size: int = 16,
    dtype: str = "float32",
    judge: Judge | None = None,
) -> PairEvaluation:
    """Score both sides of every pair with RewardScorer (the selection path) and measure the ordering."""
    import torch

    from loop.ml.rewards import RewardScorer

    if not pairs:
        return PairEvaluation(None, 0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    scorer = RewardScorer(
        str(model), dtype=dtype, max_length=max_length, batch_size=batch_size, device=device
    )
    try:
        n = len(pairs)
        scores = scorer.score(
            [p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs]
        )
    finally:
        scorer.close()
    chosen, rejected = scores[:n].tolist(), scores[n:].tolist()
    # A response too long to read whole has no score (NaN): its pair is not measured.
    readable = {i for i in range(n) if math.isfinite(chosen[i]) and math.isfinite(rejected[i])}
    correct = tuple(chosen[i] > rejected[i] if i in readable else None for i in range(n))
    if len(readable) < n:
        pairs = [pairs[i] for i in sorted(readable)]
        chosen, rejected = [chosen[i] for i in sorted(readable)], [rejected[i] for i in sorted(readable)]
        n = len(readable)
    agreement, n_judged = agreement_with(judge, pairs, chosen, rejected) if judge else (None, 0)
    return PairEvaluation(pairwise_accuracy(chosen, rejected), n, agreement, n_judged, correct)


def reward_training_dataset(tokenizer: Any, pairs: Sequence[Pair], max_length: int):
    """A datasets.Dataset already in RewardTrainer's processed form (chosen_ids/rejected_ids), encoded by
    loop.ml.rewards.encode_reward_inputs, the encoder RewardScorer uses: the model is trained on exactly the
    inputs it will later score (TRL would concatenate prompt and response as plain text instead). A pair with
    a response too long to read whole is left out, as scoring leaves such a response out."""
    from datasets import Dataset

    from loop.ml.rewards import encode_reward_inputs

    prompts = [p.prompt for p in pairs]
    chosen = encode_reward_inputs(tokenizer, prompts, [p.chosen for p in pairs], max_length)
    rejected = encode_reward_inputs(tokenizer, prompts, [p.rejected for p in pairs], max_length)
    kept = [(c, r) for c, r in zip(chosen, rejected, strict=True) if c is not None and r is not None]
    if len(kept) < len(pairs):
        log.warning(
            "reward-model training: %d of %d pairs left out: a response is longer than [reward] "
            "max_length=%d tokens even without its prompt",
            len(pairs) - len(kept),
            len(pairs),
            max_length,
        )
    if pairs and not kept:
        raise RewardTrainingError(
            f"reward-model training: every pair has a response longer than [reward] max_length={max_length} "
            "tokens; raise [reward] max_length"
        )
    return Dataset.from_dict({"chosen_ids": [c for c, _ in kept], "rejected_ids": [r for _, r in kept]})


def train_reward_model(
    pairs: Sequence[Pair],
    *,
    base_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    settings: RewardTrainSettings,
    judge: Judge | None = None,
    eval_batch_size: int = 16,
) -> RewardTrainResult:
    """Train a Bradley-Terry reward model from base_dir on the non-held-out pairs; save it to output_dir.

    Accuracy (and agreement with `judge` on the held-out pairs) is measured with RewardScorer on the saved
    checkpoint before it is moved into place. The checkpoint is written to a hidden sibling temp dir and
    renamed, so a crash never leaves a half-written output_dir (the next training started there removes the
    scratch dir a killed one left); an existing output_dir is a FileExistsError
    raised before any training (read_reward_result reports what produced it).
    """
    from loop.ml.checkpoint_dirs import (
        claim_output_dir,
        publish_checkpoint,
        save_checkpoint,
        scratch_dir,
        trainer_dir,
    )
    from loop.ml.loading import ModelLoadError, load_reward_base, release_memory
    from loop.ml.rewards import readable_max_length
    from loop.ml.trl_backend import run_reward_trainer

    pairs = list(pairs)
    if not pairs:
        raise ValueError(
            "train_reward_model: no preference pairs given (need at least one decided a/b label)"
        )
    if not isinstance(settings, RewardTrainSettings):
        raise TypeError(
            f"train_reward_model: settings must be RewardTrainSettings, got {type(settings).__name__}"
        )
    output_dir = claim_output_dir(output_dir, "train_reward_model")
    base = str(base_dir)
    train, heldout = split_pairs(pairs, settings.heldout_fraction)
    data_hash = reward_data_hash(pairs, base, settings)

    try:
        model, tokenizer = load_reward_base(base, settings.seed)
    except ModelLoadError as e:
        raise RewardTrainingError(f"train_reward_model: {e}") from e
    max_length = readable_max_length(model, tokenizer, settings.max_length, base)
    dataset = reward_training_dataset(tokenizer, train, max_length)
    with scratch_dir(output_dir) as scratch:
        try:
            run = run_reward_trainer(model, tokenizer, dataset, settings, output_dir=trainer_dir(scratch))
        except Exception as e:
            raise RewardTrainingError(f"reward model training failed: {type(e).__name__}: {e}") from e
        try:
            checkpoint = save_checkpoint(run.model, tokenizer, scratch)
        except Exception as e:
            raise RewardTrainingError(f"cannot save reward model for {output_dir}: {e}") from e
        steps, seconds = run.steps, run.seconds
        del run, model  # the trained weights are on disk now; scoring loads them from there
        release_memory()
        measure = {"max_length": settings.max_length, "batch_size": eval_batch_size}
        on_train = evaluate_reward_model(checkpoint, train, **measure)
        on_heldout = evaluate_reward_model(checkpoint, heldout, **measure, judge=judge)
        result = RewardTrainResult(
            checkpoint_dir=output_dir,
            steps=steps,
            seconds=seconds,
            train_accuracy=on_train.accuracy or 0.0,
            heldout_accuracy=on_heldout.accuracy,
            n_train=len(train),
            n_heldout=len(heldout),
            judge_agreement=on_heldout.judge_agreement,
            n_judged=on_heldout.n_judged,
            data_hash=data_hash,
        )
        meta = {"result": result.to_dict(), "base": base, "settings": asdict(settings)}
        publish_checkpoint(checkpoint, output_dir, REWARD_META_FILE, meta, "train_reward_model")
    return result


def read_reward_result(checkpoint_dir: str | os.PathLike) -> RewardTrainResult:
    """The RewardTrainResult recorded in a checkpoint written by train_reward_model."""
    from loop.ml.checkpoint_dirs import read_checkpoint_meta

    path = Path(checkpoint_dir) / REWARD_META_FILE
    try:
        data = dict(read_checkpoint_meta(checkpoint_dir, REWARD_META_FILE)["result"])
        data["checkpoint_dir"] = Path(checkpoint_dir)
        return RewardTrainResult(**data)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RewardTrainingError(f"{path}: not a readable train_reward_model record: {e}") from e


class RewardCheckpointConflict(RewardTrainingError):
    """The output directory exists but is not a reward model trained on these pairs, base and settings (its meta
    file is unreadable or records another data hash): it is neither reused nor overwritten."""


def train_or_reuse(
    pairs: Sequence[Pair],
    *,
    base_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    settings: RewardTrainSettings,
    judge: Judge | None = None,
    eval_batch_size: int = 16,
) -> tuple[RewardTrainResult, bool]:
    """(result, reused): train_reward_model into output_dir, or, when output_dir already holds the model these
    pairs, base and settings give (its meta file's data hash), that model's recorded result, untouched.

    Any other existing output_dir is a RewardCheckpointConflict naming it, and nothing is trained: a directory
    whose meta file cannot be read was changed after training published it (meta written before the atomic
    rename), and it may be the model selecting now, so it is not overwritten; training elsewhere would break
    the one-directory-per-data-hash naming that makes a re-run reuse instead of retrain. The operator moves it
    away (or repairs the file) and re-runs."""
    out = Path(output_dir)
    if not out.exists():
        result = train_reward_model(
            pairs,
            base_dir=base_dir,
            output_dir=out,
            settings=settings,
            judge=judge,
            eval_batch_size=eval_batch_size,
        )
        return result, False
    try:
        result = read_reward_result(out)
    except RewardTrainingError as e:
        raise RewardCheckpointConflict(
            f"{e}; not reusing or overwriting {out}: move it away and re-run"
        ) from e
    data_hash = reward_data_hash(pairs, str(base_dir), settings)
    if result.data_hash != data_hash:
        raise RewardCheckpointConflict(
            f"{out} already exists and was not trained on these labels (its {REWARD_META_FILE} records data "
            f"hash {result.data_hash[:12]!r}, these labels, base and settings give {data_hash[:12]!r}); "
            "not overwriting it: move it away and re-run"
        )
    return result, True
