"""reward_exclusions: samples a reward model gave no score, with the reason (a response over [reward] max_length)

Revision ID: 0008_score_exclusions
Revises: 0007_round_candidates

A new table only; existing scores are untouched.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008_score_exclusions"
down_revision: str | None = "0007_round_candidates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reward_exclusions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation_id", sa.Integer(), nullable=False),
        sa.Column("reward_model", sa.String(length=500), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["generations.id"],
            name=op.f("fk_reward_exclusions_generation_id_generations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_exclusions")),
        sa.UniqueConstraint("generation_id", "reward_model", name="uq_reward_exclusions_generation_model"),
    )


def downgrade() -> None:
    op.drop_table("reward_exclusions")
