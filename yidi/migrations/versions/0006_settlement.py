"""settlement: statement files, payment lines, matches, discrepancy cases and their history, receivables ledger,
dunning actions, reconciliation runs

Revision ID: 0006_settlement
Revises: 0001_foundation
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_settlement"
down_revision = "0001_foundation"
branch_labels = ("settlement",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dunning_actions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("dedupe_key", sa.String(length=160), nullable=False),
        sa.Column("party_key", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("step_no", sa.Integer(), nullable=False),
        sa.Column("step_name", sa.String(length=40), nullable=False),
        sa.Column("overdue_fen", sa.BigInteger(), nullable=False),
        sa.Column("days_overdue", sa.Integer(), nullable=False),
        sa.Column("oldest_due_date", sa.Date(), nullable=False),
        sa.Column("notices", sa.Integer(), server_default="0", nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dunning_actions")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_dunning_actions_dedupe_key")),
    )
    op.create_index("ix_dunning_actions_party", "dunning_actions", ["party_key", "step_no"], unique=False)
    op.create_table(
        "settlement_cases",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_key", sa.String(length=120), nullable=False),
        sa.Column("case_class", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="open", nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("payment_line_id", sa.BigInteger(), nullable=True),
        sa.Column("shipment_id", sa.BigInteger(), nullable=True),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_cases")),
        sa.UniqueConstraint("case_key", name=op.f("uq_settlement_cases_case_key")),
    )
    op.create_index("ix_settlement_cases_order_id", "settlement_cases", ["order_id"], unique=False)
    op.create_index("ix_settlement_cases_status", "settlement_cases", ["status", "case_class"], unique=False)
    op.create_table(
        "settlement_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=40), nullable=True),
        sa.Column("period", sa.String(length=40), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_runs")),
    )
    op.create_table(
        "statement_files",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("file_hash", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=True),
        sa.Column("account", sa.String(length=64), nullable=True),
        sa.Column("file_name", sa.String(length=300), nullable=False),
        sa.Column("file_path", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=24), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("row_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("new_lines", sa.Integer(), server_default="0", nullable=False),
        sa.Column("credit_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("debit_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("first_txn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_txn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statement_files")),
        sa.UniqueConstraint("file_hash", name=op.f("uq_statement_files_file_hash")),
    )
    op.create_table(
        "payment_lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("line_key", sa.String(length=120), nullable=False),
        sa.Column("provider_txn_id", sa.String(length=120), nullable=True),
        sa.Column("original_txn_id", sa.String(length=120), nullable=True),
        sa.Column("file_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("fee_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("txn_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merchant_order_no", sa.String(length=100), nullable=True),
        sa.Column("payer_name", sa.String(length=200), nullable=True),
        sa.Column("payer_account", sa.String(length=100), nullable=True),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column("waybill_no", sa.String(length=64), nullable=True),
        sa.Column("account", sa.String(length=64), nullable=True),
        sa.Column("match_status", sa.String(length=12), server_default="unmatched", nullable=False),
        sa.Column("matched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"], ["statement_files.id"], name=op.f("fk_payment_lines_file_id_statement_files")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_lines")),
        sa.UniqueConstraint("source", "line_key", name="uq_payment_lines_source_line_key"),
    )
    op.create_index("ix_payment_lines_match_status", "payment_lines", ["match_status"], unique=False)
    op.create_index("ix_payment_lines_original", "payment_lines", ["source", "original_txn_id"], unique=False)
    op.create_index("ix_payment_lines_waybill", "payment_lines", ["waybill_no"], unique=False)
    op.create_index("ix_payment_lines_txn_time", "payment_lines", ["txn_time"], unique=False)
    op.create_table(
        "settlement_case_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("from_status", sa.String(length=12), nullable=True),
        sa.Column("to_status", sa.String(length=12), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["settlement_cases.id"],
            name=op.f("fk_settlement_case_events_case_id_settlement_cases"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_case_events")),
    )
    op.create_index(
        "ix_settlement_case_events_case_id", "settlement_case_events", ["case_id", "id"], unique=False
    )
    op.create_table(
        "payment_matches",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("payment_line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("matched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_payment_matches_order_id_orders")),
        sa.ForeignKeyConstraint(
            ["payment_line_id"],
            ["payment_lines.id"],
            name=op.f("fk_payment_matches_payment_line_id_payment_lines"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_matches")),
        sa.UniqueConstraint("payment_line_id", "order_id", name="uq_payment_matches_line_order"),
    )
    op.create_index("ix_payment_matches_order_id", "payment_matches", ["order_id"], unique=False)
    op.create_table(
        "receivables",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("installment_no", sa.Integer(), server_default="1", nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("payment_terms", sa.String(length=16), nullable=False),
        sa.Column("invoice_no", sa.String(length=40), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("paid_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("outstanding_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_receivables_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receivables")),
        sa.UniqueConstraint("order_id", "installment_no", name="uq_receivables_order_installment"),
    )
    op.create_index("ix_receivables_invoice_no", "receivables", ["invoice_no"], unique=False)
    op.create_index("ix_receivables_status_due", "receivables", ["status", "due_date"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_receivables_status_due", table_name="receivables")
    op.drop_index("ix_receivables_invoice_no", table_name="receivables")
    op.drop_table("receivables")
    op.drop_index("ix_payment_matches_order_id", table_name="payment_matches")
    op.drop_table("payment_matches")
    op.drop_index("ix_settlement_case_events_case_id", table_name="settlement_case_events")
    op.drop_table("settlement_case_events")
    op.drop_index("ix_payment_lines_txn_time", table_name="payment_lines")
    op.drop_index("ix_payment_lines_original", table_name="payment_lines")
    op.drop_index("ix_payment_lines_waybill", table_name="payment_lines")
    op.drop_index("ix_payment_lines_match_status", table_name="payment_lines")
    op.drop_table("payment_lines")
    op.drop_table("statement_files")
    op.drop_table("settlement_runs")
    op.drop_index("ix_settlement_cases_status", table_name="settlement_cases")
    op.drop_index("ix_settlement_cases_order_id", table_name="settlement_cases")
    op.drop_table("settlement_cases")
    op.drop_index("ix_dunning_actions_party", table_name="dunning_actions")
    op.drop_table("dunning_actions")
