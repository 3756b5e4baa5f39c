"""Bringing existing orders in (issue 12): one file, in one transaction, with bulk reads and writes.

The file is read (csv or xlsx, UTF-8 or GBK), ``tasks.onboarding.rules.plan_import`` decides order by order, and
this module writes the result: orders (with the old system's numbers), their lines, shipments, the import record
(terms, due date, what was paid before, after-sales reference, the raw rows), one ``imported`` event per order in
the event log, and a quarantined intake record (channel ``import``, raw rows + reason) per refused order, listed
by ``yidi intake quarantine list``. Fix the rows and load the file again: the orders already imported are
unchanged, the fixed ones come in, and their earlier quarantine records are marked replayed.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection, update

from tasks.onboarding.rules import IMPORT_CHANNEL, ImportFileError, imported_events, map_columns, plan_import
from yidi.bulk import drop_temp_tables, ids_for_keys, insert_rows, read_frame, temp_key_table
from yidi.lifecycle import record_events
from yidi.schema import intake_records, order_lines, orders, shipments
from yidi.schema_onboarding import order_imports
from yidi.settings import Settings
from yidi.textfiles import UnreadableText, read_table


def _lookups(conn: Connection, raw_numbers: pd.Series, codes: pd.Series) -> tuple[dict, dict, dict]:
    """(customer code -> id, order number -> channel of orders not imported, order number -> imported hash)."""
    table = temp_key_table(conn, codes.dropna().str.strip())
    known_customers = read_frame(conn, f"SELECT code, id FROM customers WHERE code IN (SELECT k FROM {table})")
    numbers = temp_key_table(conn, raw_numbers.dropna().str.strip())
    used = read_frame(
        conn,
        f"""SELECT o.order_no, o.channel, i.content_hash FROM orders o
            LEFT JOIN order_imports i ON i.order_id = o.id WHERE o.order_no IN (SELECT k FROM {numbers})""",
    )
    drop_temp_tables(conn, table, numbers)
    imported = used[used["content_hash"].notna()]
    taken = used[used["content_hash"].isna()]
    return (
        dict(zip(known_customers["code"], known_customers["id"].astype(int), strict=True)),
        dict(zip(taken["order_no"], taken["channel"], strict=True)),
        dict(zip(imported["order_no"], imported["content_hash"], strict=True)),
    )


def import_orders(
    conn: Connection, path: str | Path, *, settings: Settings, actor: str, now: datetime
) -> dict:
    """Import one order file in ``conn``'s transaction. Returns counts: rows, orders imported, unchanged (imported
    before with the same rows), quarantined, shipments, and the quarantine reasons (first 20)."""
    path = Path(path)
    try:
        raw = read_table(path)
    except (UnreadableText, ValueError) as exc:
        raise ImportFileError(f"{path.name}: {exc}") from None
    if raw.empty:
        return {"file": path.name, "rows": 0, "imported": 0, "unchanged": 0, "quarantined": 0, "shipments": 0,
                "reasons": []}  # fmt: skip
    mapped = map_columns(raw)
    customer_ids, taken, imported_hashes = _lookups(conn, mapped["order_no"], mapped["customer_code"])
    carriers = {code: card.name for code, card in settings.fulfilment.rate_cards.items()}
    plan = plan_import(
        raw, file_name=path.name, customers=customer_ids, carriers=carriers, taken_numbers=taken,
        imported_hashes=imported_hashes,
    )  # fmt: skip

    if len(plan.orders):
        insert_rows(conn, orders, plan.orders.assign(received_at=now, updated_at=now),
                    on_conflict=["channel", "channel_order_id"])  # fmt: skip
        ids = ids_for_keys(conn, orders, plan.orders[["order_no"]]).rename(columns={"id": "order_id"})
        insert_rows(conn, order_lines, plan.lines.merge(ids, on="order_no").drop(columns="order_no"),
                    on_conflict=["order_id", "line_no"])  # fmt: skip
        if len(plan.shipments):
            insert_rows(conn, shipments, plan.shipments.merge(ids, on="order_no").drop(columns="order_no")
                        .assign(updated_at=now), on_conflict=["idempotency_key"])  # fmt: skip
        insert_rows(conn, order_imports, plan.imports.merge(ids, on="order_no").assign(imported_at=now, actor=actor),
                    on_conflict=["order_no"])  # fmt: skip
        record_events(
            conn,
            imported_events(ids.merge(plan.orders[["order_no", "state"]], on="order_no"), plan.imports, path.name)
            .assign(actor=actor, occurred_at=now),
        )
        # earlier refusals of these orders are dealt with now
        conn.execute(
            update(intake_records)
            .where(intake_records.c.channel == IMPORT_CHANNEL, intake_records.c.status == "quarantined",
                   intake_records.c.source_key.in_(plan.orders["order_no"].tolist()))
            .values(status="replayed", updated_at=now)
        )  # fmt: skip
    if len(plan.rejects):
        records = plan.rejects.drop(columns="row_numbers").assign(
            channel=IMPORT_CHANNEL, source_ref=f"load orders {path}"[:500], content_type="application/json",
            status="quarantined", received_at=now, updated_at=now,
        )  # fmt: skip
        insert_rows(conn, intake_records, records, on_conflict=["channel", "content_hash"])
    return {
        "file": path.name,
        "rows": len(raw),
        "imported": len(plan.orders),
        "unchanged": plan.unchanged,
        "quarantined": len(plan.rejects),
        "shipments": len(plan.shipments),
        "reasons": plan.rejects["reason"].head(20).tolist(),
    }


__all__ = ["ImportFileError", "import_orders"]
