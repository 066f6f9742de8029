"""gold_items.retired_at: `pvar-loop gold retire ID`

Revision ID: 0016_gold_retired
Revises: 0015_record_secret

A retired gold item is no longer placed in a round's queue; its records already placed and its answers stay
(they measured the annotators who saw it). Downgrade refuses while any gold item is retired: the older schema
would place it again.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from alembic.util import CommandError

revision: str = "0016_gold_retired"
down_revision: str | None = "0015_record_secret"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gold_items", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "retired_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="`gold retire`: no longer placed (NULL: in use)",
            )
        )


def downgrade() -> None:
    bind = op.get_bind()
    retired = bind.execute(sa.text("SELECT count(*) FROM gold_items WHERE retired_at IS NOT NULL")).scalar()
    if retired:
        # CommandError: storage.migrate turns it into the CLI's one-line refusal (exit 2).
        raise CommandError(
            f"downgrade below 0016_gold_retired refused: {retired} gold items are retired; the older schema "
            "would place them in rounds' queues again. Keep this schema."
        )
    with op.batch_alter_table("gold_items", schema=None) as batch_op:
        batch_op.drop_column("retired_at")
