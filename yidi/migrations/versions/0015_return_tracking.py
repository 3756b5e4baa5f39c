"""aftersales_cases: the return parcel's tracking (state, newest event, when last asked, when it arrived)

The after-sales cycle polls Kuaidi100 for each return waybill the carrier issued; its arrival at the return
warehouse moves the case to ``return_arrived`` (waiting for receipt inspection).

Revision ID: 0015_return_tracking
Revises: 0014_push_attempts
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_return_tracking"
down_revision = "0014_push_attempts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("aftersales_cases") as batch:
        batch.add_column(sa.Column("return_parcel_state", sa.String(16)))
        batch.add_column(sa.Column("return_last_event", sa.Text()))
        batch.add_column(sa.Column("return_tracked_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("return_arrived_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("aftersales_cases") as batch:
        for column in ("return_arrived_at", "return_tracked_at", "return_last_event", "return_parcel_state"):
            batch.drop_column(column)
