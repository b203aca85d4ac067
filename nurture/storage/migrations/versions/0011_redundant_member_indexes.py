"""redundant member indexes: no index on member_id alone where another one begins with it

Revision ID: 0011_redundant_member_indexes
Revises: 0010_incremental_indexes
Create Date: 2026-12-07 11:15:00

``answers``, ``activity_events``, ``segment_assignments``, ``recommendations`` and ``messages``
each had an index on ``member_id`` alone beside a unique key or an index whose first column is
``member_id`` (``(member_id, question_key)``, ``(member_id, occurred_at)``,
``(member_id, segment_id)``, ``(member_id, content_item_id)``, ``(member_id, created_at)``).
That one serves every lookup by member and the cascade when a member is erased, so the index of
the column alone only cost every insert (an import of a million events maintained it a
million times) and its disk.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_redundant_member_indexes"
down_revision: str | None = "0010_incremental_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("answers", "activity_events", "segment_assignments", "recommendations", "messages")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_member_id")


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(f"ix_{table}_member_id", ["member_id"], unique=False)
