"""Landing, quarantine and idempotent upsert of channel batches (requirements I3, I4, P3).

Per batch, in one transaction:

1. Raw records land in ``intake_records`` (channel, source, content, sha256). A record whose content was already
   landed (same channel and hash: a duplicate delivery, an overlapping window, a re-dropped file) is not processed
   again. A bulk drop (a csv of thousands of orders) lands each chunk as one record instead, and only its
   quarantined orders as records of their own: a million-order file is not a million raw rows to write and index.
2. New records are parsed and normalised. One that cannot be understood is stored ``quarantined`` with a reason a
   person can act on (``yidi intake quarantine list|show|replay``); it never stops the rest of the batch.
3. Orders are upserted by their natural key ``(channel, channel_order_id)``: new → inserted with a 'received'
   event; same content hash → nothing written; changed → updated, lines replaced, a 'change' event lists the
   changed fields, and an order already reviewed goes back to ``pending_review`` (cancelled at the source →
   ``cancelled`` where the lifecycle allows). An older version arriving late never overwrites a newer one.
4. The channel's cursor is saved in ``channel_cursors`` in the same transaction, so it advances only with the data.

After the commit the batch's ``on_commit`` hook runs (mark mail read, move the file). A crash before it re-reads
the same records next time: they are found landed and skipped — no loss, no duplicate. The decisions are in
``tasks.intake.rules``, the SQL in ``tasks.intake.store``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine

from connectors.base import RECORD_COLUMNS, Batch, BulkChunk, Connector, Parsed, content_hash
from tasks.intake import store
from tasks.intake.normalise import (
    LINE_STORE_COLUMNS,
    ORDER_STORE_COLUMNS,
    Normalised,
    normalise,
    order_numbers,
)
from tasks.intake.rules import (
    ChannelSummary,
    Counts,
    change_decisions,
    clean_content,
    compare_with_stored,
    latest_versions,
    orders_with_changed_lines,
    record_outcomes,
    subset_parsed,
)
from yidi.bulk import gc_paused, insert_rows, reserve_ids, utc_now
from yidi.json_columns import json_object_texts
from yidi.lifecycle import OrderState, current_actor, record_events, transition_orders
from yidi.money import yuan_texts
from yidi.outbox import OUTBOX_COLUMNS, enqueue
from yidi.schema import intake_records, order_events, orders
from yidi.settings import get_settings

log = logging.getLogger(__name__)


def run_channel(engine: Engine, connector: Connector, *, actor: str | None = None,
                on_batch: Callable[[Batch, Counts], None] | None = None) -> ChannelSummary:
    """Pull every batch the channel has from the stored cursor on; each batch commits on its own."""
    summary = ChannelSummary(channel=connector.name)
    with engine.connect() as conn:
        cursor = store.load_cursor(conn, connector.name)
    try:
        for batch in connector.fetch(cursor):
            counts = land_batch(engine, connector, batch, actor=actor)
            summary.add(counts)
            summary.batches += 1
            if on_batch is not None:
                on_batch(batch, counts)
            log.info("%s %s: %s", connector.name, batch.label, counts)
    finally:
        connector.close()
    return summary


def land_batch(engine: Engine, connector: Connector, batch: Batch, *, actor: str | None = None) -> Counts:
    """Land, parse, normalise and upsert one batch in one transaction; returns what happened."""
    actor = actor or current_actor()
    # A bulk chunk (tens of thousands of orders) is built and written with the cyclic GC paused (yidi.bulk.gc_paused).
    with gc_paused() if batch.bulk is not None else nullcontext(), engine.begin() as conn:
        store.take_write_lock(conn)
        if batch.bulk is not None:
            counts = Counts(read=batch.bulk.size)
            _land_chunk(conn, connector, batch.bulk, batch.parsed, counts, actor)
        else:
            counts = Counts(read=len(batch.records))
            records = clean_content(batch.records[RECORD_COLUMNS].reset_index(drop=True))
            if len(records):
                _land_records(conn, connector, records, batch.parsed, counts, actor)
        if batch.cursor is not None:
            store.save_cursor(conn, connector.name, batch.cursor)
    if batch.on_commit is not None:
        batch.on_commit()
    return counts


def replay_record(engine: Engine, connector: Connector, record_id: int, content: str | None = None,
                  *, actor: str | None = None) -> tuple[int, Counts, dict[int, int | None]]:
    """Replay a quarantined record (optionally with corrected content) through the same path.

    The replay lands as a new record pointing at the original (``replay_of``); the original becomes 'replayed'
    when the replay is accepted. Returns (new record id, counts, {0: order id}).
    """
    actor = actor or current_actor()
    with engine.begin() as conn:
        store.take_write_lock(conn)
        original = store.replay_source(conn, record_id, connector.name)
        text = original["content"] if content is None else content
        # A replay's hash also covers the replay itself, so the same content (replayed after a catalog or code
        # fix) lands as a record of its own next to the original.
        attempt = utc_now().isoformat()
        records = pd.DataFrame({
            "source_ref": [f"replay of {record_id} at {attempt}: {original['source_ref'] or ''}"[:500]],
            "source_key": [original["source_key"]],
            "content": [text],
            "content_type": [original["content_type"]],
            "content_hash": [content_hash(f"{text}\x00replay-of:{record_id}@{attempt}")],
        })
        counts = Counts(read=1)
        outcome = _land_records(conn, connector, clean_content(records), None, counts, actor,
                                replay_of={0: record_id})
        new_id = store.record_id_by_hash(conn, connector.name, records["content_hash"][0])
        if new_id is not None and counts.quarantined == 0:
            store.mark_replayed(conn, record_id)
    return new_id, counts, outcome


def _normalised(conn: Connection, parsed: Parsed, n: int, counts: Counts) -> tuple[Normalised, np.ndarray,
                                                                                     np.ndarray]:
    """Normalise a parse of ``n`` records: (normalised orders, status and reason per record)."""
    normal = normalise(parsed, catalog_kinds=store.catalog_kinds(conn))
    status, reason = record_outcomes(parsed, normal, n, counts)
    return normal, status, reason


def _land_chunk(conn: Connection, connector: Connector, bulk: BulkChunk, parsed, counts: Counts,
                actor: str) -> None:
    """A chunk of a bulk drop: the chunk lands as one record, its quarantined orders as records of their own."""
    channel = connector.name
    now = utc_now()
    chunk = clean_content(bulk.record[RECORD_COLUMNS].reset_index(drop=True))
    if len(store.existing_records(conn, channel, chunk["content_hash"])):
        counts.unchanged += bulk.size  # the same chunk was landed before (a re-dropped file)
        return
    parsed = parsed(None) if callable(parsed) else parsed
    normal, status, reason = _normalised(conn, parsed, bulk.size, counts)
    bad = np.flatnonzero(status == "quarantined")

    chunk_id = int(reserve_ids(conn, intake_records, 1)[0])
    note = f"bulk drop chunk: {bulk.size:,} orders; {len(bad):,} of them quarantined as records of their own"
    if not insert_rows(conn, intake_records, chunk.assign(id=chunk_id, channel=channel, status="accepted",
                                                          reason=note, received_at=now, updated_at=now),
                       on_conflict=["channel", "content_hash"]):
        counts.unchanged += bulk.size  # a concurrent run landed the same chunk (PostgreSQL waited for it)
        return
    if len(bad):
        own = clean_content(bulk.records_at(bad)).assign(channel=channel, status="quarantined", reason=reason[bad],
                                                        received_at=now, updated_at=now)
        fresh = ~own["content_hash"].duplicated() & ~own["content_hash"].isin(
            set(store.existing_records(conn, channel, own["content_hash"])["content_hash"]))
        # Counted by what the insert wrote: a chunk landing beside this one (PostgreSQL) may hold the same row
        # text; whoever commits first keeps it, the other counts it unchanged.
        kept = insert_rows(conn, intake_records, own[fresh.to_numpy()], on_conflict=["channel", "content_hash"])
        counts.quarantined += int(kept)
        counts.unchanged += len(own) - int(kept)
    if len(normal.orders):
        landed = pd.DataFrame({"record_id": np.full(bulk.size, chunk_id, dtype=np.int64)})
        _upsert_orders(conn, normal.orders, normal.lines, landed, counts, actor, now)


def _land_records(conn: Connection, connector: Connector, records: pd.DataFrame, parsed: Parsed | None,
                  counts: Counts, actor: str, replay_of: dict[int, int] | None = None) -> dict[int, int | None]:
    """Returns {position in records: order id or None} for the records processed."""
    channel = connector.name
    now = utc_now()
    # 1. Skip contents already landed (and repeats inside the batch).
    first_seen = ~records["content_hash"].duplicated(keep="first")
    existing = store.existing_records(conn, channel, records["content_hash"])
    known = records["content_hash"].isin(set(existing["content_hash"]))
    todo = np.flatnonzero((first_seen & ~known).to_numpy())
    counts.unchanged += len(records) - len(todo)
    if not len(todo):
        return {}
    work = records.iloc[todo].reset_index(drop=True)
    if callable(parsed):
        parsed = subset_parsed(parsed(todo), todo)
    elif parsed is not None:
        parsed = subset_parsed(parsed, todo)
    else:
        parsed = connector.parse(work)

    # 2. Normalise; gather every record's problems.
    n = len(work)
    normal, status, reason = _normalised(conn, parsed, n, counts)
    counts.quarantined += int((status == "quarantined").sum())

    # 3. Land the raw records (with their outcome) and learn their ids.
    landed = work.assign(channel=channel, status=status, reason=reason, received_at=now, updated_at=now)
    if replay_of:
        landed["replay_of"] = pd.array([replay_of.get(i) for i in range(n)], dtype="Int64")
    reserved = reserve_ids(conn, intake_records, n)
    inserted = insert_rows(conn, intake_records, landed.assign(id=reserved), on_conflict=["channel", "content_hash"])
    record_ids = store.ids_of(conn, intake_records, landed[["channel", "content_hash"]], reserved, inserted)
    record_id_of = dict(zip(record_ids["content_hash"], record_ids["id"], strict=True))
    landed["record_id"] = landed["content_hash"].map(record_id_of)

    order_of_record: dict[int, int | None] = {}
    if len(normal.orders):
        order_of_record = _upsert_orders(conn, normal.orders, normal.lines, landed, counts, actor, now).to_dict()

    # 4. Link accepted records to their orders.
    links = pd.DataFrame({"id": landed["record_id"].to_numpy(),
                          "order_id": [order_of_record.get(i) for i in range(n)]})
    links = links[links["order_id"].notna()]
    if len(links):
        links["order_id"] = links["order_id"].astype("int64")
        store.link_records(conn, links)
    return {int(todo[i]): order_of_record.get(i) for i in range(n)}


def _upsert_orders(conn: Connection, incoming: pd.DataFrame, lines: pd.DataFrame, landed: pd.DataFrame,
                   counts: Counts, actor: str, now: datetime) -> pd.Series:
    """New orders inserted, changed ones updated; returns the order each record ended in (by record position)."""
    incoming = incoming.copy()
    incoming["raw_record_id"] = landed["record_id"].to_numpy()[incoming["record_idx"].astype("int64").to_numpy()]
    incoming, superseded = latest_versions(incoming)

    existing = store.existing_orders(conn, incoming[["channel", "channel_order_id"]])
    merged = incoming.merge(existing.rename(columns={"content_hash": "old_hash", "id": "order_id",
                                                     "source_modified_at": "old_modified"}),
                            on=["channel", "channel_order_id"], how="left")
    is_new, unchanged, changed = compare_with_stored(merged)
    counts.unchanged += int(unchanged.sum())

    if is_new.any():
        merged = _insert_orders(conn, merged, is_new, lines, counts, actor, now)
    if changed.any():
        _apply_changes(conn, merged[changed].reset_index(drop=True), lines, counts, actor, now)
    counts.count_regions(merged[is_new | changed])

    # Which order each record ended in (superseded versions: the order their latest version went to).
    order_of_record = pd.Series(merged["order_id"].astype("int64").to_numpy(),
                                index=merged["record_idx"].astype("int64").to_numpy())
    if len(superseded):
        took = superseded[["record_idx", "channel", "channel_order_id"]].merge(
            merged[["channel", "channel_order_id", "order_id"]], on=["channel", "channel_order_id"], how="left")
        order_of_record = pd.concat([order_of_record, pd.Series(
            took["order_id"].astype("int64").to_numpy(), index=took["record_idx"].astype("int64").to_numpy())])
    counts.unchanged += len(superseded)
    return order_of_record


def _insert_orders(conn: Connection, merged: pd.DataFrame, is_new: np.ndarray, lines: pd.DataFrame,
                   counts: Counts, actor: str, now: datetime) -> pd.DataFrame:
    """Insert the new orders with their lines and 'received' events; returns ``merged`` with their ids."""
    new = merged[is_new]
    reserved = reserve_ids(conn, orders, len(new))
    rows = new[ORDER_STORE_COLUMNS].copy()
    rows.insert(0, "id", reserved)
    rows["order_no"] = order_numbers(reserved, now)
    rows["state"] = OrderState.RECEIVED.value
    rows["received_at"] = now
    rows["updated_at"] = now
    rows["raw_record_id"] = new["raw_record_id"].astype("Int64").to_numpy()
    rows["customer_id"] = store.customer_ids(conn, new["customer_phone"]).to_numpy()
    # rare_conflicts: the keys were looked up in this transaction; only a concurrent run can have inserted one.
    inserted = insert_rows(conn, orders, rows, on_conflict=["channel", "channel_order_id"], rare_conflicts=True)
    ids = store.ids_of(conn, orders, new[["channel", "channel_order_id"]], reserved, inserted)
    merged = merged.merge(ids.rename(columns={"id": "new_id"}), on=["channel", "channel_order_id"], how="left")
    merged.loc[is_new, "order_id"] = merged.loc[is_new, "new_id"]
    merged = merged.drop(columns="new_id")
    counts.new += int(inserted)
    # A key another writer inserted first (two drops holding the same order numbers, landing at once on
    # PostgreSQL) has that writer's id, not one reserved here: its lines, 'received' event and notice are theirs.
    is_new = is_new & merged["order_id"].isin(reserved).to_numpy()
    new_ids = merged.loc[is_new, ["record_idx", "order_id"]]
    store.insert_lines(conn, lines, new_ids)
    insert_rows(conn, order_events, pd.DataFrame({
        "order_id": new_ids["order_id"].astype("int64").to_numpy(),
        "occurred_at": now,
        "actor": actor,
        "kind": "state",
        "to_state": OrderState.RECEIVED.value,
        # The channel's order number is on the order itself; one text per channel keeps the event cheap.
        "reason": "received from " + merged.loc[is_new, "channel"].astype("str"),
    }))
    cancelled_new = merged.loc[is_new & merged["source_cancelled"].fillna(False).to_numpy(dtype=bool)]
    if len(cancelled_new):
        outcome = transition_orders(conn, cancelled_new["order_id"].astype("int64").tolist(),
                                    OrderState.CANCELLED, actor=actor, skip_illegal=True,
                                    reason="cancelled at the source before review")
        counts.cancelled += len(outcome.moved)
    live = set(new_ids["order_id"].astype("int64").tolist()) - set(cancelled_new["order_id"].astype("int64").tolist())
    _queue_received_notices(conn, rows[rows["id"].isin(live)])
    return merged


def _queue_received_notices(conn: Connection, new_orders: pd.DataFrame) -> int:
    """P2/T2 'received': each new order's customer is told it arrived, once (dedupe per order and medium), in the
    landing transaction. Built column-wise (contexts as JSON text in Arrow, SMS numbers checked in one pass): a bulk
    drop lands tens of thousands of orders per chunk, and a loop per order here cost a third of the ingest."""
    settings = get_settings()
    if new_orders.empty or not settings.notifications.notify_on_receipt:
        return 0
    from tasks.notifications import sms_numbers

    n = len(new_orders)
    names = new_orders["customer_name"].astype(object)
    contexts = json_object_texts({
        "order_no": new_orders["order_no"], "customer_name": names.where(names.notna(), "客户").astype(str),
        "order_total": yuan_texts(new_orders["order_total_fen"]), "company_name": settings.general.company_name,
    }, n, as_text_array=True)  # fmt: skip
    ids = new_orders["id"].astype("int64")
    frames = []
    for medium in settings.notifications.customer_media:
        # Landlines cannot take an SMS: no row rather than one that fails at the gateway.
        column = sms_numbers(new_orders["customer_phone"]) if medium == "sms" else new_orders["customer_email"]
        frames.append(pd.DataFrame({
            "order_id": ids.to_numpy(), "medium": medium,
            "recipient": column.where(column.notna(), "").astype(str).str.strip().array,
            "template": "order_received", "context": contexts,
            "dedupe_key": ("intake:received:" + ids.astype(str) + f":{medium}").array,
        }))  # fmt: skip
    return enqueue(conn, pd.concat(frames, ignore_index=True)[OUTBOX_COLUMNS])


def _apply_changes(conn: Connection, changed: pd.DataFrame, lines: pd.DataFrame, counts: Counts, actor: str,
                   now: datetime) -> None:
    old, old_lines = store.stored_orders_and_lines(conn, changed["order_id"].astype("int64").tolist())
    new_lines = lines[lines["record_idx"].astype("int64").isin(changed["record_idx"].astype("int64"))]
    store.update_orders(conn, changed, lines, now,
                        lines_changed=orders_with_changed_lines(changed, old_lines, new_lines, LINE_STORE_COLUMNS))
    counts.updated += len(changed)

    events, cancel, rereview = change_decisions(changed, old, old_lines, new_lines, actor=actor, now=now)
    record_events(conn, events)
    if cancel:
        outcome = transition_orders(conn, cancel, OrderState.CANCELLED, actor=actor, skip_illegal=True,
                                    reason="cancelled at the source")
        counts.cancelled += len(outcome.moved)
    if rereview:
        outcome = transition_orders(
            conn, [oid for oid, _ in rereview], OrderState.PENDING_REVIEW, actor=actor, skip_illegal=True,
            reason="changed at the source after review: review again",
            details=[{"changed_fields": f} for _, f in rereview],
        )
        counts.rereview += len(outcome.moved)
