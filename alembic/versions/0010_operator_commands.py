"""operator_commands: round commands queued for a running scheduler; rounds.queue_links: the annotators' links

Revision ID: 0010_operator_commands
Revises: 0009_dpo_margins

A new table and a nullable column (NULL: the round was pushed before links were recorded, or not yet pushed).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010_operator_commands"
down_revision: str | None = "0009_dpo_margins"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operator_commands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("command", sa.String(length=20), nullable=False, comment="cancel | advance"),
        sa.Column("arm", sa.String(length=100), nullable=False),
        sa.Column("round_number", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True, comment="a cancel's reason"),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column(
            "outcome", sa.Text(), nullable=True, comment="what the scheduler did, or why it could not"
        ),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_commands")),
    )
    with op.batch_alter_table("operator_commands", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_operator_commands_state"), ["state"], unique=False)
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "queue_links",
                sa.JSON(),
                nullable=True,
                comment="where annotators label the round, recorded at its push: who ('' = everyone) -> URL",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.drop_column("queue_links")
    with op.batch_alter_table("operator_commands", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operator_commands_state"))
    op.drop_table("operator_commands")
