"""incremental indexes: what a warm nightly asks of profiles, answers and activity

Revision ID: 0010_incremental_indexes
Revises: 0009_experiments
Create Date: 2026-12-06 17:00:00

- ``member_profiles``: indexes on ``computed_at`` and ``feature_names_hash``, so that the
  profiles built since a run, too old or of another layout are found without reading every
  profile's vectors.
- ``answers.answered_at``: the answers edited since a run.
- ``activity_events (type, occurred_at)`` instead of ``(type)``: the events of some types in a
  time range (the activity windows rule segments read).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_incremental_indexes"
down_revision: str | None = "0009_experiments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("member_profiles", schema=None) as batch_op:
        batch_op.create_index("ix_member_profiles_computed_at", ["computed_at"], unique=False)
        batch_op.create_index("ix_member_profiles_layout", ["feature_names_hash"], unique=False)
    with op.batch_alter_table("answers", schema=None) as batch_op:
        batch_op.create_index("ix_answers_answered_at", ["answered_at"], unique=False)
    with op.batch_alter_table("activity_events", schema=None) as batch_op:
        batch_op.create_index("ix_activity_type_time", ["type", "occurred_at"], unique=False)
        batch_op.drop_index("ix_activity_events_type")


def downgrade() -> None:
    with op.batch_alter_table("activity_events", schema=None) as batch_op:
        batch_op.create_index("ix_activity_events_type", ["type"], unique=False)
        batch_op.drop_index("ix_activity_type_time")
    with op.batch_alter_table("answers", schema=None) as batch_op:
        batch_op.drop_index("ix_answers_answered_at")
    with op.batch_alter_table("member_profiles", schema=None) as batch_op:
        batch_op.drop_index("ix_member_profiles_layout")
        batch_op.drop_index("ix_member_profiles_computed_at")
