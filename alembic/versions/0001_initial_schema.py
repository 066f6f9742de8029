"""initial schema

Revision ID: 0001
Revises: (none)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('checkpoints',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('path', sa.Text(), nullable=False, comment='hub id or local directory'),
    sa.Column('base_id', sa.String(length=200), nullable=True),
    sa.Column('round_id', sa.Integer(), nullable=True, comment='round that trained it (no FK: rounds refer here)'),
    sa.Column('label_count', sa.Integer(), nullable=False),
    sa.Column('data_hash', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['base_id'], ['checkpoints.id'], name=op.f('fk_checkpoints_base_id_checkpoints')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkpoints'))
    )
    op.create_table('loop_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('arm', sa.String(length=100), nullable=False),
    sa.Column('key', sa.String(length=50), nullable=False),
    sa.Column('value', sa.String(length=200), nullable=False),
    sa.Column('from_round', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loop_settings')),
    sa.UniqueConstraint('arm', 'key', 'from_round', name='uq_loop_settings_key')
    )
    op.create_table('operator_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_operator_actions'))
    )
    op.create_table('prompts',
    sa.Column('id', sa.String(length=64), nullable=False, comment='sha256 of the normalised text'),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=500), nullable=False),
    sa.Column('source_id', sa.String(length=500), nullable=True),
    sa.Column('split', sa.String(length=16), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompts'))
    )
    with op.batch_alter_table('prompts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prompts_split'), ['split'], unique=False)

    op.create_table('scheduler_locks',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_scheduler_locks'))
    )
    op.create_table('evaluations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('checkpoint_id', sa.String(length=200), nullable=False),
    sa.Column('reference_id', sa.String(length=200), nullable=False),
    sa.Column('judge', sa.String(length=500), nullable=False),
    sa.Column('n_prompts', sa.Integer(), nullable=False),
    sa.Column('win_rate', sa.Double(), nullable=False),
    sa.Column('ci_low', sa.Double(), nullable=False),
    sa.Column('ci_high', sa.Double(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['checkpoint_id'], ['checkpoints.id'], name=op.f('fk_evaluations_checkpoint_id_checkpoints')),
    sa.ForeignKeyConstraint(['reference_id'], ['checkpoints.id'], name=op.f('fk_evaluations_reference_id_checkpoints')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_evaluations')),
    sa.UniqueConstraint('checkpoint_id', 'reference_id', 'judge', name='uq_evaluations_checkpoint_reference')
    )
    op.create_table('generations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prompt_id', sa.String(length=64), nullable=False),
    sa.Column('checkpoint_id', sa.String(length=200), nullable=False),
    sa.Column('sample_index', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('n_tokens', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['checkpoint_id'], ['checkpoints.id'], name=op.f('fk_generations_checkpoint_id_checkpoints')),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompts.id'], name=op.f('fk_generations_prompt_id_prompts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_generations')),
    sa.UniqueConstraint('prompt_id', 'checkpoint_id', 'sample_index', name='uq_generations_sample')
    )
    op.create_table('rounds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('arm', sa.String(length=100), nullable=False, comment="experiment arm; 'main' in production"),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True, comment='why cancelled/failed/waiting'),
    sa.Column('budget', sa.Integer(), nullable=False),
    sa.Column('strategy', sa.String(length=32), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('policy_in', sa.String(length=200), nullable=True),
    sa.Column('policy_out', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['policy_in'], ['checkpoints.id'], name=op.f('fk_rounds_policy_in_checkpoints')),
    sa.ForeignKeyConstraint(['policy_out'], ['checkpoints.id'], name=op.f('fk_rounds_policy_out_checkpoints')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rounds')),
    sa.UniqueConstraint('arm', 'number', name='uq_rounds_arm_number')
    )
    with op.batch_alter_table('rounds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rounds_status'), ['status'], unique=False)

    op.create_table('annotation_items',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('prompt_id', sa.String(length=64), nullable=False),
    sa.Column('generation_a_id', sa.Integer(), nullable=False, comment='highest reward'),
    sa.Column('generation_b_id', sa.Integer(), nullable=False, comment='lowest reward'),
    sa.Column('swapped', sa.Boolean(), nullable=False, comment="b shown as 'response_a'"),
    sa.Column('argilla_record_id', sa.String(length=100), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False, comment='pending|pushed|decided|undecided'),
    sa.Column('decision', sa.String(length=8), nullable=True, comment='a|b|tie after aggregation'),
    sa.Column('votes', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['generation_a_id'], ['generations.id'], name=op.f('fk_annotation_items_generation_a_id_generations')),
    sa.ForeignKeyConstraint(['generation_b_id'], ['generations.id'], name=op.f('fk_annotation_items_generation_b_id_generations')),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompts.id'], name=op.f('fk_annotation_items_prompt_id_prompts')),
    sa.ForeignKeyConstraint(['round_id'], ['rounds.id'], name=op.f('fk_annotation_items_round_id_rounds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_annotation_items')),
    sa.UniqueConstraint('round_id', 'prompt_id', name='uq_annotation_items_round_prompt')
    )
    with op.batch_alter_table('annotation_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_annotation_items_prompt_id'), ['prompt_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_annotation_items_round_id'), ['round_id'], unique=False)

    op.create_table('prompt_scores',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prompt_id', sa.String(length=64), nullable=False),
    sa.Column('checkpoint_id', sa.String(length=200), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=True, comment='round that asked for it'),
    sa.Column('reward_model', sa.String(length=500), nullable=False),
    sa.Column('metric', sa.String(length=32), nullable=False),
    sa.Column('k', sa.Integer(), nullable=False),
    sa.Column('value', sa.Double(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['checkpoint_id'], ['checkpoints.id'], name=op.f('fk_prompt_scores_checkpoint_id_checkpoints')),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompts.id'], name=op.f('fk_prompt_scores_prompt_id_prompts')),
    sa.ForeignKeyConstraint(['round_id'], ['rounds.id'], name=op.f('fk_prompt_scores_round_id_rounds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt_scores')),
    sa.UniqueConstraint('prompt_id', 'checkpoint_id', 'reward_model', 'metric', name='uq_prompt_scores_key')
    )
    with op.batch_alter_table('prompt_scores', schema=None) as batch_op:
        batch_op.create_index('ix_prompt_scores_lookup', ['checkpoint_id', 'reward_model', 'metric'], unique=False)

    op.create_table('reward_scores',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('generation_id', sa.Integer(), nullable=False),
    sa.Column('reward_model', sa.String(length=500), nullable=False),
    sa.Column('score', sa.Float(), nullable=False, comment='raw logit, no sigmoid'),
    sa.ForeignKeyConstraint(['generation_id'], ['generations.id'], name=op.f('fk_reward_scores_generation_id_generations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reward_scores')),
    sa.UniqueConstraint('generation_id', 'reward_model', name='uq_reward_scores_generation_model')
    )
    op.create_table('training_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=True),
    sa.Column('data_hash', sa.String(length=64), nullable=False),
    sa.Column('label_count', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('checkpoint_id', sa.String(length=200), nullable=True),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['checkpoint_id'], ['checkpoints.id'], name=op.f('fk_training_runs_checkpoint_id_checkpoints')),
    sa.ForeignKeyConstraint(['round_id'], ['rounds.id'], name=op.f('fk_training_runs_round_id_rounds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_runs')),
    sa.UniqueConstraint('round_id', 'data_hash', name='uq_training_runs_round_data')
    )
    op.create_table('labels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.String(length=64), nullable=False),
    sa.Column('annotator', sa.String(length=200), nullable=False),
    sa.Column('choice', sa.String(length=8), nullable=False, comment='a|b|tie|discard'),
    sa.Column('rationale', sa.Text(), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['item_id'], ['annotation_items.id'], name=op.f('fk_labels_item_id_annotation_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labels')),
    sa.UniqueConstraint('item_id', 'annotator', name='uq_labels_item_annotator')
    )
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_labels_item_id'), ['item_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_labels_item_id'))

    op.drop_table('labels')
    op.drop_table('training_runs')
    op.drop_table('reward_scores')
    with op.batch_alter_table('prompt_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_prompt_scores_lookup')

    op.drop_table('prompt_scores')
    with op.batch_alter_table('annotation_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_annotation_items_round_id'))
        batch_op.drop_index(batch_op.f('ix_annotation_items_prompt_id'))

    op.drop_table('annotation_items')
    with op.batch_alter_table('rounds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rounds_status'))

    op.drop_table('rounds')
    op.drop_table('generations')
    op.drop_table('evaluations')
    op.drop_table('scheduler_locks')
    with op.batch_alter_table('prompts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prompts_split'))

    op.drop_table('prompts')
    op.drop_table('operator_actions')
    op.drop_table('loop_settings')
    op.drop_table('checkpoints')
