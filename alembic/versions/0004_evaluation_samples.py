"""evaluation_samples: every sampled response of an evaluation with its judge score; reference-sample reuse

Revision ID: 0004
Revises: 0003

An evaluation stored only its means, so two checkpoints could not be compared prompt by prompt, nor an
evaluation re-analysed. Now each sampled response (policy and reference side) is a row. Evaluations of many
checkpoints against the same reference, judge, prompts and sampling settings (the same `reference_key`) reuse
the first one's reference rows (`reference_samples_id`) instead of sampling the reference again.
Existing evaluations keep their means and get no rows (NULL key: they are never reused).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "reference_key",
                sa.String(length=64),
                nullable=True,
                comment="hash of what the reference's samples depend on (the cache key)",
            )
        )
        batch_op.add_column(
            sa.Column(
                "reference_samples_id",
                sa.Integer(),
                nullable=True,
                comment="evaluation whose reference rows this one reuses; NULL: its own",
            )
        )
        batch_op.create_index(batch_op.f("ix_evaluations_reference_key"), ["reference_key"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_evaluations_reference_samples_id_evaluations"),
            "evaluations",
            ["reference_samples_id"],
            ["id"],
        )
    op.create_table(
        "evaluation_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evaluation_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False, comment="policy|reference"),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column(
            "seed", sa.BigInteger(), nullable=False, comment="seed the generator drew this sample index with"
        ),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("n_tokens", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False, comment="the evaluation's judge score"),
        sa.CheckConstraint("side IN ('policy', 'reference')", name=op.f("ck_evaluation_samples_side")),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name=op.f("fk_evaluation_samples_evaluation_id_evaluations"),
        ),
        sa.ForeignKeyConstraint(
            ["prompt_id"], ["prompts.id"], name=op.f("fk_evaluation_samples_prompt_id_prompts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_samples")),
        sa.UniqueConstraint(
            "evaluation_id", "prompt_id", "side", "sample_index", name="uq_evaluation_samples_sample"
        ),
    )
    with op.batch_alter_table("evaluation_samples", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_evaluation_samples_evaluation_id"), ["evaluation_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("evaluation_samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evaluation_samples_evaluation_id"))
    op.drop_table("evaluation_samples")
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_evaluations_reference_samples_id_evaluations"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_evaluations_reference_key"))
        batch_op.drop_column("reference_samples_id")
        batch_op.drop_column("reference_key")
