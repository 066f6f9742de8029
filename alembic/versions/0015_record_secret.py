"""project_secrets: a random secret keying the ids that become Argilla external ids; rounds.gold_per_round

Revision ID: 0015_record_secret
Revises: 0014_annotator_exclusions

Item ids were content hashes of (round id, prompt id, best text, worst text), gold record ids of (gold key,
round id, username) and eval comparison ids of their texts: an annotator could hash what a record shows in
both A/B orders and learn which response the reward model ranks higher, which records are gold and the gold's
expected side. From this revision those ids are keyed (HMAC-SHA256) with a per-project secret drawn here, so
they stay deterministic for the project (re-pushes are idempotent) but cannot be recomputed without the
database. Rows stored before keep their ids: nothing is rewritten.

rounds.gold_per_round fixes a round's gold count at its first push: gold is placed then or never, so gold
added (or gold_per_round raised) mid-round never lands in a queue whose items hold their places already.

Downgrade drops the secret and nothing else: every stored id stays as it is (the older code makes unkeyed ids
again; a later upgrade draws a new secret for the ids made from then on). storage.downgrade does not count the
secret as data lost; the recorded gold counts are (`db downgrade` asks for --force where any is set).
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0015_record_secret"
down_revision: str | None = "0014_annotator_exclusions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "project_secrets",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_project_secrets")),
    )
    op.bulk_insert(table, [{"name": "record_ids", "value": secrets.token_hex(32)}])
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "gold_per_round",
                sa.Integer(),
                nullable=True,
                comment="gold records per queue the round takes, fixed at its first push (NULL: not pushed yet)",
            )
        )


def downgrade() -> None:
    # Stored rows keep their ids; only ids made after a later upgrade use the new secret drawn then.
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.drop_column("gold_per_round")
    op.drop_table("project_secrets")
