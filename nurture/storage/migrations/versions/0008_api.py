"""api: keys of the HTTP API and the requests it accepted

Revision ID: 0008_api
Revises: 0007_event_venue
Create Date: 2026-12-06 09:00:00

- ``api_keys``: a key's name, public prefix, SHA-256 (never the key), scope, revocation.
- ``api_requests``: each accepted request by (key, idempotency key), with the SHA-256 of its
  body and the answer given: a replay gets the same answer and changes nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nurture.storage.models import UTCDateTime

revision: str = "0008_api"
down_revision: str | None = "0007_event_venue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "scope",
            sa.Enum("read", "write", name="apiscope", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prefix"),
    )
    op.create_table(
        "api_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("route", sa.String(length=100), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("api_key_id", "idempotency_key"),
    )


def downgrade() -> None:
    op.drop_table("api_requests")
    op.drop_table("api_keys")
