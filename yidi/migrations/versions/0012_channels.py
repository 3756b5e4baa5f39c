"""channels: shipment confirmations to the channels, listings and pushed stock figures, shipping-deadline alerts
(issue 18)

Revision ID: 0012_channels
Revises: 0011_ship_country
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_channels"
down_revision = "0011_ship_country"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.text("(CURRENT_TIMESTAMP)")


def _created():
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False)


def upgrade() -> None:
    op.create_table(
        "channel_confirmations",
        sa.Column("id", ID, nullable=False),
        sa.Column("idempotency_key", sa.String(length=160), nullable=False),
        sa.Column("shipment_id", sa.BigInteger(), nullable=False),
        sa.Column("shipment_no", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("channel_order_id", sa.String(length=100), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("waybill_no", sa.String(length=64), nullable=False),
        sa.Column("sub_ids", sa.Text(), nullable=True),
        sa.Column("medium", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        _created(),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_confirmations")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_channel_confirmations_idempotency_key")),
        sa.UniqueConstraint("shipment_id", "order_id", name="uq_channel_confirmations_shipment_order"),
    )
    op.create_index("ix_channel_confirmations_status", "channel_confirmations", ["status", "channel"])
    op.create_table(
        "channel_listings",
        sa.Column("id", ID, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("item_code", sa.String(length=64), nullable=False),
        sa.Column("listing_id", sa.String(length=64), nullable=False),
        sa.Column("sku_id", sa.String(length=64), nullable=True),
        _created(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_listings")),
        sa.UniqueConstraint("channel", "item_code", name="uq_channel_listings_channel_item"),
    )
    op.create_table(
        "channel_stock",
        sa.Column("id", ID, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("item_code", sa.String(length=64), nullable=False),
        sa.Column("pushed_quantity", sa.Float(), nullable=True),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refused_quantity", sa.Float(), nullable=True),
        sa.Column("refused_reason", sa.Text(), nullable=True),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_stock")),
        sa.UniqueConstraint("channel", "item_code", name="uq_channel_stock_channel_item"),
    )
    op.create_table(
        "channel_deadline_alerts",
        sa.Column("id", ID, nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        _created(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_deadline_alerts")),
        sa.UniqueConstraint("order_id", "level", name="uq_channel_deadline_alerts_order_level"),
    )


def downgrade() -> None:
    op.drop_table("channel_deadline_alerts")
    op.drop_table("channel_stock")
    op.drop_table("channel_listings")
    op.drop_index("ix_channel_confirmations_status", table_name="channel_confirmations")
    op.drop_table("channel_confirmations")
