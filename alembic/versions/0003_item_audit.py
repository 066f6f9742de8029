"""annotation_items.audit: the item was drawn at random outside the strategy's picks (the audit slice)

Revision ID: 0003
Revises: 0002

`[selection] audit_fraction` of a pvar round's budget is drawn uniformly from the prompts PVar left, so
status and report can compare PVar-picked labels with random ones. Items that exist already were all picked
by their round's strategy: they get false.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("annotation_items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "audit",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
                comment="drawn at random outside the strategy's picks",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("annotation_items", schema=None) as batch_op:
        batch_op.drop_column("audit")
