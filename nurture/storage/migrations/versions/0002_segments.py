"""segments: labels marketers edit, effective segment of each member

Revision ID: 0002_segments
Revises: 0001
Create Date: 2026-11-24 10:00:00

- ``segments.label_edited``: a label a marketer chose (was ``card["label_edited"]``, copied over).
- ``segment_assignments``: each member's effective segments (cluster and rule) with when they
  entered them, and the cluster segment they may be moving to (a move counts once it has held
  for ``NURTURE_SEGMENT_MOVE_AFTER_DAYS``).
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_segments"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("label_edited", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    # Labels edited before the column existed were flagged in the card.
    segments = sa.table(
        "segments",
        sa.column("id", sa.Integer()),
        sa.column("card", sa.JSON()),
        sa.column("label_edited", sa.Boolean()),
    )
    connection = op.get_bind()
    edited = []
    for segment_id, card in connection.execute(sa.select(segments.c.id, segments.c.card)):
        if isinstance(card, str):
            card = json.loads(card)
        if isinstance(card, dict) and card.get("label_edited"):
            edited.append(segment_id)
    if edited:
        connection.execute(
            segments.update().where(segments.c.id.in_(edited)).values(label_edited=True)
        )

    op.create_table(
        "segment_assignments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "effective",
                "pending",
                name="assignmentstate",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["segment_id"], ["segments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("member_id", "segment_id"),
    )
    with op.batch_alter_table("segment_assignments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_segment_assignments_member_id"), ["member_id"], unique=False
        )
        batch_op.create_index(
            "ix_segment_assignments_segment_state", ["segment_id", "state"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("segment_assignments", schema=None) as batch_op:
        batch_op.drop_index("ix_segment_assignments_segment_state")
        batch_op.drop_index(batch_op.f("ix_segment_assignments_member_id"))
    op.drop_table("segment_assignments")
    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.drop_column("label_edited")
