"""rounds.min_submitted: the annotator overlap a round collects with

Revision ID: 0002
Revises: 0001

A change of `[argilla] min_submitted` applies from the next round on; each round records the value it was
started with. Rounds that exist already keep NULL: the next pull records the value in force then (a round
whose collection has ended is never re-decided, whatever its value).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "min_submitted",
                sa.Integer(),
                nullable=True,
                comment="[argilla] min_submitted the round collects with, recorded at its first step (NULL: not yet)",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.drop_column("min_submitted")
