"""The notification outbox (P2): every customer-facing outcome is queued here, once, and sent by a flow.

Queuing happens in the same transaction as the business change that caused it, so a notice is never sent for a
change that rolled back, nor lost for one that committed. ``dedupe_key`` makes re-runs harmless.
"""

from __future__ import annotations

import json

import pandas as pd
from sqlalchemy import Connection

from yidi.bulk import insert_rows
from yidi.schema import notification_outbox

OUTBOX_COLUMNS = ["order_id", "medium", "recipient", "template", "context", "dedupe_key"]
MEDIA = frozenset({"email", "sms"})


def enqueue(conn: Connection, notices: pd.DataFrame) -> int:
    """Queue notices (columns ``OUTBOX_COLUMNS``; ``context`` a mapping); returns how many were new."""
    if notices.empty:
        return 0
    missing = [c for c in OUTBOX_COLUMNS if c not in notices]
    if missing:
        raise KeyError(f"notices lack columns {missing}")
    bad_media = set(notices["medium"]) - MEDIA
    if bad_media:
        raise ValueError(f"unknown notification media {sorted(bad_media)}")
    frame = notices[OUTBOX_COLUMNS].copy()
    # Rows without a recipient cannot be sent; the caller decides what that means, we never queue them.
    frame = frame[frame["recipient"].notna() & (frame["recipient"].astype(str).str.len() > 0)]
    frame["context"] = [
        c if isinstance(c, str) else json.dumps(c, ensure_ascii=False, default=str, sort_keys=True)
        for c in frame["context"].tolist()
    ]
    return insert_rows(conn, notification_outbox, frame, on_conflict=["dedupe_key"])
