"""access log: the append-only trail of personal-data access (issue 20)

Revision ID: 0013_access_log
Revises: 0012_channels
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_access_log"
down_revision = "0012_channels"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY_MESSAGE = "personal_data_access is append-only"


def upgrade() -> None:
    op.create_table(
        "personal_data_access",
        sa.Column("id", ID, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("people", sa.Integer(), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_personal_data_access_occurred_at", "personal_data_access", ["occurred_at"])
    # Protected like order_events (0001_foundation): the database refuses UPDATE and DELETE.
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER personal_data_access_no_{action.lower()} BEFORE {action} ON personal_data_access "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION personal_data_access_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER personal_data_access_append_only BEFORE UPDATE OR DELETE ON personal_data_access "
            "FOR EACH ROW EXECUTE FUNCTION personal_data_access_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS personal_data_access_append_only() CASCADE")
    op.drop_index("ix_personal_data_access_occurred_at", table_name="personal_data_access")
    op.drop_table("personal_data_access")
