"""fulfilment: warehouses, stock ledger and balances, allocations, backorders, production and purchase requests,
suppliers and price lists, customer short-item decisions, stocktakes, shipment requests

Revision ID: 0004_fulfilment
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_fulfilment"
down_revision = "0001_foundation"
branch_labels = ("fulfilment",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "allocation_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="running", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocation_runs")),
    )
    op.create_table(
        "stock_batches",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("warehouse", sa.String(length=32), nullable=False),
        sa.Column("item_code", sa.String(length=64), nullable=False),
        sa.Column("batch_no", sa.String(length=64), nullable=False),
        sa.Column("expiry_date", sa.Date(), nullable=True),
        sa.Column("produced_on", sa.Date(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expired_handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_batches")),
        sa.UniqueConstraint("warehouse", "item_code", "batch_no", name="uq_stock_batches_batch"),
    )
    op.create_table(
        "stock_movements",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("warehouse", sa.String(length=32), nullable=False),
        sa.Column("item_code", sa.String(length=64), nullable=False),
        sa.Column("batch_no", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("on_hand_delta", sa.Float(), server_default="0", nullable=False),
        sa.Column("reserved_delta", sa.Float(), server_default="0", nullable=False),
        sa.Column("damaged_delta", sa.Float(), server_default="0", nullable=False),
        sa.Column("quarantined_delta", sa.Float(), server_default="0", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("allocation_id", sa.BigInteger(), nullable=True),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_movements")),
    )
    op.create_index(
        "ix_stock_movements_item", "stock_movements", ["warehouse", "item_code", "occurred_at"], unique=False
    )
    op.create_index("ix_stock_movements_kind", "stock_movements", ["kind"], unique=False)
    op.create_table(
        "stocktakes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("stocktake_no", sa.String(length=40), nullable=False),
        sa.Column("source_file", sa.String(length=500), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("rows_total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rows_applied", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rows_rejected", sa.Integer(), server_default="0", nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stocktakes")),
        sa.UniqueConstraint("stocktake_no", name=op.f("uq_stocktakes_stocktake_no")),
    )
    op.create_table(
        "supplier_prices",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("supplier_code", sa.String(length=64), nullable=False),
        sa.Column("item_code", sa.String(length=64), nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("freight_per_order_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("lead_time_days", sa.Integer(), nullable=False),
        sa.Column("min_order_qty", sa.Float(), server_default="1", nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supplier_prices")),
        sa.UniqueConstraint("supplier_code", "item_code", name="uq_supplier_prices_supplier_item"),
    )
    op.create_table(
        "suppliers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("contact", sa.String(length=100), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("email", sa.String(length=200), nullable=True),
        sa.Column("active", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppliers")),
        sa.UniqueConstraint("code", name=op.f("uq_suppliers_code")),
    )
    op.create_table(
        "warehouses",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("province", sa.String(length=32), nullable=True),
        sa.Column("city", sa.String(length=64), nullable=True),
        sa.Column("district", sa.String(length=64), nullable=True),
        sa.Column("address", sa.String(length=300), nullable=True),
        sa.Column("contact", sa.String(length=100), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("priority", sa.Integer(), server_default="1", nullable=False),
        sa.Column("active", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_warehouses")),
        sa.UniqueConstraint("code", name=op.f("uq_warehouses_code")),
    )
    op.create_table(
        "stock_levels",
        sa.Column("warehouse", sa.String(length=32), nullable=False),
        sa.Column("item_code", sa.String(length=64), nullable=False),
        sa.Column("on_hand", sa.Float(), server_default="0", nullable=False),
        sa.Column("reserved", sa.Float(), server_default="0", nullable=False),
        sa.Column("damaged", sa.Float(), server_default="0", nullable=False),
        sa.Column("quarantined", sa.Float(), server_default="0", nullable=False),
        sa.Column("last_movement_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("damaged >= -1e-06", name=op.f("ck_stock_levels_damaged_not_negative")),
        sa.CheckConstraint("on_hand >= -1e-06", name=op.f("ck_stock_levels_on_hand_not_negative")),
        sa.CheckConstraint("quarantined >= -1e-06", name=op.f("ck_stock_levels_quarantined_not_negative")),
        sa.CheckConstraint(
            "reserved + damaged + quarantined <= on_hand + 1e-06",
            name=op.f("ck_stock_levels_never_promised_twice"),
        ),
        sa.CheckConstraint("reserved >= -1e-06", name=op.f("ck_stock_levels_reserved_not_negative")),
        sa.ForeignKeyConstraint(
            ["item_code"], ["catalog_items.code"], name=op.f("fk_stock_levels_item_code_catalog_items")
        ),
        sa.ForeignKeyConstraint(
            ["warehouse"], ["warehouses.code"], name=op.f("fk_stock_levels_warehouse_warehouses")
        ),
        sa.PrimaryKeyConstraint("warehouse", "item_code", name=op.f("pk_stock_levels")),
    )
    op.create_table(
        "stocktake_lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("stocktake_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("row_no", sa.Integer(), nullable=False),
        sa.Column("warehouse", sa.String(length=32), nullable=True),
        sa.Column("item_code", sa.String(length=64), nullable=True),
        sa.Column("batch_no", sa.String(length=64), nullable=True),
        sa.Column("counted_qty", sa.Float(), nullable=True),
        sa.Column("damaged_qty", sa.Float(), nullable=True),
        sa.Column("book_qty", sa.Float(), nullable=True),
        sa.Column("variance", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["stocktake_id"], ["stocktakes.id"], name=op.f("fk_stocktake_lines_stocktake_id_stocktakes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stocktake_lines")),
    )
    op.create_index("ix_stocktake_lines_stocktake", "stocktake_lines", ["stocktake_id"], unique=False)
    op.create_table(
        "customer_decisions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reply_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("promised_date", sa.Date(), nullable=True),
        sa.Column("earliest_date", sa.Date(), nullable=True),
        sa.Column("partial_possible", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("choice", sa.String(length=8), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_customer_decisions_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_decisions")),
    )
    op.create_index("ix_customer_decisions_order_id", "customer_decisions", ["order_id"], unique=False)
    op.create_table(
        "production_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("request_no", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("order_line_id", sa.BigInteger(), nullable=True),
        sa.Column("item_code", sa.String(length=64), nullable=False),
        sa.Column("warehouse", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("planned_date", sa.Date(), nullable=False),
        sa.Column("available_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="planned", nullable=False),
        sa.Column("produced_qty", sa.Float(), nullable=True),
        sa.Column("qc_passed_qty", sa.Float(), nullable=True),
        sa.Column("qc_failed_qty", sa.Float(), nullable=True),
        sa.Column("qc_by", sa.String(length=200), nullable=True),
        sa.Column("qc_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("qc_note", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_production_requests_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_production_requests")),
        sa.UniqueConstraint("request_no", name=op.f("uq_production_requests_request_no")),
    )
    op.create_index("ix_production_requests_status", "production_requests", ["status"], unique=False)
    op.create_table(
        "purchase_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("request_no", sa.String(length=40), nullable=False),
        sa.Column("po_no", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("order_line_id", sa.BigInteger(), nullable=True),
        sa.Column("item_code", sa.String(length=64), nullable=False),
        sa.Column("warehouse", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("supplier_code", sa.String(length=64), nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("freight_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("landed_cost_fen", sa.BigInteger(), nullable=False),
        sa.Column("required_date", sa.Date(), nullable=True),
        sa.Column("expected_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="draft", nullable=False),
        sa.Column("supplier_order_id", sa.String(length=64), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("choice_reason", sa.Text(), nullable=True),
        sa.Column("alternatives", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_purchase_requests_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_requests")),
        sa.UniqueConstraint("request_no", name=op.f("uq_purchase_requests_request_no")),
    )
    op.create_index("ix_purchase_requests_po", "purchase_requests", ["po_no"], unique=False)
    op.create_index("ix_purchase_requests_status", "purchase_requests", ["status"], unique=False)
    op.create_table(
        "shipment_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shipment_no", sa.String(length=40), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("warehouse", sa.String(length=32), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=True),
        sa.Column("weight_kg", sa.Float(), nullable=True),
        sa.Column("chargeable_weight_kg", sa.Float(), nullable=True),
        sa.Column("volume_m3", sa.Float(), nullable=True),
        sa.Column("declared_value_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("insured", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("insurance_fee_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cod_amount_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cod_fee_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("freight_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("expected_delivery_date", sa.Date(), nullable=True),
        sa.Column("eta_estimated", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("choice_reason", sa.Text(), nullable=True),
        sa.Column("alternatives", sa.Text(), nullable=True),
        sa.Column("insurance_reason", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=12), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("waybill_no", sa.String(length=64), nullable=True),
        sa.Column("shipment_id", sa.BigInteger(), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("document_path", sa.String(length=500), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_shipment_requests_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipment_requests")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_shipment_requests_idempotency_key")),
        sa.UniqueConstraint("shipment_no", name=op.f("uq_shipment_requests_shipment_no")),
    )
    op.create_index("ix_shipment_requests_order_id", "shipment_requests", ["order_id"], unique=False)
    op.create_index("ix_shipment_requests_status", "shipment_requests", ["status"], unique=False)
    op.create_table(
        "allocations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("item_code", sa.String(length=64), nullable=False),
        sa.Column("warehouse", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="reserved", nullable=False),
        sa.Column("shipment_request_id", sa.BigInteger(), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_allocations_quantity_positive")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_allocations_order_id_orders")),
        sa.ForeignKeyConstraint(
            ["order_line_id"], ["order_lines.id"], name=op.f("fk_allocations_order_line_id_order_lines")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocations")),
    )
    op.create_index("ix_allocations_order_id", "allocations", ["order_id"], unique=False)
    op.create_index("ix_allocations_status", "allocations", ["status", "warehouse"], unique=False)
    op.create_table(
        "backorders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("item_code", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="open", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("filled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_backorders_order_id_orders")),
        sa.ForeignKeyConstraint(
            ["order_line_id"], ["order_lines.id"], name=op.f("fk_backorders_order_line_id_order_lines")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backorders")),
        sa.UniqueConstraint("order_line_id", name=op.f("uq_backorders_order_line_id")),
    )
    op.create_index("ix_backorders_status", "backorders", ["status"], unique=False)


def downgrade() -> None:
    op.drop_table("backorders")
    op.drop_table("allocations")
    op.drop_table("shipment_requests")
    op.drop_table("purchase_requests")
    op.drop_table("production_requests")
    op.drop_table("customer_decisions")
    op.drop_table("stocktake_lines")
    op.drop_table("stock_levels")
    op.drop_table("warehouses")
    op.drop_table("suppliers")
    op.drop_table("supplier_prices")
    op.drop_table("stocktakes")
    op.drop_table("stock_movements")
    op.drop_table("stock_batches")
    op.drop_table("allocation_runs")
