"""Onboarding tables (issue 12): orders brought in from a company's old system by ``yidi load orders``.

* ``order_imports``: one row per imported order, next to its ``orders`` row: the order's rows as read (raw
  content, for "nothing lost"), a hash of them (a re-import of the same rows changes nothing), and what the old
  system knew that yidi's own flows would otherwise compute: the payment terms and due date agreed, what was
  paid there before the import, and the after-sales reference. Settlement reads the terms, due date and
  payments; the order's state came from the file and is in the event log as an ``imported`` event.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Date, ForeignKey, Integer, String, Table, Text

from yidi.schema import Id, metadata
from yidi.types import UTCDateTime

order_imports = Table(
    "order_imports",
    metadata,
    Column("id", Id, primary_key=True),
    Column("order_id", ForeignKey("orders.id"), nullable=False, unique=True),
    Column("order_no", String(40), nullable=False, unique=True),  # the old system's number, kept as ours
    Column("content_hash", String(64), nullable=False),  # of the order's rows as read
    Column("content", Text, nullable=False),  # the order's rows as read (JSON list of {header: cell})
    Column("source_file", String(300)),
    Column("row_numbers", String(200)),  # the file's rows this order came from (1 = first data row)
    Column("state_in_file", String(40)),  # as written in the file (已签收, delivered …)
    Column("payment_terms", String(16)),  # prepaid | cod | net | installment; NULL: from method and customer
    Column("net_days", Integer),
    Column("due_date", Date),  # agreed due date (first instalment); NULL: settlement computes it
    Column("paid_fen", BigInteger, nullable=False, server_default="0"),  # paid in the old system
    Column("paid_on", Date),
    Column("after_sales_ref", String(64)),
    Column("imported_at", UTCDateTime, nullable=False),
    Column("actor", String(200)),
)
