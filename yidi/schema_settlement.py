"""Settlement tables (issue 7): statement files, ingested payment lines, matches, discrepancy cases with their
history, the receivables ledger, dunning actions, reconciliation runs and the provider bill days received.

Idempotency lives in the keys: a file is known by its content hash, a payment line by ``(source, line_key)``
(its identity at the provider, stable across re-exports), a match by ``(payment_line_id, order_id)``, a case by
``case_key`` (class + subject), a receivable by ``(order_id, installment_no)``, a dunning step by its
``dedupe_key``. Re-running a reconciliation on the same files and period therefore changes nothing.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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

from yidi.schema import Id, metadata
from yidi.types import UTCDateTime

statement_files = Table(
    "statement_files",
    metadata,
    Column("id", Id, primary_key=True),
    Column("file_hash", String(64), nullable=False, unique=True),
    Column("source", String(40)),
    Column("account", String(64)),
    Column("file_name", String(300), nullable=False),
    Column("file_path", Text),
    Column("status", String(12), nullable=False),  # ingested | rejected
    Column("reason", String(24)),  # PaymentFileError.reason when rejected
    Column("error", Text),
    Column("row_count", Integer, nullable=False, server_default="0"),
    Column("new_lines", Integer, nullable=False, server_default="0"),
    Column("credit_fen", BigInteger, nullable=False, server_default="0"),
    Column("debit_fen", BigInteger, nullable=False, server_default="0"),
    Column("first_txn_at", UTCDateTime),
    Column("last_txn_at", UTCDateTime),
    Column("received_at", UTCDateTime, nullable=False),
    Column("actor", String(200)),
)

payment_lines = Table(
    "payment_lines",
    metadata,
    Column("id", Id, primary_key=True),
    Column("source", String(40), nullable=False),
    Column("line_key", String(120), nullable=False),
    Column("provider_txn_id", String(120)),
    Column("original_txn_id", String(120)),
    Column("file_id", ForeignKey("statement_files.id"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("kind", String(10), nullable=False),  # payment | refund | credit | debit | cod
    Column("amount_fen", BigInteger, nullable=False),
    Column("fee_fen", BigInteger, nullable=False, server_default="0"),
    Column("txn_time", UTCDateTime, nullable=False),
    Column("merchant_order_no", String(100)),
    Column("payer_name", String(200)),
    Column("payer_account", String(100)),
    Column("memo", Text),
    Column("waybill_no", String(64)),
    Column("account", String(64)),
    Column(
        "match_status", String(12), nullable=False, server_default="unmatched"
    ),  # unmatched|matched|ignored
    Column("matched_at", UTCDateTime),
    Column("ingested_at", UTCDateTime, nullable=False),
    UniqueConstraint("source", "line_key", name="uq_payment_lines_source_line_key"),
    Index("ix_payment_lines_match_status", "match_status"),
    Index("ix_payment_lines_txn_time", "txn_time"),
    Index("ix_payment_lines_original", "source", "original_txn_id"),
    Index("ix_payment_lines_waybill", "waybill_no"),
)

payment_matches = Table(
    "payment_matches",
    metadata,
    Column("id", Id, primary_key=True),
    Column("payment_line_id", ForeignKey("payment_lines.id"), nullable=False),
    Column("order_id", ForeignKey("orders.id"), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),  # the part of the line allocated to this order (signed)
    Column("rule", String(32), nullable=False),
    Column("score", Float, nullable=False),
    Column("matched_at", UTCDateTime, nullable=False),
    Column("actor", String(200)),
    UniqueConstraint("payment_line_id", "order_id", name="uq_payment_matches_line_order"),
    Index("ix_payment_matches_order_id", "order_id"),
)

settlement_cases = Table(
    "settlement_cases",
    metadata,
    Column("id", Id, primary_key=True),
    Column("case_key", String(120), nullable=False, unique=True),
    Column("case_class", String(32), nullable=False),
    Column("status", String(12), nullable=False, server_default="open"),  # open | explained | resolved
    Column("owner", String(200)),
    Column("order_id", BigInteger),
    Column("payment_line_id", BigInteger),
    Column("shipment_id", BigInteger),
    Column("customer_id", BigInteger),
    Column("amount_fen", BigInteger, nullable=False, server_default="0"),
    Column("summary", Text, nullable=False),
    Column("details", Text),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime),
    Column("resolved_by", String(200)),  # 'system' when the condition cleared by itself, else who resolved it
    Column("resolution", Text),
    Index("ix_settlement_cases_status", "status", "case_class"),
    Index("ix_settlement_cases_order_id", "order_id"),
)

settlement_case_events = Table(
    "settlement_case_events",
    metadata,
    Column("id", Id, primary_key=True),
    Column("case_id", ForeignKey("settlement_cases.id"), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(16), nullable=False),  # opened|updated|explained|resolved|reopened|assigned
    Column("from_status", String(12)),
    Column("to_status", String(12)),
    Column("note", Text),
    Index("ix_settlement_case_events_case_id", "case_id", "id"),
)

receivables = Table(
    "receivables",
    metadata,
    Column("id", Id, primary_key=True),
    Column("order_id", ForeignKey("orders.id"), nullable=False),
    Column("installment_no", Integer, nullable=False, server_default="1"),
    Column("customer_id", BigInteger),
    Column("payment_terms", String(16), nullable=False),  # prepaid | cod | net | installment
    Column("invoice_no", String(40)),
    Column("due_date", Date),  # NULL: not due yet (COD before delivery, net terms before shipment)
    Column("amount_fen", BigInteger, nullable=False),
    Column("paid_fen", BigInteger, nullable=False, server_default="0"),
    Column("outstanding_fen", BigInteger, nullable=False),
    Column("status", String(8), nullable=False),  # open | paid | void
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("order_id", "installment_no", name="uq_receivables_order_installment"),
    Index("ix_receivables_status_due", "status", "due_date"),
    Index("ix_receivables_invoice_no", "invoice_no"),
)

dunning_actions = Table(
    "dunning_actions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("dedupe_key", String(160), nullable=False, unique=True),
    Column("party_key", String(40), nullable=False),  # customer:<id>, or order:<id> for walk-in customers
    Column("customer_id", BigInteger),
    Column("order_id", BigInteger),  # the oldest overdue order
    Column("step_no", Integer, nullable=False),
    Column("step_name", String(40), nullable=False),
    Column("overdue_fen", BigInteger, nullable=False),
    Column("days_overdue", Integer, nullable=False),
    Column("oldest_due_date", Date, nullable=False),
    Column("notices", Integer, nullable=False, server_default="0"),
    Column("taken_at", UTCDateTime, nullable=False),
    Column("actor", String(200)),
    Index("ix_dunning_actions_party", "party_key", "step_no"),
)

settlement_runs = Table(
    "settlement_runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("actor", String(200)),
    Column("source", String(40)),
    Column("period", String(40)),
    Column("summary", Text),  # JSON: files, lines, match rate, cases by class, ageing totals
    Column("as_of", UTCDateTime),  # the moment states, cases and dunning were computed for (end of a business day)
)

# Which days' bills each provider account has sent (issue 12): a prepaid online order is "unpaid past terms" only
# once the bills of every day it could have been paid on are in, so a bill arriving a day later opens no case.
provider_bill_days = Table(
    "provider_bill_days",
    metadata,
    Column("id", Id, primary_key=True),
    Column("source", String(40), nullable=False),  # alipay | wechatpay
    Column("account", String(64), nullable=False),
    Column("bill_day", Date, nullable=False),  # Asia/Shanghai calendar day the bill covers
    Column("file_id", ForeignKey("statement_files.id"), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("source", "account", "bill_day", name="uq_provider_bill_days_day"),
)
