"""Channels tables (issue 18): what yidi writes back to the order channels.

- ``channel_confirmations`` is the outbox of shipment confirmations (发货回传): one row per (shipment, order), keyed
  by ``idempotency_key``; a row is written when the shipment has its waybill and is sent until the channel says
  done (or "already shipped", which is also done). A retry after a lost answer reuses the row, never a new one.
- ``channel_listings`` maps an item to its listing on a channel (TOP ``num_iid``/``sku_id``, WooCommerce product
  id); ``channel_stock`` holds the last figure each channel accepted per item, so only changed figures are pushed.
- ``channel_deadline_alerts``: each shipping-deadline warning, escalation and miss once per order and level.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table, Text, UniqueConstraint

from yidi.schema import Id, created_at_column, metadata
from yidi.types import UTCDateTime

channel_confirmations = Table(
    "channel_confirmations",
    metadata,
    Column("id", Id, primary_key=True),
    Column("idempotency_key", String(160), nullable=False, unique=True),
    Column("shipment_id", BigInteger, nullable=False),
    Column("shipment_no", String(40), nullable=False),
    Column("order_id", BigInteger, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("channel_order_id", String(100), nullable=False),
    Column("carrier", String(32), nullable=False),
    Column("waybill_no", String(64), nullable=False),
    Column("sub_ids", Text),  # TOP sub-order ids (oid) of a split parcel, comma-separated; NULL = whole order
    Column("medium", String(8), nullable=False),  # api (the channel is told) | notice (the customer is told)
    # pending -> confirmed | already (the channel had it: done) | notified | refused (a person looks)
    Column("status", String(12), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("answer", Text),  # the channel's answer (JSON), for the record
    created_at_column(),
    Column("confirmed_at", UTCDateTime),
    Column("updated_at", UTCDateTime),
    UniqueConstraint("shipment_id", "order_id", name="uq_channel_confirmations_shipment_order"),
    Index("ix_channel_confirmations_status", "status", "channel"),
)

channel_listings = Table(
    "channel_listings",
    metadata,
    Column("id", Id, primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("listing_id", String(64), nullable=False),  # TOP num_iid | WooCommerce product id
    Column("sku_id", String(64)),  # TOP sku_id (a listing's variant), when the item is one
    created_at_column(),
    UniqueConstraint("channel", "item_code", name="uq_channel_listings_channel_item"),
)

channel_stock = Table(
    "channel_stock",
    metadata,
    Column("id", Id, primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("pushed_quantity", Float),  # the last figure the channel accepted
    Column("pushed_at", UTCDateTime),
    Column("refused_quantity", Float),  # the last figure the channel refused (not retried until it changes)
    Column("refused_reason", Text),
    Column("refused_at", UTCDateTime),
    UniqueConstraint("channel", "item_code", name="uq_channel_stock_channel_item"),
)

channel_deadline_alerts = Table(
    "channel_deadline_alerts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("order_id", BigInteger, nullable=False),
    Column("level", String(10), nullable=False),  # warning | escalated | missed
    Column("channel", String(32), nullable=False),
    Column("deadline_at", UTCDateTime, nullable=False),
    created_at_column(),
    UniqueConstraint("order_id", "level", name="uq_channel_deadline_alerts_order_level"),
)
