"""stocktakes.verified_by / verified_at: who verified a stocktake, and when (issue 20: separated duties)

A stocktake is verified by a listed manager or auditor who did not adjust the stock it covers
(``[staff] separate = "adjust_and_verify"``); the internal audit flags a verification that breached it.

Revision ID: 0016_stocktake_verification
Revises: 0015_return_tracking
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_stocktake_verification"
down_revision = "0015_return_tracking"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stocktakes") as batch:
        batch.add_column(sa.Column("verified_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stocktakes") as batch:
        batch.drop_column("verified_at")
        batch.drop_column("verified_by")
