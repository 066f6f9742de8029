"""annotator_exclusions; decision_labels.counted; annotation_items.decision_method and confidence

Revision ID: 0014_annotator_exclusions
Revises: 0013_answer_times

An operator can stop counting one annotator (`pvar-loop annotators exclude NAME`, `include NAME`): each period
of exclusion is a row (who, since when, by whom, why; ended by an include). The annotator's answers stay
stored; a decision still links them (so export shows them, flagged) with `counted` false. Each item records
how its decision was aggregated (majority | dawid-skene) and the posterior confidence of it.

Downgrade refuses while any exclusion is recorded or any decision came from Dawid-Skene: the older schema
cannot say which answers did not count, nor keep a confidence the votes do not give back.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from alembic.util import CommandError

revision: str = "0014_annotator_exclusions"
down_revision: str | None = "0013_answer_times"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "annotator_exclusions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("annotator", sa.String(length=200), nullable=False, comment="Argilla username"),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("excluded_by", sa.String(length=200), nullable=False),
        sa.Column("excluded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("included_by", sa.String(length=200), nullable=True),
        sa.Column("included_at", sa.DateTime(timezone=True), nullable=True, comment="NULL: still excluded"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotator_exclusions")),
    )
    op.create_index(
        op.f("ix_annotator_exclusions_annotator"), "annotator_exclusions", ["annotator"], unique=False
    )
    with op.batch_alter_table("decision_labels", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "counted",
                sa.Boolean(),
                nullable=False,
                server_default=sa.true(),
                comment="false: the annotator was excluded (linked for export, not counted)",
            )
        )
    with op.batch_alter_table("annotation_items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "decision_method", sa.String(length=20), nullable=True, comment="majority | dawid-skene"
            )
        )
        batch_op.add_column(
            sa.Column(
                "confidence",
                sa.Float(),
                nullable=True,
                comment="posterior probability of the decision (majority: share of the votes)",
            )
        )


def downgrade() -> None:
    bind = op.get_bind()
    exclusions = bind.execute(sa.text("SELECT count(*) FROM annotator_exclusions")).scalar()
    ds = bind.execute(
        sa.text("SELECT count(*) FROM annotation_items WHERE decision_method = 'dawid-skene'")
    ).scalar()
    if exclusions or ds:
        # CommandError: storage.migrate turns it into the CLI's one-line refusal (exit 2).
        raise CommandError(
            f"downgrade below 0014_annotator_exclusions refused: {exclusions} annotator exclusions and {ds} "
            "Dawid-Skene decisions are recorded; the older schema cannot tell which answers did not count or "
            "keep those confidences. Export first (`pvar-loop export`) or keep this schema."
        )
    with op.batch_alter_table("annotation_items", schema=None) as batch_op:
        batch_op.drop_column("confidence")
        batch_op.drop_column("decision_method")
    with op.batch_alter_table("decision_labels", schema=None) as batch_op:
        batch_op.drop_column("counted")
    op.drop_index(op.f("ix_annotator_exclusions_annotator"), table_name="annotator_exclusions")
    op.drop_table("annotator_exclusions")
