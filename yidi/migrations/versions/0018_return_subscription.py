"""aftersales_cases.return_subscribed_at: when Kuaidi100 accepted the return waybill's push subscription

Without it a subscription that failed once (Kuaidi100 down, a timeout) was never asked for again; now every cycle
that asks about the parcel subscribes it while this is empty (Kuaidi100's 501 重复订阅 counts as accepted).

Revision ID: 0018_return_subscription
Revises: 0017_parcels_interceptions
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_return_subscription"
down_revision = "0017_parcels_interceptions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("aftersales_cases") as batch:
        batch.add_column(sa.Column("return_subscribed_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("aftersales_cases") as batch:
        batch.drop_column("return_subscribed_at")
