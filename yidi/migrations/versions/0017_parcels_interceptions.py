"""parcels (orders merged into one parcel) and carrier_interceptions (拦截), issue 18

``parcels`` holds the carrier choice and waybill of a parcel carrying several orders' shipment requests
(``shipment_requests.parcel_no``; ``no_merge`` after an operator undid a merge). ``carrier_interceptions`` holds
each interception asked of a carrier, its answer and the outcome.

Revision ID: 0017_parcels_interceptions
Revises: 0016_stocktake_verification
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_parcels_interceptions"
down_revision = "0016_stocktake_verification"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.text("(CURRENT_TIMESTAMP)")


def UTCDateTime():  # noqa: N802 - reads like the model's column type
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("shipment_requests") as batch:
        batch.add_column(sa.Column("parcel_no", sa.String(48)))
        batch.add_column(sa.Column("no_merge", sa.Boolean(), nullable=False, server_default="0"))
        batch.create_index("ix_shipment_requests_parcel_no", ["parcel_no"])
    op.create_table(
        "parcels",
        sa.Column("id", Id, nullable=False),
        sa.Column("parcel_no", sa.String(48), nullable=False),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.Column("warehouse", sa.String(32), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("carrier", sa.String(32), nullable=False),
        sa.Column("service", sa.String(64)),
        sa.Column("weight_kg", sa.Float()),
        sa.Column("chargeable_weight_kg", sa.Float()),
        sa.Column("volume_m3", sa.Float()),
        sa.Column("declared_value_fen", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("insured", sa.Boolean(), nullable=False, server_default="0"),
        sa.Column("insurance_fee_fen", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("freight_fen", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("expected_delivery_date", sa.Date()),
        sa.Column("choice_reason", sa.Text()),
        sa.Column("alternatives", sa.Text()),
        sa.Column("status", sa.String(12), nullable=False, server_default="planned"),
        sa.Column("hold_until", UTCDateTime()),
        sa.Column("requested_at", UTCDateTime()),
        sa.Column("waybill_no", sa.String(64)),
        sa.Column("document_path", sa.String(500)),
        sa.Column("undone_at", UTCDateTime()),
        sa.Column("undone_by", sa.String(200)),
        sa.Column("created_at", UTCDateTime(), nullable=False, server_default=NOW),
        sa.Column("updated_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parcels")),
        sa.UniqueConstraint("parcel_no", name=op.f("uq_parcels_parcel_no")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_parcels_idempotency_key")),
    )
    op.create_index("ix_parcels_status", "parcels", ["status"])
    op.create_table(
        "carrier_interceptions",
        sa.Column("id", Id, nullable=False),
        sa.Column("shipment_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("carrier", sa.String(32), nullable=False),
        sa.Column("waybill_no", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(12), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("status", sa.String(12), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.Column("task_id", sa.String(64)),
        sa.Column("answer", sa.Text()),
        sa.Column("requested_at", UTCDateTime()),
        sa.Column("outcome", sa.String(12)),
        sa.Column("outcome_at", UTCDateTime()),
        sa.Column("restocked_at", UTCDateTime()),
        sa.Column("created_at", UTCDateTime(), nullable=False, server_default=NOW),
        sa.Column("updated_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carrier_interceptions")),
        sa.UniqueConstraint("shipment_id", name=op.f("uq_carrier_interceptions_shipment_id")),
    )
    op.create_index("ix_carrier_interceptions_status", "carrier_interceptions", ["status"])


def downgrade() -> None:
    op.drop_table("carrier_interceptions")
    op.drop_table("parcels")
    with op.batch_alter_table("shipment_requests") as batch:
        batch.drop_index("ix_shipment_requests_parcel_no")
        batch.drop_column("no_merge")
        batch.drop_column("parcel_no")
