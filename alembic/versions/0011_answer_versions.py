"""labels append-only: every version of an answer kept, keyed by the Argilla user id; decision_labels

Revision ID: 0011_answer_versions
Revises: 0010_operator_commands

An answer that changes in Argilla (a late edit, a discard after an answer, an answer deleted and given
again) becomes a new row with the next `version` instead of overwriting the old one, and is keyed by the
Argilla user id (`annotator_id`) rather than the username. Existing labels become version 1 of their answer;
their user id is not known here (NULL) and is filled in by the next pull that sees the same username answer
the same item. `decision_labels` links each item to the label versions its decision was made from; existing
labels are what today's decisions were made from, so each is linked to its item.

Downgrade keeps the answers (one row per item and username, as before) and refuses when an answer has more
than one version (or one username two Argilla users on an item): collapsing them would delete answers.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from alembic.util import CommandError

revision: str = "0011_answer_versions"
down_revision: str | None = "0010_operator_commands"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "annotator_id",
                sa.String(length=100),
                nullable=True,
                comment="Argilla user id (NULL: stored before answers were keyed by it, until re-pulled)",
            )
        )
        batch_op.add_column(
            sa.Column(
                "version", sa.Integer(), nullable=False, server_default="1", comment="1 = the first answer"
            )
        )
        batch_op.add_column(
            sa.Column("response_id", sa.String(length=100), nullable=True, comment="Argilla response id")
        )
        batch_op.add_column(
            sa.Column(
                "stored_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="when pull stored this version",
            )
        )
        batch_op.alter_column(
            "annotator",
            existing_type=sa.String(length=200),
            existing_nullable=False,
            comment="username when the answer was pulled",
        )
        batch_op.alter_column(
            "submitted_at",
            existing_type=sa.DateTime(timezone=True),
            existing_nullable=True,
            comment="Argilla's updated_at of the response",
        )
        batch_op.drop_constraint("uq_labels_item_annotator", type_="unique")
        batch_op.create_unique_constraint(
            "uq_labels_item_annotator_version", ["item_id", "annotator_id", "version"]
        )
    op.create_table(
        "decision_labels",
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("label_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["annotation_items.id"], name=op.f("fk_decision_labels_item_id_annotation_items")
        ),
        sa.ForeignKeyConstraint(["label_id"], ["labels.id"], name=op.f("fk_decision_labels_label_id_labels")),
        sa.PrimaryKeyConstraint("item_id", "label_id", name=op.f("pk_decision_labels")),
    )
    op.execute("INSERT INTO decision_labels (item_id, label_id) SELECT item_id, id FROM labels")


def downgrade() -> None:
    bind = op.get_bind()
    versions = bind.execute(
        sa.text(
            "SELECT count(*) FROM (SELECT item_id, annotator FROM labels "
            "GROUP BY item_id, annotator HAVING count(*) > 1) AS multi"
        )
    ).scalar()
    if versions:
        # CommandError: storage.migrate turns it into the CLI's one-line refusal (exit 2).
        raise CommandError(
            f"downgrade below 0011_answer_versions refused: {versions} answers have more than one stored "
            "version (edited, discarded or given again in Argilla); the older schema keeps one row per item "
            "and username, so going back would delete answers. Export them first (`pvar-loop export "
            "--include-late`) or keep this schema."
        )
    op.drop_table("decision_labels")
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_constraint("uq_labels_item_annotator_version", type_="unique")
        batch_op.create_unique_constraint("uq_labels_item_annotator", ["item_id", "annotator"])
        batch_op.alter_column(
            "annotator",
            existing_type=sa.String(length=200),
            existing_nullable=False,
            comment=None,
            existing_comment="username when the answer was pulled",
        )
        batch_op.alter_column(
            "submitted_at",
            existing_type=sa.DateTime(timezone=True),
            existing_nullable=True,
            comment=None,
            existing_comment="Argilla's updated_at of the response",
        )
        batch_op.drop_column("stored_at")
        batch_op.drop_column("response_id")
        batch_op.drop_column("version")
        batch_op.drop_column("annotator_id")
