"""gold_items, gold_records, gold_answers: operator's gold (honeypot) pairs, their placements in rounds' queues
and the annotators' answers to them

Revision ID: 0012_gold_items
Revises: 0011_answer_versions

Three new tables. Downgrade refuses while any holds a row: it would delete the operator's gold items or the
annotators' answers to them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic.util import CommandError

from alembic import op

revision: str = "0012_gold_items"
down_revision: str | None = "0011_answer_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gold_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False, comment="sha256 of prompt and pair"),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("response_a", sa.Text(), nullable=False),
        sa.Column("response_b", sa.Text(), nullable=False),
        sa.Column("expected", sa.String(length=8), nullable=False, comment="a|b|tie"),
        sa.Column("rationale", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=500), nullable=False, comment="file it was added from"),
        sa.Column("source_id", sa.String(length=500), nullable=True, comment="the file's own id of the row"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gold_items")),
        sa.UniqueConstraint("key", name="uq_gold_items_key"),
    )
    op.create_table(
        "gold_records",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("gold_id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column(
            "annotator",
            sa.String(length=200),
            nullable=True,
            comment="username whose own dataset holds it; NULL: the shared dataset",
        ),
        sa.Column("swapped", sa.Boolean(), nullable=False, comment="b shown as 'response_a'"),
        sa.Column(
            "priority",
            sa.Integer(),
            nullable=False,
            comment="its place among the round's records (1 = first)",
        ),
        sa.Column("argilla_record_id", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["gold_id"], ["gold_items.id"], name=op.f("fk_gold_records_gold_id_gold_items")
        ),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"], name=op.f("fk_gold_records_round_id_rounds")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gold_records")),
        sa.UniqueConstraint("gold_id", "round_id", "annotator", name="uq_gold_records_placement"),
    )
    with op.batch_alter_table("gold_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gold_records_gold_id"), ["gold_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_gold_records_round_id"), ["round_id"], unique=False)
    op.create_table(
        "gold_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("gold_id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column(
            "annotator", sa.String(length=200), nullable=False, comment="username when the answer was pulled"
        ),
        sa.Column("annotator_id", sa.String(length=100), nullable=False, comment="Argilla user id"),
        sa.Column("shown_swapped", sa.Boolean(), nullable=False, comment="b was shown as 'response_a'"),
        sa.Column("answer", sa.String(length=8), nullable=False, comment="a|b|tie|discard, gold's a/b"),
        sa.Column("response_id", sa.String(length=100), nullable=True, comment="Argilla response id"),
        sa.Column(
            "answered_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="Argilla's updated_at of the response",
        ),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False, comment="when pull stored it"),
        sa.ForeignKeyConstraint(
            ["gold_id"], ["gold_items.id"], name=op.f("fk_gold_answers_gold_id_gold_items")
        ),
        sa.ForeignKeyConstraint(
            ["record_id"], ["gold_records.id"], name=op.f("fk_gold_answers_record_id_gold_records")
        ),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"], name=op.f("fk_gold_answers_round_id_rounds")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gold_answers")),
        sa.UniqueConstraint("record_id", "annotator_id", name="uq_gold_answers_record_annotator"),
    )
    with op.batch_alter_table("gold_answers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gold_answers_gold_id"), ["gold_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_gold_answers_record_id"), ["record_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_gold_answers_round_id"), ["round_id"], unique=False)


def downgrade() -> None:
    bind = op.get_bind()
    counts = {
        name: bind.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar()
        for name in ("gold_items", "gold_records", "gold_answers")
    }
    if any(counts.values()):
        held = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
        # CommandError: storage.migrate turns it into the CLI's one-line refusal (exit 2).
        raise CommandError(
            f"downgrade below 0012_gold_items refused: the database holds {held}; the older schema has no "
            "place for gold items or the annotators' answers to them, so going back would delete them. "
            "Keep this schema."
        )
    op.drop_table("gold_answers")
    op.drop_table("gold_records")
    op.drop_table("gold_items")
