"""eval_comparisons: the pairwise comparisons of a human evaluation ([evaluation] judge = "human")

Revision ID: 0006
Revises: 0005

A new table only; existing evaluations are untouched.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eval_comparisons",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_id", sa.String(length=200), nullable=False),
        sa.Column("reference_id", sa.String(length=200), nullable=False),
        sa.Column("prompt_id", sa.String(length=64), nullable=False),
        sa.Column("policy_text", sa.Text(), nullable=False),
        sa.Column("reference_text", sa.Text(), nullable=False),
        sa.Column(
            "policy_side",
            sa.String(length=1),
            nullable=False,
            comment="a|b: where Argilla shows the checkpoint's",
        ),
        sa.Column(
            "min_submitted", sa.Integer(), nullable=False, comment="answers needed (the round's overlap)"
        ),
        sa.Column("argilla_record_id", sa.String(length=100), nullable=True),
        sa.Column(
            "answers",
            sa.JSON(),
            nullable=False,
            comment="annotator -> policy|reference|tie|discard (the swap undone)",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_eval_comparisons_checkpoint_id_checkpoints"),
        ),
        sa.ForeignKeyConstraint(
            ["prompt_id"], ["prompts.id"], name=op.f("fk_eval_comparisons_prompt_id_prompts")
        ),
        sa.ForeignKeyConstraint(
            ["reference_id"],
            ["checkpoints.id"],
            name=op.f("fk_eval_comparisons_reference_id_checkpoints"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eval_comparisons")),
        sa.UniqueConstraint("checkpoint_id", "reference_id", "prompt_id", name="uq_eval_comparisons_key"),
    )
    with op.batch_alter_table("eval_comparisons", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_eval_comparisons_checkpoint_id"), ["checkpoint_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("eval_comparisons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_eval_comparisons_checkpoint_id"))
    op.drop_table("eval_comparisons")
