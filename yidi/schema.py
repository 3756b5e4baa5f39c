"""The order store's foundation tables (SQLAlchemy Core).

Money is integer fen (分) in columns suffixed ``_fen``: exact on every database and fast in bulk.
Times are ``UTCDateTime``. Each later area declares its own tables on the same ``metadata`` in
``yidi/schema_<area>.py`` and creates them in its own migration.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

from yidi.types import UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT primary keys on PostgreSQL, INTEGER (the rowid alias) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


def created_at_column() -> Column:
    """``created_at``: set by the database when the row is inserted (shared by every area's tables)."""
    return Column("created_at", UTCDateTime, nullable=False, server_default=func.current_timestamp())


customers = Table(
    "customers",
    metadata,
    Column("id", Id, primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("phone", String(32)),
    Column("email", String(200)),
    Column("province", String(32)),
    Column("city", String(64)),
    Column("district", String(64)),
    Column("address", String(500)),
    Column("kind", String(16), nullable=False, server_default="consumer"),
    Column("is_important", Boolean, nullable=False, server_default="0"),
    Column("credit_limit_fen", BigInteger, nullable=False, server_default="0"),
    Column("credit_rating", String(8)),
    Column("prepayment_ratio", Float, nullable=False, server_default="0"),
    Column("payment_terms", String(16), nullable=False, server_default="prepaid"),
    Column("net_days", Integer, nullable=False, server_default="0"),
    Column("blocked", Boolean, nullable=False, server_default="0"),
    Column("allow_partial_shipment", Boolean, nullable=False, server_default="1"),
    created_at_column(),
    Column("updated_at", UTCDateTime),
)

catalog_items = Table(
    "catalog_items",
    metadata,
    Column("id", Id, primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False, server_default="product"),
    Column("name", String(200), nullable=False),
    Column("spec", String(200)),
    Column("model", String(100)),
    Column("unit", String(16), nullable=False, server_default="件"),
    Column("list_price_fen", BigInteger, nullable=False),
    Column("weight_kg", Float),
    Column("volume_m3", Float),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("min_order_qty", Float, nullable=False, server_default="1"),
    Column("max_order_qty", Float),
    Column("sourcing", String(16), nullable=False, server_default="stock"),
    Column("lead_time_days", Integer, nullable=False, server_default="0"),
    Column("preferred_supplier", String(64)),
    created_at_column(),
    Column("updated_at", UTCDateTime),
)

orders = Table(
    "orders",
    metadata,
    Column("id", Id, primary_key=True),
    Column("order_no", String(40), nullable=False, unique=True),
    Column("channel", String(32), nullable=False),
    Column("channel_order_id", String(100), nullable=False),
    Column("customer_id", ForeignKey("customers.id")),
    Column("customer_name", String(200)),
    Column("customer_phone", String(32)),
    Column("customer_email", String(200)),
    Column("ship_country", String(2)),  # ISO 3166-1 alpha-2; CN for domestic orders
    Column("ship_province", String(32)),
    Column("ship_city", String(64)),
    Column("ship_district", String(64)),
    Column("ship_detail", String(500)),
    Column("ship_admin_code", String(12)),
    Column("ship_postcode", String(12)),
    Column("region", String(8), nullable=False, server_default="unknown"),
    Column("region_note", String(200)),
    Column("payment_method", String(32)),
    Column("installments", Integer, nullable=False, server_default="1"),
    Column("currency", String(3), nullable=False, server_default="CNY"),
    Column("goods_total_fen", BigInteger, nullable=False, server_default="0"),
    Column("discount_fen", BigInteger, nullable=False, server_default="0"),
    Column("freight_fen", BigInteger, nullable=False, server_default="0"),
    Column("order_total_fen", BigInteger, nullable=False, server_default="0"),
    Column("state", String(24), nullable=False, server_default="received"),
    Column("payment_state", String(16), nullable=False, server_default="unpaid"),
    Column("source_status", String(40)),
    Column("order_time", UTCDateTime),
    Column("source_modified_at", UTCDateTime),
    Column("received_at", UTCDateTime, nullable=False, server_default=func.current_timestamp()),
    Column("updated_at", UTCDateTime),
    Column("promised_date", Date),
    Column("review_due_at", UTCDateTime),
    Column("content_hash", String(64)),
    Column("raw_record_id", BigInteger),
    Column("buyer_note", Text),
    Column("version", Integer, nullable=False, server_default="1"),
    UniqueConstraint("channel", "channel_order_id", name="uq_orders_channel_order"),
    Index("ix_orders_state", "state"),
    Index("ix_orders_customer_id", "customer_id"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("id", Id, primary_key=True),
    Column("order_id", ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("item_code", String(64)),
    Column("item_kind", String(16), nullable=False, server_default="product"),
    Column("item_name", String(200)),
    Column("spec", String(200)),
    Column("model", String(100)),
    Column("quantity", Float, nullable=False),
    Column("unit_price_fen", BigInteger, nullable=False),
    Column("discount_fen", BigInteger, nullable=False, server_default="0"),
    Column("line_total_fen", BigInteger, nullable=False),
    UniqueConstraint("order_id", "line_no", name="uq_order_lines_order_line"),
)

order_events = Table(
    "order_events",
    metadata,
    Column("id", Id, primary_key=True),
    Column("order_id", ForeignKey("orders.id"), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("from_state", String(24)),
    Column("to_state", String(24)),
    Column("reason", Text),
    Column("details", Text),
    Index("ix_order_events_order_id", "order_id", "id"),
)

intake_records = Table(
    "intake_records",
    metadata,
    Column("id", Id, primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("source_ref", String(500)),
    Column("source_key", String(100)),
    Column("content_hash", String(64), nullable=False),
    Column("content", Text, nullable=False),
    Column("content_type", String(64), nullable=False, server_default="application/json"),
    Column("received_at", UTCDateTime, nullable=False, server_default=func.current_timestamp()),
    Column("status", String(16), nullable=False, server_default="landed"),
    Column("reason", Text),
    Column("order_id", BigInteger),
    Column("replay_of", BigInteger),
    Column("updated_at", UTCDateTime),
    UniqueConstraint("channel", "content_hash", name="uq_intake_records_channel_hash"),
    Index("ix_intake_records_status", "status"),
)

notification_outbox = Table(
    "notification_outbox",
    metadata,
    Column("id", Id, primary_key=True),
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Column("order_id", BigInteger),
    Column("medium", String(8), nullable=False),
    Column("recipient", String(200), nullable=False),
    Column("template", String(64), nullable=False),
    Column("context", Text, nullable=False, server_default="{}"),
    Column("status", String(12), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    created_at_column(),
    Column("next_attempt_at", UTCDateTime),
    Column("sent_at", UTCDateTime),
    Index("ix_notification_outbox_status", "status"),
)

channel_cursors = Table(
    "channel_cursors",
    metadata,
    Column("channel", String(32), primary_key=True),
    Column("cursor", Text),
    Column("updated_at", UTCDateTime),
)

shipments = Table(
    "shipments",
    metadata,
    Column("id", Id, primary_key=True),
    Column("shipment_no", String(40), nullable=False, unique=True),
    Column("order_id", ForeignKey("orders.id"), nullable=False),
    Column("warehouse", String(32)),
    Column("carrier", String(32), nullable=False),
    Column("service", String(32)),
    Column("waybill_no", String(64)),
    Column("idempotency_key", String(100), nullable=False, unique=True),
    Column("status", String(24), nullable=False, server_default="info_received"),
    Column("weight_kg", Float),
    Column("chargeable_weight_kg", Float),
    Column("volume_m3", Float),
    Column("declared_value_fen", BigInteger, nullable=False, server_default="0"),
    Column("insured", Boolean, nullable=False, server_default="0"),
    Column("insurance_fee_fen", BigInteger, nullable=False, server_default="0"),
    Column("cod_amount_fen", BigInteger, nullable=False, server_default="0"),
    Column("freight_fen", BigInteger, nullable=False, server_default="0"),
    Column("expected_delivery_date", Date),
    created_at_column(),
    Column("shipped_at", UTCDateTime),
    Column("delivered_at", UTCDateTime),
    Column("last_polled_at", UTCDateTime),
    Column("last_event_at", UTCDateTime),
    Column("updated_at", UTCDateTime),
    Index("ix_shipments_order_id", "order_id"),
    Index("ix_shipments_waybill", "carrier", "waybill_no"),
    Index("ix_shipments_status", "status"),
)
