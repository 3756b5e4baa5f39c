"""The notification outbox (P2): every customer-facing outcome is queued here, once, and sent by a flow.

Queuing happens in the same transaction as the business change that caused it, so a notice is never sent for a
change that rolled back, nor lost for one that committed. ``dedupe_key`` makes re-runs harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
from sqlalchemy import Connection, select

from yidi.bulk import chunked, frame_records, insert_rows, json_text, read_frame
from yidi.schema import notification_outbox, orders

OUTBOX_COLUMNS = ["order_id", "medium", "recipient", "template", "context", "dedupe_key"]
MEDIA = frozenset({"email", "sms"})


def enqueue(conn: Connection, notices: pd.DataFrame) -> int:
    """Queue notices (columns ``OUTBOX_COLUMNS``; ``context`` a mapping); returns how many were new."""
    if notices.empty:
        return 0
    missing = [c for c in OUTBOX_COLUMNS if c not in notices]
    if missing:
        raise KeyError(f"notices lack columns {missing}")
    bad_media = set(notices["medium"].unique().tolist()) - MEDIA
    if bad_media:
        raise ValueError(f"unknown notification media {sorted(bad_media)}")
    frame = notices[OUTBOX_COLUMNS].copy()
    # Rows without a recipient cannot be sent; the caller decides what that means, we never queue them.
    recipient = frame["recipient"]
    frame = frame[(recipient.notna() & (recipient != "")).to_numpy(dtype=bool, na_value=False)]
    if frame["context"].dtype == object:  # mappings (a text column holds JSON already: bulk callers)
        frame["context"] = [json_text(c) for c in frame["context"].tolist()]
    return insert_rows(conn, notification_outbox, frame, on_conflict=["dedupe_key"])


def order_contacts(conn: Connection, order_ids: Iterable[int]) -> pd.DataFrame:
    """The contact columns of the given orders (order_id, order_no, customer_name, customer_phone, customer_email)."""
    ids = sorted({int(i) for i in order_ids})
    frames = [
        read_frame(conn, select(orders.c.id.label("order_id"), orders.c.order_no, orders.c.customer_name,
                                orders.c.customer_phone, orders.c.customer_email).where(orders.c.id.in_(chunk)))
        for chunk in chunked(ids)
    ]  # fmt: skip
    columns = ["order_id", "order_no", "customer_name", "customer_phone", "customer_email"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def customer_notices(contacts: pd.DataFrame, notices: list[dict], media: Sequence[str], company: str) -> pd.DataFrame:
    """Outbox rows for ``notices`` (dicts of order_id, template, dedupe, context): one per medium in ``media`` the
    order has a contact for (SMS to the phone, mail to the address), each with its own dedupe key. Pure."""
    by_order = {int(r["order_id"]): r for r in frame_records(contacts)}
    out = []
    for notice in notices:
        contact = by_order.get(int(notice["order_id"]))
        if contact is None:
            continue
        context = {"order_no": contact["order_no"], "customer_name": contact["customer_name"] or "客户",
                   "company_name": company, **notice["context"]}  # fmt: skip
        for medium in media:
            recipient = contact["customer_phone"] if medium == "sms" else contact["customer_email"]
            if isinstance(recipient, str) and recipient.strip():
                out.append({"order_id": int(notice["order_id"]), "medium": medium, "recipient": recipient.strip(),
                            "template": notice["template"], "context": context,
                            "dedupe_key": f"{notice['dedupe']}:{medium}"})  # fmt: skip
    return pd.DataFrame(out, columns=OUTBOX_COLUMNS)


def enqueue_customer_notices(conn: Connection, notices: list[dict], media: Sequence[str], company: str) -> int:
    """Queue ``customer_notices`` for the orders' current contacts; returns how many were new."""
    if not notices:
        return 0
    contacts = order_contacts(conn, [n["order_id"] for n in notices])
    return enqueue(conn, customer_notices(contacts, notices, media, company))
