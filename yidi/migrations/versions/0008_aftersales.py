"""aftersales: raw inbox of after-sales paths, cases and lines, returned goods, refunds, feedback queue and alerts,
service jobs, satisfaction surveys (issue 14)

Revision ID: 0008_aftersales
Revises: 0007_one_head
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_aftersales"
down_revision = "0007_one_head"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aftersales_inbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("source_key", sa.String(length=200), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="landed", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("subject_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aftersales_inbox")),
        sa.UniqueConstraint("kind", "channel", "content_hash", name="uq_aftersales_inbox_once"),
    )
    op.create_index("ix_aftersales_inbox_status", "aftersales_inbox", ["status"], unique=False)
    op.create_table(
        "feedback_items",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("feedback_no", sa.String(length=40), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contact", sa.String(length=200), nullable=True),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="open", nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("cause_category", sa.String(length=24), nullable=True),
        sa.Column("findings", sa.Text(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("first_response_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolution_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_items")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_feedback_items_dedupe_key")),
        sa.UniqueConstraint("feedback_no", name=op.f("uq_feedback_items_feedback_no")),
    )
    op.create_index("ix_feedback_items_status", "feedback_items", ["status"], unique=False)
    op.create_table(
        "surveys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("survey_key", sa.String(length=120), nullable=False),
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.Column("feedback_id", sa.BigInteger(), nullable=True),
        sa.Column("service_job_id", sa.BigInteger(), nullable=True),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("medium", sa.String(length=8), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("reply_text", sa.Text(), nullable=True),
        sa.Column("replied_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_surveys")),
        sa.UniqueConstraint("code", name=op.f("uq_surveys_code")),
        sa.UniqueConstraint("survey_key", name=op.f("uq_surveys_survey_key")),
    )
    op.create_table(
        "feedback_alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("feedback_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["feedback_id"], ["feedback_items.id"], name=op.f("fk_feedback_alerts_feedback_id_feedback_items")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_alerts")),
        sa.UniqueConstraint("feedback_id", "kind", "due_at", name="uq_feedback_alerts_once"),
    )
    op.create_table(
        "aftersales_cases",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_no", sa.String(length=40), nullable=False),
        sa.Column("request_key", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("quality_problem", sa.Integer(), server_default="0", nullable=False),
        sa.Column("goods_opened", sa.Integer(), server_default="0", nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="open", nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("decision_rule", sa.String(length=48), nullable=True),
        sa.Column("decision_citation", sa.Text(), nullable=True),
        sa.Column("decision_text", sa.Text(), nullable=True),
        sa.Column("freight_payer", sa.String(length=12), nullable=True),
        sa.Column("refund_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("refund_due_date", sa.Date(), nullable=True),
        sa.Column("return_carrier", sa.String(length=32), nullable=True),
        sa.Column("return_waybill_no", sa.String(length=64), nullable=True),
        sa.Column("return_received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("inspection", sa.String(length=12), nullable=True),
        sa.Column("inspection_reason", sa.Text(), nullable=True),
        sa.Column("replacement_order_id", sa.BigInteger(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_aftersales_cases_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aftersales_cases")),
        sa.UniqueConstraint("case_no", name=op.f("uq_aftersales_cases_case_no")),
        sa.UniqueConstraint("request_key", name=op.f("uq_aftersales_cases_request_key")),
    )
    op.create_index("ix_aftersales_cases_order_id", "aftersales_cases", ["order_id"], unique=False)
    op.create_index("ix_aftersales_cases_status", "aftersales_cases", ["status"], unique=False)
    op.create_table(
        "service_jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("job_no", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_line_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=True),
        sa.Column("needs_goods", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("technician", sa.String(length=100), nullable=True),
        sa.Column("scheduled_date", sa.Date(), nullable=True),
        sa.Column("result_note", sa.Text(), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_service_jobs_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_jobs")),
        sa.UniqueConstraint("job_no", name=op.f("uq_service_jobs_job_no")),
        sa.UniqueConstraint("order_line_id", name=op.f("uq_service_jobs_order_line_id")),
    )
    op.create_index("ix_service_jobs_day", "service_jobs", ["technician", "scheduled_date"], unique=False)
    op.create_index("ix_service_jobs_status", "service_jobs", ["status"], unique=False)
    op.create_table(
        "aftersales_case_lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_line_id", sa.BigInteger(), nullable=True),
        sa.Column("item_code", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["aftersales_cases.id"],
            name=op.f("fk_aftersales_case_lines_case_id_aftersales_cases"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aftersales_case_lines")),
        sa.UniqueConstraint("case_id", "item_code", name="uq_aftersales_case_lines_item"),
    )
    op.create_table(
        "refund_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("provider_refund_id", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["aftersales_cases.id"], name=op.f("fk_refund_requests_case_id_aftersales_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refund_requests")),
        sa.UniqueConstraint("case_id", name=op.f("uq_refund_requests_case_id")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_refund_requests_idempotency_key")),
    )
    op.create_table(
        "returned_goods",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("warehouse", sa.String(length=32), nullable=False),
        sa.Column("item_code", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("disposition", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("inspected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["aftersales_cases.id"], name=op.f("fk_returned_goods_case_id_aftersales_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_returned_goods")),
        sa.UniqueConstraint("case_id", "item_code", name="uq_returned_goods_once"),
    )


def downgrade() -> None:
    op.drop_table("returned_goods")
    op.drop_table("refund_requests")
    op.drop_table("aftersales_case_lines")
    op.drop_index("ix_service_jobs_status", table_name="service_jobs")
    op.drop_index("ix_service_jobs_day", table_name="service_jobs")
    op.drop_table("service_jobs")
    op.drop_index("ix_aftersales_cases_status", table_name="aftersales_cases")
    op.drop_index("ix_aftersales_cases_order_id", table_name="aftersales_cases")
    op.drop_table("aftersales_cases")
    op.drop_table("feedback_alerts")
    op.drop_table("surveys")
    op.drop_index("ix_feedback_items_status", table_name="feedback_items")
    op.drop_table("feedback_items")
    op.drop_index("ix_aftersales_inbox_status", table_name="aftersales_inbox")
    op.drop_table("aftersales_inbox")
