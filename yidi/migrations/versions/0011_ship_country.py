"""orders.ship_country: the delivery country (ISO 3166-1 alpha-2) of an order, so a foreign address is kept whole

Before this revision a WooCommerce order shipped abroad kept its street line and postcode only; the country lived on
in the region note. NULL on rows stored before it (they are domestic unless the note says otherwise).

Revision ID: 0011_ship_country
Revises: 0010_risk
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_ship_country"
down_revision = "0010_risk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("ship_country", sa.String(length=2), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("ship_country")
