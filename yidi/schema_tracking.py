"""Tracking tables (issue 6): carrier checkpoints, per-shipment polling state, incidents, liability claims, pushes.

* ``tracking_events``: each carrier checkpoint once. The natural key is (shipment, carrier time, hash of the
  text): the same checkpoint from a push and from a poll, or from a carrier that changed its code, is one row.
  ``ingest_batch`` names the write that inserted a row, so a writer knows exactly which rows were new to it.
* ``tracking_shipment_state``: what polling knows per shipment (last attempt and outcome, failures, since when
  the carrier does not know the waybill, push subscription).
* ``tracking_incidents``: one per shipment and type (delay, stale, problem, refused, returned, damaged, lost,
  unknown_waybill), with owner and due date; reopened when new evidence follows a resolution.
* ``liability_claims``: K3, a claim against the carrier for loss or damage with insured and declared value.
* ``tracking_push_receipts``: every verified push as received, landed before it is applied.
* ``carrier_interceptions`` (issue 18, 拦截): one per parcel (shipment) whose order was cancelled, refunded or
  changed at the source after its waybill existed: the request to the carrier, its answer and the outcome the
  parcel's route showed afterwards; fulfilment reads ``outcome = 'returned'`` to put the goods back in stock.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

from yidi.schema import Id, metadata
from yidi.types import UTCDateTime

tracking_events = Table(
    "tracking_events",
    metadata,
    Column("id", Id, primary_key=True),
    Column("shipment_id", ForeignKey("shipments.id"), nullable=False),
    Column("order_id", BigInteger, nullable=False),
    Column("carrier", String(32), nullable=False),
    Column("waybill_no", String(64), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("context", Text, nullable=False),
    Column("context_hash", String(40), nullable=False),
    Column("area_name", String(200)),
    Column("carrier_code", String(16)),
    Column("status", String(24), nullable=False),
    Column("reason", String(24)),
    Column("source", String(8), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("ingest_batch", String(32), nullable=False),
    UniqueConstraint("shipment_id", "occurred_at", "context_hash", name="uq_tracking_events_natural"),
    Index("ix_tracking_events_ingest_batch", "ingest_batch"),
    Index("ix_tracking_events_order_id", "order_id"),
)

tracking_shipment_state = Table(
    "tracking_shipment_state",
    metadata,
    Column("shipment_id", ForeignKey("shipments.id"), primary_key=True),
    Column("last_attempt_at", UTCDateTime),
    Column("last_outcome", String(16)),
    Column("last_error", Text),
    Column("consecutive_failures", Integer, nullable=False, server_default="0"),
    Column("no_result_since", UTCDateTime),
    Column("carrier_state", Integer),
    Column("ischeck", Boolean, nullable=False, server_default="0"),
    # Digest of the stored checkpoints' keys: a carrier answer with the same digest holds nothing new.
    Column("events_digest", String(40)),
    Column("subscription_status", String(16)),
    Column("subscribed_at", UTCDateTime),
    Column("last_push_at", UTCDateTime),
    Column("updated_at", UTCDateTime),
)

tracking_incidents = Table(
    "tracking_incidents",
    metadata,
    Column("id", Id, primary_key=True),
    Column("shipment_id", ForeignKey("shipments.id"), nullable=False),
    Column("order_id", BigInteger, nullable=False),
    Column("incident_type", String(24), nullable=False),
    Column("carrier", String(32), nullable=False),
    Column("waybill_no", String(64)),
    Column("owner", String(100), nullable=False),
    Column("status", String(12), nullable=False, server_default="open"),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("evidence", Text),
    Column("details", Text),
    Column("occurrences", Integer, nullable=False, server_default="1"),
    Column("last_seen_at", UTCDateTime),
    Column("resolved_at", UTCDateTime),
    Column("resolution", Text),
    Column("resolved_by", String(200)),
    Column("updated_at", UTCDateTime),
    UniqueConstraint("shipment_id", "incident_type", name="uq_tracking_incidents_shipment_type"),
    Index("ix_tracking_incidents_status", "status"),
    Index("ix_tracking_incidents_order_id", "order_id"),
)

liability_claims = Table(
    "liability_claims",
    metadata,
    Column("id", Id, primary_key=True),
    Column("incident_id", ForeignKey("tracking_incidents.id"), nullable=False, unique=True),
    Column("shipment_id", BigInteger, nullable=False),
    Column("order_id", BigInteger, nullable=False),
    Column("carrier", String(32), nullable=False),
    Column("waybill_no", String(64)),
    Column("claim_type", String(8), nullable=False),  # damage | loss
    Column("insured", Boolean, nullable=False, server_default="0"),
    Column("declared_value_fen", BigInteger, nullable=False, server_default="0"),
    Column("insured_value_fen", BigInteger, nullable=False, server_default="0"),
    Column("freight_fen", BigInteger, nullable=False, server_default="0"),
    Column("claim_amount_fen", BigInteger, nullable=False, server_default="0"),
    Column("basis", Text),
    Column("status", String(12), nullable=False, server_default="open"),  # open | filed | settled | rejected
    Column("opened_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("settled_amount_fen", BigInteger),
    Column("settled_at", UTCDateTime),
    Column("updated_at", UTCDateTime),
    Index("ix_liability_claims_status", "status"),
)

tracking_push_receipts = Table(
    "tracking_push_receipts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("received_at", UTCDateTime, nullable=False, server_default=func.current_timestamp()),
    Column("carrier", String(32)),
    Column("waybill_no", String(64)),
    Column("push_status", String(16)),
    Column("content", Text, nullable=False),
    Column("content_hash", String(64), nullable=False, unique=True),
    Column("status", String(12), nullable=False, server_default="landed"),  # landed | applied | unmatched | failed
    Column("shipment_id", BigInteger),
    Column("applied_at", UTCDateTime),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),  # failed tries to apply (failed after N)
    Index("ix_tracking_push_receipts_status", "status"),
)

carrier_interceptions = Table(
    "carrier_interceptions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("shipment_id", BigInteger, nullable=False, unique=True),
    Column("order_id", BigInteger, nullable=False),
    Column("carrier", String(32), nullable=False),
    Column("waybill_no", String(64), nullable=False),
    Column("trigger", String(12), nullable=False),  # cancelled | refunded | changed
    Column("reason", Text),
    # pending (to ask) -> requested (the carrier accepted: 拦截已受理) | too_late (the carrier can no longer stop
    # it) | refused (the carrier refused the request itself: a person looks)
    Column("status", String(12), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("task_id", String(64)),  # the carrier's id for the request
    Column("answer", Text),  # the carrier's answer (JSON), for the record
    Column("requested_at", UTCDateTime),
    # what the route showed after: returning (return in transit) | returned (back at the warehouse) | delivered
    # (delivered anyway: after-sales)
    Column("outcome", String(12)),
    Column("outcome_at", UTCDateTime),
    Column("restocked_at", UTCDateTime),  # fulfilment put the goods back in stock (once)
    Column("created_at", UTCDateTime, nullable=False, server_default=func.current_timestamp()),
    Column("updated_at", UTCDateTime),
    Index("ix_carrier_interceptions_status", "status"),
)
