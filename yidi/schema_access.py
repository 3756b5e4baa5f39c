"""The trail of personal-data access (issue 20, PIPL): who saw or wrote out whose personal data, when, how many people.

``personal_data_access`` is append-only like the event log: the database refuses UPDATE and DELETE (triggers on
SQLite and PostgreSQL, migration ``0013_access_log``). Written by ``yidi.access_log.record_access``.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from yidi.schema import Id, metadata
from yidi.types import UTCDateTime

personal_data_access = Table(
    "personal_data_access",
    metadata,
    Column("id", Id, primary_key=True),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("actor", String(120), nullable=False),  # role:name of the acting person (yidi.staff)
    Column("action", String(32), nullable=False),  # export_unmasked | order_show | document
    Column("subject", String(500), nullable=False),  # what: table and file, order number, document path
    Column("people", Integer, nullable=False),  # how many people's data it held
    Column("details", Text),  # JSON
    Index("ix_personal_data_access_occurred_at", "occurred_at"),
)
