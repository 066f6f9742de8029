"""dpo_margins: DPO's implicit reward margin per trained-on label and checkpoint (audit rounds)

Revision ID: 0009_dpo_margins
Revises: 0008_score_exclusions

A new table only.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009_dpo_margins"
down_revision: str | None = "0008_score_exclusions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dpo_margins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_id", sa.String(length=200), nullable=False),
        sa.Column("margin", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"], ["checkpoints.id"], name=op.f("fk_dpo_margins_checkpoint_id_checkpoints")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["annotation_items.id"], name=op.f("fk_dpo_margins_item_id_annotation_items")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dpo_margins")),
        sa.UniqueConstraint("item_id", "checkpoint_id", name="uq_dpo_margins_item_checkpoint"),
    )
    with op.batch_alter_table("dpo_margins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dpo_margins_item_id"), ["item_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dpo_margins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dpo_margins_item_id"))
    op.drop_table("dpo_margins")
