"""Review tables (issue 4): validation runs, per-order checks with their findings, reviewer decisions, and the
deadline alerts already sent.

Idempotency lives in the keys: an order's content is checked once (``review_checks`` unique by order and content
key), a finding once per check and rule, a reviewer decision once per order version (the second reviewer to decide
the same version loses, cleanly), a deadline alert once per order, kind and deadline.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint, func

from yidi.schema import Id, metadata
from yidi.types import UTCDateTime

review_runs = Table(
    "review_runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("run_key", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False, server_default="auto"),
    Column("flow_run_id", String(64)),
    Column("actor", String(200)),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("status", String(12), nullable=False, server_default="running"),  # running | completed | failed
    Column("orders_checked", Integer, nullable=False, server_default="0"),
    Column("auto_rejected", Integer, nullable=False, server_default="0"),
    Column("pending_review", Integer, nullable=False, server_default="0"),
    Column("findings", Integer, nullable=False, server_default="0"),
    Column("stats", Text),  # JSON: per expectation (suite, rule, reason code, severity, unexpected/element counts)
    Column("data_docs", Text),  # path of the Data Docs index
)

review_checks = Table(
    "review_checks",
    metadata,
    Column("id", Id, primary_key=True),
    Column("run_id", ForeignKey("review_runs.id"), nullable=False),
    Column("order_id", ForeignKey("orders.id"), nullable=False),
    Column("content_key", String(80), nullable=False),  # the order's content hash when checked
    Column("outcome", String(16), nullable=False),  # auto_rejected | pending_review
    Column("reject_count", Integer, nullable=False, server_default="0"),
    Column("review_count", Integer, nullable=False, server_default="0"),
    Column("note_count", Integer, nullable=False, server_default="0"),
    Column("credit", Text),  # JSON credit check result (exposure, limit, overdue) when one was made
    Column("checked_at", UTCDateTime, nullable=False),
    UniqueConstraint("order_id", "content_key", name="uq_review_checks_order_content"),
    Index("ix_review_checks_run_id", "run_id"),
)

review_findings = Table(
    "review_findings",
    metadata,
    Column("id", Id, primary_key=True),
    Column("check_id", ForeignKey("review_checks.id"), nullable=False),
    Column("order_id", ForeignKey("orders.id"), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("reason_code", String(48), nullable=False),
    Column("severity", String(16), nullable=False),  # reject | needs_review | note
    Column("area", String(4), nullable=False),  # V1..V4
    Column("message_zh", Text, nullable=False),
    Column("message_en", Text, nullable=False),
    Column("details", Text),  # JSON (lines concerned, credit figures)
    UniqueConstraint("check_id", "rule", name="uq_review_findings_check_rule"),
    Index("ix_review_findings_order_id", "order_id"),
    Index("ix_review_findings_reason_code", "reason_code"),
)

review_decisions = Table(
    "review_decisions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("order_id", ForeignKey("orders.id"), nullable=False),
    Column("order_version", Integer, nullable=False),  # the order version the reviewer saw
    Column("decision", String(8), nullable=False),  # approve | reject
    Column("reviewer", String(100), nullable=False),
    Column("reason", Text),
    Column("proposed_solution", Text),
    Column("source", String(16), nullable=False),  # ui | cli | api
    Column("flow_run_id", String(64)),
    Column("decided_at", UTCDateTime, nullable=False),
    UniqueConstraint("order_id", "order_version", name="uq_review_decisions_order_version"),
)

review_deadline_alerts = Table(
    "review_deadline_alerts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("order_id", ForeignKey("orders.id"), nullable=False),
    Column("kind", String(12), nullable=False),  # reminder | escalation
    Column("due_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False, server_default=func.current_timestamp()),
    UniqueConstraint("order_id", "kind", "due_at", name="uq_review_deadline_alerts_once"),
)
