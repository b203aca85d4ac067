"""experiments: the arm of each enrollment (holdout control or split variant), best hours

Revision ID: 0009_experiments
Revises: 0008_api
Create Date: 2026-12-06 09:00:00

- ``enrollments.arm``: ``control`` for a member held out by the journey's ``holdout`` (sent
  nothing), the variant name a split step drew for the member, else none; ``nurture journeys
  results`` compares the arms.
- ``members.best_hour``: the member's best hour of day for an email (0-23), recomputed by the
  nightly run from their opens and clicks; a send step ``at: best_hour`` waits for it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_experiments"
down_revision: str | None = "0008_api"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("arm", sa.String(length=100), nullable=True))
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("best_hour", sa.SmallInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("best_hour")
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_column("arm")
