"""journeys: enrollment context and exit reasons, community milestones, segment departures

Revision ID: 0003_journeys
Revises: 0002_segments
Create Date: 2026-11-23 18:44:24

- ``enrollments.context``: what the trigger recorded; ``exit_reason`` (goal, consent...) and
  ``waiting_on`` (budget, quiet_hours) for ``nurture journeys status``.
- ``community_milestones``: each community size reached, once ever.
- ``segment_departures``: members leaving a segment, for ``segment_left`` triggers.
- ``messages(member_id, created_at)`` index: the message budget counts recent messages.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nurture.storage.models

revision: str = "0003_journeys"
down_revision: str | None = "0002_segments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "community_milestones",
        sa.Column("threshold", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("reached_at", nurture.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.Column("celebrated", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.PrimaryKeyConstraint("threshold"),
    )
    op.create_table(
        "segment_departures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("left_at", nurture.storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["segment_id"], ["segments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("segment_departures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_segment_departures_member_id"), ["member_id"], unique=False
        )
        batch_op.create_index(
            "ix_segment_departures_segment_time", ["segment_id", "left_at"], unique=False
        )

    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("context", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("exit_reason", sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column("waiting_on", sa.String(length=30), nullable=True))

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_member_created", ["member_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_member_created")

    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_column("waiting_on")
        batch_op.drop_column("exit_reason")
        batch_op.drop_column("context")

    with op.batch_alter_table("segment_departures", schema=None) as batch_op:
        batch_op.drop_index("ix_segment_departures_segment_time")
        batch_op.drop_index(batch_op.f("ix_segment_departures_member_id"))

    op.drop_table("segment_departures")
    op.drop_table("community_milestones")
