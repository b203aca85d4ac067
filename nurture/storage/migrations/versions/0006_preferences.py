"""preferences: a member may pause all emails for a while

Revision ID: 0006_preferences
Revises: 0005_delivery_handoff
Create Date: 2026-12-06 08:00:00

- ``members.paused_until``: until when the member paused every email but transactional ones
  on the preference page (1 or 4 weeks); null when not paused. The delivery worker suppresses
  a message due before that time.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nurture.storage.models

revision: str = "0006_preferences"
down_revision: str | None = "0005_delivery_handoff"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "paused_until", nurture.storage.models.UTCDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("paused_until")
