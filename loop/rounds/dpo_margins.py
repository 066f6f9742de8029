"""What DPO made of each label: its implicit reward margin after training, recorded for rounds with audit items.

margin = beta * [(log pi - log pi_ref)(chosen) - (log pi - log pi_ref)(rejected)], pi the new checkpoint and
pi_ref the initial policy (DPO's reference). The paper's argument is that high-PVar prompts carry larger
gradients; if so, PVar-picked labels should end training with larger margins than the random audit picks
(loop.evaluation.audit compares them). Four forward passes per label: cheap next to the DPO run itself, and
skipped when no round trained on holds an audit item (experiment arms, audit_fraction = 0).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from loop.config import Config
from storage.db import UnitOfWork
from storage.models import Checkpoint

log = logging.getLogger(__name__)


def record_margins(
    cfg: Config,
    uow: UnitOfWork,
    round_ids: Sequence[int],
    checkpoint_id: str,
    initial_id: str,
    pairs: Sequence,
) -> None:
    """Margins of `pairs` (storage.repositories.items.DecidedPair) under `checkpoint_id`, once per checkpoint."""
    from storage.repositories.dpo_margins import add_margins, has_margins, rounds_with_audit

    with uow() as session:
        if not pairs or has_margins(session, checkpoint_id) or not rounds_with_audit(session, round_ids):
            return
        policy = session.get(Checkpoint, checkpoint_id).path
        reference = session.get(Checkpoint, initial_id).path
    margins = implicit_margins(policy, reference, pairs, beta=cfg.training.beta)
    with uow() as session:
        if not has_margins(session, checkpoint_id):
            add_margins(session, checkpoint_id, margins)
    log.debug("checkpoint %s: DPO margins of %s labels recorded", checkpoint_id, len(margins))


def implicit_margins(policy: str, reference: str, pairs: Sequence, *, beta: float) -> dict[str, float]:
    """item id -> beta * (policy-vs-reference log-ratio of chosen minus that of rejected)."""
    from loop.ml.logprobs import completion_logprobs

    prompts = [p.prompt for p in pairs] * 2
    texts = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    ratio = completion_logprobs(policy, prompts, texts) - completion_logprobs(reference, prompts, texts)
    n = len(pairs)
    return {p.item_id: float(beta * (ratio[i] - ratio[n + i])) for i, p in enumerate(pairs)}
