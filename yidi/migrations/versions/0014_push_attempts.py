"""tracking_push_receipts.attempts: how often applying a landed push has failed

A push that keeps failing to apply is marked ``failed`` with its reason after
``pushes.APPLY_ATTEMPTS`` tries, so it no longer blocks the pushes landed after it (kept for a person).

Revision ID: 0014_push_attempts
Revises: 0013_access_log
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_push_attempts"
down_revision = "0013_access_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tracking_push_receipts") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("tracking_push_receipts") as batch:
        batch.drop_column("attempts")
