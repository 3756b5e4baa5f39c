"""tracking: carrier checkpoints, per-shipment polling state, incidents, liability claims, push receipts

Revision ID: 0005_tracking
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_tracking"
down_revision = "0001_foundation"
branch_labels = ("tracking",)
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tracking_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("shipment_id", ID, nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("waybill_no", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("context_hash", sa.String(length=40), nullable=False),
        sa.Column("area_name", sa.String(length=200), nullable=True),
        sa.Column("carrier_code", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=24), nullable=True),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("ingest_batch", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["shipment_id"], ["shipments.id"], name=op.f("fk_tracking_events_shipment_id_shipments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_events")),
        sa.UniqueConstraint("shipment_id", "occurred_at", "context_hash", name="uq_tracking_events_natural"),
    )
    op.create_index("ix_tracking_events_ingest_batch", "tracking_events", ["ingest_batch"])
    op.create_index("ix_tracking_events_order_id", "tracking_events", ["order_id"])

    op.create_table(
        "tracking_shipment_state",
        sa.Column("shipment_id", ID, nullable=False),
        sa.Column("last_attempt_at", TS, nullable=True),
        sa.Column("last_outcome", sa.String(length=16), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("no_result_since", TS, nullable=True),
        sa.Column("carrier_state", sa.Integer(), nullable=True),
        sa.Column("ischeck", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("events_digest", sa.String(length=40), nullable=True),
        sa.Column("subscription_status", sa.String(length=16), nullable=True),
        sa.Column("subscribed_at", TS, nullable=True),
        sa.Column("last_push_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["shipment_id"], ["shipments.id"], name=op.f("fk_tracking_shipment_state_shipment_id_shipments")
        ),
        sa.PrimaryKeyConstraint("shipment_id", name=op.f("pk_tracking_shipment_state")),
    )

    op.create_table(
        "tracking_incidents",
        sa.Column("id", ID, nullable=False),
        sa.Column("shipment_id", ID, nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("incident_type", sa.String(length=24), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("waybill_no", sa.String(length=64), nullable=True),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="open", nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("occurrences", sa.Integer(), server_default="1", nullable=False),
        sa.Column("last_seen_at", TS, nullable=True),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("updated_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["shipment_id"], ["shipments.id"], name=op.f("fk_tracking_incidents_shipment_id_shipments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_incidents")),
        sa.UniqueConstraint("shipment_id", "incident_type", name="uq_tracking_incidents_shipment_type"),
    )
    op.create_index("ix_tracking_incidents_status", "tracking_incidents", ["status"])
    op.create_index("ix_tracking_incidents_order_id", "tracking_incidents", ["order_id"])

    op.create_table(
        "liability_claims",
        sa.Column("id", ID, nullable=False),
        sa.Column("incident_id", ID, nullable=False),
        sa.Column("shipment_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=False),
        sa.Column("waybill_no", sa.String(length=64), nullable=True),
        sa.Column("claim_type", sa.String(length=8), nullable=False),
        sa.Column("insured", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("declared_value_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("insured_value_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("freight_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("claim_amount_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("basis", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=12), server_default="open", nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("settled_amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("settled_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["tracking_incidents.id"],
            name=op.f("fk_liability_claims_incident_id_tracking_incidents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_liability_claims")),
        sa.UniqueConstraint("incident_id", name=op.f("uq_liability_claims_incident_id")),
    )
    op.create_index("ix_liability_claims_status", "liability_claims", ["status"])

    op.create_table(
        "tracking_push_receipts",
        sa.Column("id", ID, nullable=False),
        sa.Column("received_at", TS, server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.Column("carrier", sa.String(length=32), nullable=True),
        sa.Column("waybill_no", sa.String(length=64), nullable=True),
        sa.Column("push_status", sa.String(length=16), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="landed", nullable=False),
        sa.Column("shipment_id", sa.BigInteger(), nullable=True),
        sa.Column("applied_at", TS, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_push_receipts")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_tracking_push_receipts_content_hash")),
    )
    op.create_index("ix_tracking_push_receipts_status", "tracking_push_receipts", ["status"])


def downgrade() -> None:
    op.drop_table("tracking_push_receipts")
    op.drop_table("liability_claims")
    op.drop_table("tracking_incidents")
    op.drop_table("tracking_shipment_state")
    op.drop_table("tracking_events")
