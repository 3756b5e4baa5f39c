"""Customer notices from fulfilment (T1, T2): delay options, decisions and shipments go to the outbox, one row
per medium the customer can be reached on; the outbox sends each once (its dedupe key)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Connection, select

from yidi.bulk import chunked, frame_records, read_frame
from yidi.schema import orders
from yidi.settings import FulfilmentPolicy, Settings


def notice_rows(conn: Connection, rows: list[dict], policy: FulfilmentPolicy, settings: Settings) -> pd.DataFrame:
    """Outbox rows (one per medium with a contact) for ``rows`` of order_id, template, dedupe, context."""
    columns = ["order_id", "medium", "recipient", "template", "context", "dedupe_key"]
    if not rows:
        return pd.DataFrame(columns=columns)
    ids = sorted({int(r["order_id"]) for r in rows})
    frames = [
        read_frame(conn, select(orders.c.id.label("order_id"), orders.c.order_no, orders.c.customer_name,
                                orders.c.customer_phone, orders.c.customer_email).where(orders.c.id.in_(chunk)))
        for chunk in chunked(ids)
    ]  # fmt: skip
    contacts = {int(r["order_id"]): r for r in frame_records(pd.concat(frames, ignore_index=True))}
    out = []
    for row in rows:
        contact = contacts.get(int(row["order_id"]))
        if contact is None:
            continue
        context = {"order_no": contact["order_no"], "customer_name": contact["customer_name"] or "客户",
                   "company_name": settings.general.company_name, **row["context"]}  # fmt: skip
        for medium in policy.notice_media:
            recipient = contact["customer_phone"] if medium == "sms" else contact["customer_email"]
            if isinstance(recipient, str) and recipient.strip():
                out.append({"order_id": int(row["order_id"]), "medium": medium, "recipient": recipient.strip(),
                            "template": row["template"], "context": context,
                            "dedupe_key": f"{row['dedupe']}:{medium}"})  # fmt: skip
    return pd.DataFrame(out, columns=columns)
