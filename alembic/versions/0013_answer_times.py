"""labels.answered_at: Argilla's inserted_at of the response (when the answer was first given)

Revision ID: 0013_answer_times
Revises: 0012_gold_items

`submitted_at` keeps Argilla's updated_at of the response, which moves when the answer is edited; the pace of
an annotator (median seconds per answer, loop.quality) needs when each answer was first given, which an edit
leaves alone. Filled by pull for the versions it stores from now on; rows stored before stay NULL (readers
fall back to submitted_at).

Downgrade drops the column: `pvar-loop db downgrade` refuses without --force while a row has a time there.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0013_answer_times"
down_revision: str | None = "0012_gold_items"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "answered_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="Argilla's inserted_at of the response: when the answer was first given",
            )
        )


def downgrade() -> None:
    # Dropping stored times is data loss: `pvar-loop db downgrade` finds it (storage.downgrade) and refuses
    # without --force, naming labels.answered_at.
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_column("answered_at")
