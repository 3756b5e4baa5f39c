"""The raw inbox of the after-sales paths (issue 14): after-sales requests, feedback and survey replies land here
first, as received, so nothing is lost and nothing is processed twice.

One helper for the two areas that read these paths (``tasks.aftersales`` and ``tasks.feedback`` do not import
each other). A record is identified by kind, channel and a hash of its identity: the source's own id when it has
one (an email's Message-ID, an SMS id, a platform refund id), else its content, so the same email delivered twice
is one record. Unreadable records are kept with a reason (``quarantined``), never dropped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, bindparam, update

from yidi.bulk import ids_for_keys, insert_rows
from yidi.schema_aftersales import aftersales_inbox


def record_text(record) -> str:
    """A record's content as stored: text as is, anything else as sorted JSON."""
    if isinstance(record, str):
        return record
    return json.dumps(record, ensure_ascii=False, sort_keys=True, default=str)


def identity_hash(source_key: str | None, content: str) -> str:
    return hashlib.sha256((f"key:{source_key}" if source_key else f"content:{content}").encode("utf-8")).hexdigest()


def land_raw(
    conn: Connection, kind: str, channel: str, records: Sequence[tuple[str | None, object]], now: datetime
) -> pd.DataFrame:
    """Store ``records`` (source key, content) once; returns the NEW ones: inbox ``id``, ``source_key``,
    ``content`` (text). Records seen before (same identity) are skipped and not returned."""
    if not records:
        return pd.DataFrame(columns=["id", "source_key", "content"])
    frame = pd.DataFrame({"source_key": [k for k, _ in records], "content": [record_text(c) for _, c in records]})
    frame["content_hash"] = [identity_hash(k, c) for k, c in zip(frame["source_key"], frame["content"], strict=True)]
    frame = frame.drop_duplicates("content_hash")
    keys = pd.DataFrame({"kind": kind, "channel": channel, "content_hash": frame["content_hash"]})
    known = ids_for_keys(conn, aftersales_inbox, keys)
    fresh = frame[~frame["content_hash"].isin(set(known["content_hash"]))]
    if fresh.empty:
        return pd.DataFrame(columns=["id", "source_key", "content"])
    insert_rows(conn, aftersales_inbox, fresh.assign(kind=kind, channel=channel, received_at=now, status="landed"),
                on_conflict=["kind", "channel", "content_hash"])  # fmt: skip
    ids = ids_for_keys(conn, aftersales_inbox, keys[keys["content_hash"].isin(set(fresh["content_hash"]))])
    out = fresh.merge(ids[["content_hash", "id"]], on="content_hash")
    return out[["id", "source_key", "content"]].reset_index(drop=True)


def settle_records(conn: Connection, outcomes: pd.DataFrame) -> None:
    """Record what each inbox record became: ``id``, ``status`` (landed | quarantined), ``reason``,
    ``subject_id`` (the case, feedback item or survey)."""
    if outcomes.empty:
        return
    stmt = (
        update(aftersales_inbox)
        .where(aftersales_inbox.c.id == bindparam("rid"))
        .values(status=bindparam("st"), reason=bindparam("why"), subject_id=bindparam("sid"))
    )
    conn.execute(stmt, [
        {"rid": int(i), "st": s, "why": r if isinstance(r, str) else None,
         "sid": None if sid is None or pd.isna(sid) else int(sid)}
        for i, s, r, sid in zip(outcomes["id"], outcomes["status"], outcomes["reason"], outcomes["subject_id"],
                                strict=True)
    ])  # fmt: skip
