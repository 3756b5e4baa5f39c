"""Record and list personal-data access (issue 20): every unmasked export, every ``order show`` of personal fields,
every document with full addresses written to disk. One row per access: who (``role:name``), when, what, how many
people's data. The table is append-only (``yidi/schema_access.py``)."""

from __future__ import annotations

import json

import pandas as pd
from sqlalchemy import Connection, select

from yidi.bulk import insert_rows, read_frame, utc_now
from yidi.schema_access import personal_data_access

# Columns holding personal data, by kind (yidi.masking): exports mask them unless --unmasked.
PERSONAL_KINDS = {"phone": ("phone", "mobile"), "name": ("customer_name", "contact_name", "receiver_name",
                                                         "recipient_name", "consignee"),
                  "address": ("ship_detail", "address", "detail_address")}  # fmt: skip


def personal_columns(columns) -> dict[str, str]:
    """{column: kind} for the columns of a table that hold personal data."""
    found = {}
    for column in columns:
        for kind, markers in PERSONAL_KINDS.items():
            if any(marker in column for marker in markers):
                found[column] = kind
                break
    return found


def record_access(conn: Connection, actor: str, action: str, subject: str, people: int, **details) -> None:
    insert_rows(conn, personal_data_access, pd.DataFrame([{
        "occurred_at": utc_now(), "actor": actor[:120], "action": action, "subject": subject[:500],
        "people": int(people), "details": json.dumps(details, ensure_ascii=False, default=str) if details else None,
    }]))  # fmt: skip


def access_log(conn: Connection, limit: int = 100) -> pd.DataFrame:
    """The newest ``limit`` records, newest first."""
    return read_frame(conn, select(personal_data_access).order_by(personal_data_access.c.id.desc()).limit(limit))
