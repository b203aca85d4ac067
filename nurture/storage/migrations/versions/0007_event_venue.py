"""event venue: where and in which time zone an event is held

Revision ID: 0007_event_venue
Revises: 0006_preferences
Create Date: 2026-12-06 08:00:00

- ``content_items.event_time_zone``: the IANA zone of an event (the library's ``time_zone``);
  emails show an in-person event's time in it, named.
- ``content_items.venue``: where an in-person event takes place; none for an online event.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_event_venue"
down_revision: str | None = "0006_preferences"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("content_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_time_zone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("venue", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("content_items", schema=None) as batch_op:
        batch_op.drop_column("venue")
        batch_op.drop_column("event_time_zone")
