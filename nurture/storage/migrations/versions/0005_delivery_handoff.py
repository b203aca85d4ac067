"""delivery hand-off: when a claimed message was handed to the mail backend

Revision ID: 0005_delivery_handoff
Revises: 0004_delivery
Create Date: 2026-12-06 08:00:00

- ``messages.handed_over_at``: set, and committed, right before the worker calls the mail
  backend. Recovery re-queues a stale ``sending`` message without it (it never reached the
  backend) and settles or marks ``unknown`` only the ones handed over.
- Messages already ``sending`` or ``unknown`` may have reached the backend before this column
  existed: they count as handed over at their claim (or due) time, so none is re-queued blindly.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nurture.storage.models

revision: str = "0005_delivery_handoff"
down_revision: str | None = "0004_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "handed_over_at",
                nurture.storage.models.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
    op.execute(
        "UPDATE messages SET handed_over_at = COALESCE(claimed_at, scheduled_at) "
        "WHERE status IN ('sending', 'unknown')"
    )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("handed_over_at")
