"""intake_records.content compressed with lz4 on PostgreSQL (issue 17: bulk intake as fast as the storage allows)

A bulk drop lands each chunk of 50,000 rows as one raw record of several MB. PostgreSQL's default TOAST
compression (pglz) took ~0.4-0.55 s per such record on this machine; lz4 took ~0.08-0.12 s and stored it
smaller (1.09 MB against 1.45 MB for a 6 MB chunk). Only values written from now on are compressed with lz4;
PostgreSQL reads both. SQLite stores text uncompressed: nothing to do there. A server without lz4 support keeps
pglz (the change is skipped, not failed).

Revision ID: 0019_intake_content_lz4
Revises: 0018_return_subscription
"""

from alembic import op

revision = "0019_intake_content_lz4"
down_revision = "0018_return_subscription"
branch_labels = None
depends_on = None


def _set_compression(method: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"""
        DO $$ BEGIN
            ALTER TABLE intake_records ALTER COLUMN content SET COMPRESSION {method};
        EXCEPTION WHEN feature_not_supported OR syntax_error OR invalid_parameter_value THEN
            RAISE NOTICE 'intake_records.content keeps its compression: %', SQLERRM;
        END $$""")


def upgrade() -> None:
    _set_compression("lz4")


def downgrade() -> None:
    _set_compression("pglz")
