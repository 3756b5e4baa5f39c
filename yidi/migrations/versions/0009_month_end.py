"""month end: imported orders (order_imports), provider bill days received, the as-of moment of each
reconciliation run (issue 12)

Revision ID: 0009_month_end
Revises: 0008_aftersales
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_month_end"
down_revision = "0008_aftersales"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "order_imports",
        sa.Column("id", ID, nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("order_no", sa.String(length=40), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("source_file", sa.String(length=300), nullable=True),
        sa.Column("row_numbers", sa.String(length=200), nullable=True),
        sa.Column("state_in_file", sa.String(length=40), nullable=True),
        sa.Column("payment_terms", sa.String(length=16), nullable=True),
        sa.Column("net_days", sa.Integer(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("paid_fen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("paid_on", sa.Date(), nullable=True),
        sa.Column("after_sales_ref", sa.String(length=64), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_order_imports_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_imports")),
        sa.UniqueConstraint("order_id", name=op.f("uq_order_imports_order_id")),
        sa.UniqueConstraint("order_no", name=op.f("uq_order_imports_order_no")),
    )
    op.create_table(
        "provider_bill_days",
        sa.Column("id", ID, nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("bill_day", sa.Date(), nullable=False),
        sa.Column("file_id", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"], ["statement_files.id"], name=op.f("fk_provider_bill_days_file_id_statement_files")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_bill_days")),
        sa.UniqueConstraint("source", "account", "bill_day", name="uq_provider_bill_days_day"),
    )
    with op.batch_alter_table("settlement_runs") as batch:
        batch.add_column(sa.Column("as_of", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("settlement_runs") as batch:
        batch.drop_column("as_of")
    op.drop_table("provider_bill_days")
    op.drop_table("order_imports")
