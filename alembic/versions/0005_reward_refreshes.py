"""reward_refreshes: per round, the selection reward model's refresh and its held-out agreement

Revision ID: 0005
Revises: 0004

`[reward] refresh = "every_round"` trains a candidate reward model after each round's labels are in and keeps it
only if its agreement with the humans on held-out labels does not drop; one row per round records the figures
and which model selects from the next round on. A new table: nothing to backfill.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reward_refreshes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column(
            "base_model",
            sa.String(length=500),
            nullable=False,
            comment="[reward] model the candidate started from",
        ),
        sa.Column(
            "previous_model",
            sa.String(length=500),
            nullable=False,
            comment="selection RM before this refresh",
        ),
        sa.Column(
            "candidate_model",
            sa.String(length=500),
            nullable=True,
            comment="the candidate's directory (NULL: none trained)",
        ),
        sa.Column(
            "kept", sa.Boolean(), nullable=False, comment="the candidate selects from the next round on"
        ),
        sa.Column("n_pairs", sa.Integer(), nullable=False, comment="decided a/b labels (all rounds so far)"),
        sa.Column("n_train", sa.Integer(), nullable=False),
        sa.Column("n_heldout", sa.Integer(), nullable=False),
        sa.Column("old_agreement", sa.Float(), nullable=True, comment="previous model on the held-out"),
        sa.Column("new_agreement", sa.Float(), nullable=True, comment="candidate on the held-out"),
        sa.Column("reason", sa.Text(), nullable=True, comment="why it was kept or not"),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["round_id"], ["rounds.id"], name=op.f("fk_reward_refreshes_round_id_rounds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_refreshes")),
        sa.UniqueConstraint("round_id", name=op.f("uq_reward_refreshes_round_id")),
    )


def downgrade() -> None:
    op.drop_table("reward_refreshes")
