"""After-sales tables (issue 14; A3, T2, T3, S2): the raw inbox of every after-sales path, cases and their lines,
returned goods waiting for the stock ledger, refunds, the feedback queue and its deadline alerts, service jobs,
satisfaction surveys.

Idempotency lives in the keys: a raw record once per kind, channel and content (an email's Message-ID stands for
its content, so the same email delivered twice is one record); a case once per request key; a refund once per
idempotency key (the provider's out_request_no / out_refund_no); returned goods once per case and item; a service
job once per order line; a survey once per trigger; a deadline alert once per item, kind and deadline.

``returned_goods`` is where after-sales and fulfilment meet: after-sales writes what came back and how it was
inspected, fulfilment's ``restock_returns`` moves it through the stock ledger and stamps ``applied_at``.
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

from yidi.schema import Id, created_at_column, metadata
from yidi.types import UTCDateTime

aftersales_inbox = Table(
    "aftersales_inbox",
    metadata,
    Column("id", Id, primary_key=True),
    Column("kind", String(16), nullable=False),  # request | feedback | survey_reply
    Column("channel", String(32), nullable=False),  # form, email, website, taobao, woocommerce, sms, cli
    Column("source_key", String(200)),  # Message-ID, platform refund id, SMS id
    Column("content_hash", String(64), nullable=False),
    Column("content", Text, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False, server_default="landed"),  # landed | quarantined
    Column("reason", Text),
    Column("subject_id", BigInteger),  # the case, feedback item or survey it became
    UniqueConstraint("kind", "channel", "content_hash", name="uq_aftersales_inbox_once"),
    Index("ix_aftersales_inbox_status", "status"),
)

aftersales_cases = Table(
    "aftersales_cases",
    metadata,
    Column("id", Id, primary_key=True),
    Column("case_no", String(40), nullable=False, unique=True),
    Column("request_key", String(200), nullable=False, unique=True),  # channel:source id
    Column("order_id", ForeignKey("orders.id"), nullable=False),
    Column("customer_id", BigInteger),
    Column("kind", String(24), nullable=False),  # return | exchange | repair | refund_only | installation_problem
    Column("quality_problem", Integer, nullable=False, server_default="0"),  # 1 = goods fail quality requirements
    Column("goods_opened", Integer, nullable=False, server_default="0"),  # digital goods downloaded or unsealed
    Column("description", Text),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("received_date", Date),  # the day the customer received the goods (Asia/Shanghai)
    # open -> decided -> awaiting_return -> return_arrived (parcel signed for) -> received -> refunded/replaced/repaired -> closed; rejected
    Column("status", String(20), nullable=False, server_default="open"),
    Column("decision", String(16)),  # return | exchange | repair | refund | reject
    Column("decision_rule", String(48)),
    Column("decision_citation", Text),
    Column("decision_text", Text),
    Column("freight_payer", String(12)),  # customer | company
    Column("refund_fen", BigInteger, nullable=False, server_default="0"),
    Column("refund_due_date", Date),
    Column("return_carrier", String(32)),
    Column("return_waybill_no", String(64)),
    Column("return_received_at", UTCDateTime),
    Column("return_parcel_state", String(16)),  # collected | in_transit | arrived | exception (Kuaidi100 polls)
    Column("return_last_event", Text),  # the newest checkpoint, as the carrier wrote it
    Column("return_tracked_at", UTCDateTime),  # last asked (Kuaidi100 refuses a waybill asked again too soon)
    Column("return_arrived_at", UTCDateTime),  # signed for at the return warehouse: inspection is due
    Column("return_subscribed_at", UTCDateTime),  # Kuaidi100 accepted the push subscription (else asked again)
    Column("inspection", String(12)),  # good | damaged
    Column("inspection_reason", Text),
    Column("replacement_order_id", BigInteger),
    Column("decided_at", UTCDateTime),
    Column("closed_at", UTCDateTime),
    Column("actor", String(200)),
    created_at_column(),
    Column("updated_at", UTCDateTime),
    Index("ix_aftersales_cases_order_id", "order_id"),
    Index("ix_aftersales_cases_status", "status"),
)

aftersales_case_lines = Table(
    "aftersales_case_lines",
    metadata,
    Column("id", Id, primary_key=True),
    Column("case_id", ForeignKey("aftersales_cases.id"), nullable=False),
    Column("order_line_id", BigInteger),
    Column("item_code", String(64), nullable=False),
    Column("quantity", Float, nullable=False),
    Column("amount_fen", BigInteger, nullable=False, server_default="0"),  # what the customer paid for them
    UniqueConstraint("case_id", "item_code", name="uq_aftersales_case_lines_item"),
)

returned_goods = Table(
    "returned_goods",
    metadata,
    Column("id", Id, primary_key=True),
    Column("case_id", ForeignKey("aftersales_cases.id"), nullable=False),
    Column("order_id", BigInteger, nullable=False),
    Column("warehouse", String(32), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("quantity", Float, nullable=False),
    Column("disposition", String(12), nullable=False),  # restock | quarantine | scrap
    Column("reason", Text),
    Column("inspected_at", UTCDateTime, nullable=False),
    Column("applied_at", UTCDateTime),  # the stock ledger took it
    UniqueConstraint("case_id", "item_code", name="uq_returned_goods_once"),
)

refund_requests = Table(
    "refund_requests",
    metadata,
    Column("id", Id, primary_key=True),
    Column("idempotency_key", String(64), nullable=False, unique=True),  # out_request_no / out_refund_no
    Column("case_id", ForeignKey("aftersales_cases.id"), nullable=False, unique=True),
    Column("order_id", BigInteger, nullable=False),
    Column("route", String(16), nullable=False),  # alipay | wechatpay | bank_transfer
    Column("amount_fen", BigInteger, nullable=False),
    Column("due_date", Date),
    Column("status", String(16), nullable=False, server_default="pending"),  # pending|succeeded|failed|instructed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("provider_refund_id", String(64)),
    Column("last_error", Text),
    Column("response", Text),
    created_at_column(),
    Column("sent_at", UTCDateTime),
)

feedback_items = Table(
    "feedback_items",
    metadata,
    Column("id", Id, primary_key=True),
    Column("feedback_no", String(40), nullable=False, unique=True),
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Column("channel", String(32), nullable=False),  # phone | email | website | platform
    Column("received_at", UTCDateTime, nullable=False),
    Column("contact", String(200)),
    Column("customer_id", BigInteger),
    Column("order_id", BigInteger),
    Column("subject", Text),
    Column("body", Text, nullable=False),
    Column("category", String(16), nullable=False),  # inquiry | suggestion | complaint | praise
    Column("status", String(12), nullable=False, server_default="open"),  # open | answered | closed
    Column("owner", String(200)),
    Column("cause_category", String(24)),
    Column("findings", Text),
    Column("resolution", Text),
    Column("answer", Text),
    Column("first_response_due_at", UTCDateTime, nullable=False),
    Column("resolution_due_at", UTCDateTime, nullable=False),
    Column("first_responded_at", UTCDateTime),
    Column("resolved_at", UTCDateTime),
    Column("escalated_at", UTCDateTime),
    Index("ix_feedback_items_status", "status"),
)

feedback_alerts = Table(
    "feedback_alerts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("feedback_id", ForeignKey("feedback_items.id"), nullable=False),
    Column("kind", String(24), nullable=False),  # response_reminder|response_escalation|resolution_...
    Column("due_at", UTCDateTime, nullable=False),
    Column("recipient", String(200), nullable=False),
    created_at_column(),
    UniqueConstraint("feedback_id", "kind", "due_at", name="uq_feedback_alerts_once"),
)

service_jobs = Table(
    "service_jobs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("job_no", String(40), nullable=False, unique=True),
    Column("order_id", ForeignKey("orders.id"), nullable=False),
    Column("order_line_id", BigInteger, nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # installation | commissioning | maintenance | repair
    Column("region", String(32)),
    Column("needs_goods", Integer, nullable=False, server_default="0"),
    # waiting_goods | unscheduled | scheduled | done | needs_parts | customer_absent | no_region
    Column("status", String(16), nullable=False),
    Column("technician", String(100)),
    Column("scheduled_date", Date),
    Column("result_note", Text),
    Column("done_at", UTCDateTime),
    created_at_column(),
    Column("updated_at", UTCDateTime),
    Index("ix_service_jobs_status", "status"),
    Index("ix_service_jobs_day", "technician", "scheduled_date"),
)

surveys = Table(
    "surveys",
    metadata,
    Column("id", Id, primary_key=True),
    Column("survey_key", String(120), nullable=False, unique=True),  # trigger:subject
    Column("code", String(12), nullable=False, unique=True),  # what the customer quotes in the reply
    Column("trigger", String(16), nullable=False),  # delivery | service | case | complaint
    Column("order_id", BigInteger),
    Column("case_id", BigInteger),
    Column("feedback_id", BigInteger),
    Column("service_job_id", BigInteger),
    Column("recipient", String(200), nullable=False),
    Column("medium", String(8), nullable=False),
    Column("sent_at", UTCDateTime, nullable=False),
    Column("score", Integer),
    Column("reply_text", Text),
    Column("replied_at", UTCDateTime),
)
