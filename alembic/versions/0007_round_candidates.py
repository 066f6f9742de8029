"""round_scoring, round_candidates: a round's candidate draw ([selection] candidates) and its scoring cost

Revision ID: 0007_round_candidates
Revises: 0006

New tables only; rounds scored before this revision have no row (they scored the whole pool).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007_round_candidates"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "round_scoring",
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column(
            "candidates",
            sa.Integer(),
            nullable=True,
            comment="candidate prompts asked for; NULL: the whole pool (no draw, nothing in round_candidates)",
        ),
        sa.Column(
            "free_pool", sa.Integer(), nullable=True, comment="prompts the arm could still take at the draw"
        ),
        sa.Column(
            "drawn",
            sa.Integer(),
            nullable=True,
            comment="prompts in the candidate set (round_candidates rows)",
        ),
        sa.Column(
            "prompts_scored", sa.Integer(), nullable=False, comment="prompts scored by this round's step"
        ),
        sa.Column("samples_generated", sa.Integer(), nullable=False, comment="responses the policy sampled"),
        sa.Column("tokens_generated", sa.BigInteger(), nullable=False),
        sa.Column("scoring_s", sa.Float(), nullable=False, comment="seconds of the committed batches"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"], name=op.f("fk_round_scoring_round_id_rounds")),
        sa.PrimaryKeyConstraint("round_id", name=op.f("pk_round_scoring")),
    )
    op.create_table(
        "round_candidates",
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["round_id"], ["rounds.id"], name=op.f("fk_round_candidates_round_id_rounds")
        ),
        sa.ForeignKeyConstraint(
            ["prompt_id"], ["prompts.id"], name=op.f("fk_round_candidates_prompt_id_prompts")
        ),
        sa.PrimaryKeyConstraint("round_id", "prompt_id", name=op.f("pk_round_candidates")),
    )


def downgrade() -> None:
    op.drop_table("round_candidates")
    op.drop_table("round_scoring")
