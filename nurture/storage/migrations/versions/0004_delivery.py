"""delivery: claims, provider delivery status, per-category unsubscribes

Revision ID: 0004_delivery
Revises: 0003_journeys
Create Date: 2026-11-23 19:10:00

- ``messages.claimed_at``: when a worker moved the message to ``sending``; recovery resolves
  old claims from provider events or marks them ``unknown``.
- ``messages.delivery_status``: the provider's latest event (processed, delivered, bounce...).
- ``members.unsubscribed_categories``: the journey categories a member opted out of on the
  preference page.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nurture.storage.models

revision: str = "0004_delivery"
down_revision: str | None = "0003_journeys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unsubscribed_categories", sa.JSON(), nullable=False, server_default="[]")
        )

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "claimed_at", nurture.storage.models.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("delivery_status", sa.String(length=30), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("delivery_status")
        batch_op.drop_column("claimed_at")

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("unsubscribed_categories")
