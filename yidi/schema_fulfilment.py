"""Fulfilment tables (issue 5): warehouses, the stock ledger and its balances, allocations, production and
purchase requests, suppliers and their price lists, customer short-item decisions, stocktakes, shipment requests.

Stock is a ledger: every change is one ``stock_movements`` row with signed deltas of the four quantities
(on hand, reserved, damaged, quarantined). ``stock_levels`` holds their running sums per warehouse and item,
updated in the same transaction as each movement, so ``available = on_hand - reserved - damaged -
quarantined`` is one indexed read. ``stock_levels`` can always be rebuilt from the ledger
(``tasks.fulfilment.stock.ledger_mismatches`` proves they agree).

The CHECK on ``stock_levels`` is the database-level guarantee that stock is never promised twice: reserved plus
blocked stock can never exceed what is on hand, whatever two allocation runs do at the same time.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from yidi.schema import Id, created_at_column, metadata
from yidi.types import UTCDateTime

# Float quantities (orders allow 2.5 m of cable) compared with a tolerance far below any real unit.
QTY_EPSILON = 1e-6


warehouses = Table(
    "warehouses",
    metadata,
    Column("id", Id, primary_key=True),
    Column("code", String(32), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("province", String(32)),
    Column("city", String(64)),
    Column("district", String(64)),
    Column("address", String(300)),
    Column("contact", String(100)),
    Column("phone", String(32)),
    Column("priority", Integer, nullable=False, server_default="1"),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("updated_at", UTCDateTime),
)

stock_levels = Table(
    "stock_levels",
    metadata,
    Column("warehouse", String(32), ForeignKey("warehouses.code"), primary_key=True),
    Column("item_code", String(64), ForeignKey("catalog_items.code"), primary_key=True),
    Column("on_hand", Float, nullable=False, server_default="0"),
    Column("reserved", Float, nullable=False, server_default="0"),
    Column("damaged", Float, nullable=False, server_default="0"),
    Column("quarantined", Float, nullable=False, server_default="0"),
    Column("last_movement_at", UTCDateTime),
    Column("updated_at", UTCDateTime),
    CheckConstraint(f"on_hand >= -{QTY_EPSILON}", name="on_hand_not_negative"),
    CheckConstraint(f"reserved >= -{QTY_EPSILON}", name="reserved_not_negative"),
    CheckConstraint(f"damaged >= -{QTY_EPSILON}", name="damaged_not_negative"),
    CheckConstraint(f"quarantined >= -{QTY_EPSILON}", name="quarantined_not_negative"),
    CheckConstraint(
        f"reserved + damaged + quarantined <= on_hand + {QTY_EPSILON}", name="never_promised_twice"
    ),
)

stock_movements = Table(
    "stock_movements",
    metadata,
    Column("id", Id, primary_key=True),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("warehouse", String(32), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("batch_no", String(64)),
    # receipt, reservation, release, issue, adjustment, damage, write_off, expiry, qc_hold, qc_pass, qc_fail,
    # return (goods a customer sent back: sellable, or quarantined when damaged)
    Column("kind", String(16), nullable=False),
    Column("on_hand_delta", Float, nullable=False, server_default="0"),
    Column("reserved_delta", Float, nullable=False, server_default="0"),
    Column("damaged_delta", Float, nullable=False, server_default="0"),
    Column("quarantined_delta", Float, nullable=False, server_default="0"),
    Column("reason", Text),
    Column("order_id", BigInteger),
    Column("allocation_id", BigInteger),
    Column("reference", String(64)),  # stocktake, purchase order, production request, shipment number
    Column("actor", String(200)),
    Index("ix_stock_movements_item", "warehouse", "item_code", "occurred_at"),
    Index("ix_stock_movements_kind", "kind"),
)

stock_batches = Table(
    "stock_batches",
    metadata,
    Column("id", Id, primary_key=True),
    Column("warehouse", String(32), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("batch_no", String(64), nullable=False),
    Column("expiry_date", Date),
    Column("produced_on", Date),
    Column("received_at", UTCDateTime),
    Column("expired_handled_at", UTCDateTime),  # quarantined because expired (once)
    UniqueConstraint("warehouse", "item_code", "batch_no", name="uq_stock_batches_batch"),
)

allocation_runs = Table(
    "allocation_runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("actor", String(200)),
    Column("status", String(16), nullable=False, server_default="running"),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("summary", Text),
)

allocations = Table(
    "allocations",
    metadata,
    Column("id", Id, primary_key=True),
    Column("order_id", ForeignKey("orders.id"), nullable=False),
    Column("order_line_id", ForeignKey("order_lines.id"), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("warehouse", String(32), nullable=False),
    Column("quantity", Float, nullable=False),
    Column("status", String(12), nullable=False, server_default="reserved"),  # reserved, shipped, released
    Column("shipment_request_id", BigInteger),  # shipment_requests.id once planned into a shipment
    Column("run_id", BigInteger),
    created_at_column(),
    Column("updated_at", UTCDateTime),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    Index("ix_allocations_order_id", "order_id"),
    Index("ix_allocations_status", "status", "warehouse"),
)

backorders = Table(
    "backorders",
    metadata,
    Column("id", Id, primary_key=True),
    Column("order_id", ForeignKey("orders.id"), nullable=False),
    Column("order_line_id", ForeignKey("order_lines.id"), nullable=False, unique=True),
    Column("item_code", String(64), nullable=False),
    Column("quantity", Float, nullable=False),  # still short at the last allocation run
    Column("status", String(12), nullable=False, server_default="open"),  # open, filled, cancelled
    created_at_column(),
    Column("updated_at", UTCDateTime),
    Column("filled_at", UTCDateTime),
    Index("ix_backorders_status", "status"),
)

suppliers = Table(
    "suppliers",
    metadata,
    Column("id", Id, primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("contact", String(100)),
    Column("phone", String(32)),
    Column("email", String(200)),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("updated_at", UTCDateTime),
)

supplier_prices = Table(
    "supplier_prices",
    metadata,
    Column("id", Id, primary_key=True),
    Column("supplier_code", String(64), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("unit_price_fen", BigInteger, nullable=False),
    Column("freight_per_order_fen", BigInteger, nullable=False, server_default="0"),
    Column("lead_time_days", Integer, nullable=False),  # working days from order to arrival
    Column("min_order_qty", Float, nullable=False, server_default="1"),
    Column("valid_from", Date),
    Column("valid_to", Date),
    Column("updated_at", UTCDateTime),
    UniqueConstraint("supplier_code", "item_code", name="uq_supplier_prices_supplier_item"),
)

production_requests = Table(
    "production_requests",
    metadata,
    Column("id", Id, primary_key=True),
    Column("request_no", String(40), nullable=False, unique=True),
    Column("order_id", ForeignKey("orders.id")),
    Column("order_line_id", BigInteger),
    Column("item_code", String(64), nullable=False),
    Column("warehouse", String(32), nullable=False),
    Column("quantity", Float, nullable=False),
    Column("planned_date", Date, nullable=False),  # production finished (plan from lead time)
    Column("available_date", Date, nullable=False),  # after the quality check: counts as stock
    # planned, qc_pending, stocked (QC passed, in stock), qc_failed, cancelled
    Column("status", String(16), nullable=False, server_default="planned"),
    Column("produced_qty", Float),
    Column("qc_passed_qty", Float),
    Column("qc_failed_qty", Float),
    Column("qc_by", String(200)),
    Column("qc_at", UTCDateTime),
    Column("qc_note", Text),
    created_at_column(),
    Column("updated_at", UTCDateTime),
    Index("ix_production_requests_status", "status"),
)

purchase_requests = Table(
    "purchase_requests",
    metadata,
    Column("id", Id, primary_key=True),
    Column("request_no", String(40), nullable=False, unique=True),
    Column("po_no", String(40), nullable=False),  # one purchase order per supplier per run groups requests
    Column("order_id", ForeignKey("orders.id")),
    Column("order_line_id", BigInteger),
    Column("item_code", String(64), nullable=False),
    Column("warehouse", String(32), nullable=False),
    Column("quantity", Float, nullable=False),
    Column("supplier_code", String(64), nullable=False),
    Column("unit_price_fen", BigInteger, nullable=False),
    Column("freight_fen", BigInteger, nullable=False, server_default="0"),
    Column("landed_cost_fen", BigInteger, nullable=False),
    Column("required_date", Date),
    Column("expected_date", Date, nullable=False),  # sellable in our warehouse
    # draft (to send), sent (acknowledged), received, failed (refused by supplier), cancelled
    Column("status", String(16), nullable=False, server_default="draft"),
    Column("supplier_order_id", String(64)),
    Column("sent_at", UTCDateTime),
    Column("last_error", Text),
    Column("choice_reason", Text),
    Column("alternatives", Text),  # JSON: suppliers considered with landed cost and date
    created_at_column(),
    Column("updated_at", UTCDateTime),
    Index("ix_purchase_requests_status", "status"),
    Index("ix_purchase_requests_po", "po_no"),
)

customer_decisions = Table(
    "customer_decisions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("order_id", ForeignKey("orders.id"), nullable=False),
    Column("offered_at", UTCDateTime, nullable=False),
    Column("reply_due_at", UTCDateTime),
    Column("promised_date", Date),
    Column("earliest_date", Date),  # earliest full delivery we can offer
    Column("partial_possible", Boolean, nullable=False, server_default="0"),
    Column("options", Text, nullable=False),  # JSON list: wait / partial / cancel with their meaning
    Column("choice", String(8)),  # wait, partial, cancel (NULL: not answered yet)
    Column("decided_at", UTCDateTime),
    Column("decided_by", String(200)),
    Column("note", Text),
    Index("ix_customer_decisions_order_id", "order_id"),
)

stocktakes = Table(
    "stocktakes",
    metadata,
    Column("id", Id, primary_key=True),
    Column("stocktake_no", String(40), nullable=False, unique=True),
    Column("source_file", String(500)),
    Column("imported_at", UTCDateTime, nullable=False),
    Column("actor", String(200)),
    Column("rows_total", Integer, nullable=False, server_default="0"),
    Column("rows_applied", Integer, nullable=False, server_default="0"),
    Column("rows_rejected", Integer, nullable=False, server_default="0"),
    Column("summary", Text),
    # issue 20: a listed manager or auditor who did not adjust the counted stock signs the count off
    Column("verified_by", String(200)),  # role:name
    Column("verified_at", UTCDateTime),
)

stocktake_lines = Table(
    "stocktake_lines",
    metadata,
    Column("id", Id, primary_key=True),
    Column("stocktake_id", ForeignKey("stocktakes.id"), nullable=False),
    Column("row_no", Integer, nullable=False),
    Column("warehouse", String(32)),
    Column("item_code", String(64)),
    Column("batch_no", String(64)),
    Column("counted_qty", Float),
    Column("damaged_qty", Float),
    Column("book_qty", Float),
    Column("variance", Float),
    Column("status", String(12), nullable=False),  # applied, unchanged, rejected
    Column("reason", Text),
    Index("ix_stocktake_lines_stocktake", "stocktake_id"),
)

shipment_requests = Table(
    "shipment_requests",
    metadata,
    # A planned shipment: carrier chosen, waiting for (or holding) the carrier's waybill. The ``shipments`` row
    # (what tracking polls) is written only once the waybill exists, so tracking never sees a shipment without one.
    Column("id", Id, primary_key=True),
    Column("shipment_no", String(40), nullable=False, unique=True),
    Column("idempotency_key", String(100), nullable=False, unique=True),
    Column("order_id", ForeignKey("orders.id"), nullable=False),
    Column("warehouse", String(32), nullable=False),
    Column("carrier", String(32), nullable=False),
    Column("service", String(64)),
    Column("weight_kg", Float),
    Column("chargeable_weight_kg", Float),
    Column("volume_m3", Float),
    Column("declared_value_fen", BigInteger, nullable=False, server_default="0"),
    Column("insured", Boolean, nullable=False, server_default="0"),
    Column("insurance_fee_fen", BigInteger, nullable=False, server_default="0"),
    Column("cod_amount_fen", BigInteger, nullable=False, server_default="0"),
    Column("cod_fee_fen", BigInteger, nullable=False, server_default="0"),
    Column("freight_fen", BigInteger, nullable=False, server_default="0"),
    Column("expected_delivery_date", Date),
    Column("eta_estimated", Boolean, nullable=False, server_default="0"),  # past the holiday calendar
    Column("choice_reason", Text),
    Column("alternatives", Text),  # JSON: every carrier priced, with eligibility and rank
    Column("insurance_reason", Text),
    # pending (no waybill yet), created (waybill issued, shipments row written), rejected (needs a person),
    # cancelled
    Column("status", String(12), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("waybill_no", String(64)),
    Column("shipment_id", BigInteger),  # shipments.id once created
    Column("run_id", BigInteger),
    Column("document_path", String(500)),
    # Issue 18: the parcel this request travels in with other orders' requests (``parcels.parcel_no``); NULL = its
    # own parcel. ``no_merge``: an operator undid a merge, so this request is never merged again.
    Column("parcel_no", String(48)),
    Column("no_merge", Boolean, nullable=False, server_default="0"),
    created_at_column(),
    Column("updated_at", UTCDateTime),
    Index("ix_shipment_requests_status", "status"),
    Index("ix_shipment_requests_order_id", "order_id"),
    Index("ix_shipment_requests_parcel_no", "parcel_no"),
)

parcels = Table(
    "parcels",
    metadata,
    # Issue 18: approved orders of one customer to one address from one warehouse, shipped together. Each order
    # keeps its shipment request (lines, allocations), its own ``shipments`` row and so its own tracking,
    # confirmation and settlement; the parcel holds the carrier choice for the combined goods and gets one waybill.
    Column("id", Id, primary_key=True),
    Column("parcel_no", String(48), nullable=False, unique=True),
    Column("idempotency_key", String(100), nullable=False, unique=True),  # the carrier call's key
    Column("warehouse", String(32), nullable=False),
    Column("orders", Integer, nullable=False),  # how many orders travel in it
    Column("carrier", String(32), nullable=False),
    Column("service", String(64)),
    Column("weight_kg", Float),
    Column("chargeable_weight_kg", Float),
    Column("volume_m3", Float),
    Column("declared_value_fen", BigInteger, nullable=False, server_default="0"),
    Column("insured", Boolean, nullable=False, server_default="0"),
    Column("insurance_fee_fen", BigInteger, nullable=False, server_default="0"),
    Column("freight_fen", BigInteger, nullable=False, server_default="0"),
    Column("expected_delivery_date", Date),
    Column("choice_reason", Text),
    Column("alternatives", Text),
    # planned (waiting for its waybill) -> created | rejected; undone (an operator split it before the waybill)
    Column("status", String(12), nullable=False, server_default="planned"),
    Column("hold_until", UTCDateTime),  # no waybill asked before this: the operator's time to undo the merge
    Column("requested_at", UTCDateTime),  # first waybill call: from then on the merge cannot be undone
    Column("waybill_no", String(64)),
    Column("document_path", String(500)),
    Column("undone_at", UTCDateTime),
    Column("undone_by", String(200)),
    created_at_column(),
    Column("updated_at", UTCDateTime),
    Index("ix_parcels_status", "status"),
)
