"""one head: the four area branches (review, fulfilment, tracking, settlement) joined; migrations are linear from here

Before this revision each area's tables were a branch off 0001, so a change spanning two areas had to merge
heads. This revision changes no table: it only joins the branches, and every later revision follows it in one line
(tests/test_migrations.py fails when a second head appears).

Revision ID: 0007_one_head
Revises: 0003_review, 0004_fulfilment, 0005_tracking, 0006_settlement
"""

revision = "0007_one_head"
down_revision = ("0003_review", "0004_fulfilment", "0005_tracking", "0006_settlement")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
