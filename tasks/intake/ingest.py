"""Landing, quarantine and idempotent upsert of channel batches (requirements I3, I4, P3).

Per batch, in one transaction:

1. Raw records land in ``intake_records`` (channel, source, content, sha256). A record whose content was already
   landed (same channel and hash: a duplicate delivery, an overlapping window, a re-dropped file) is not processed
   again. A bulk drop (a csv of thousands of orders) lands each chunk as one record instead, and only its
   quarantined orders as records of their own: a million-order file is not a million raw rows to write and index.
2. New records are parsed and normalised. One that cannot be understood is stored ``quarantined`` with a reason a
   person can act on (``yidi quarantine list|show|replay``); it never stops the rest of the batch.
3. Orders are upserted by their natural key ``(channel, channel_order_id)``: new → inserted with a 'received'
   event; same content hash → nothing written; changed → updated, lines replaced, a 'change' event lists the
   changed fields, and an order already reviewed goes back to ``pending_review`` (cancelled at the source →
   ``cancelled`` where the lifecycle allows). An older version arriving late never overwrites a newer one.
4. The channel's cursor is saved in ``channel_cursors`` in the same transaction, so it advances only with the data.

After the commit the batch's ``on_commit`` hook runs (mark mail read, move the file). A crash before it re-reads
the same records next time: they are found landed and skipped — no loss, no duplicate.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, delete, select, update

from connectors.base import RECORD_COLUMNS, Batch, BulkChunk, Connector, Parsed, content_hash
from tasks.intake.normalise import (
    LINE_STORE_COLUMNS,
    ORDER_STORE_COLUMNS,
    Normalised,
    normalise,
    order_numbers,
)
from yidi.bulk import ids_for_keys, insert_rows, read_frame, reserve_ids, result_frame, stage_frame
from yidi.lifecycle import LEGAL_TRANSITIONS, OrderState, current_actor, record_events, transition_orders
from yidi.schema import (
    catalog_items,
    channel_cursors,
    customers,
    intake_records,
    order_events,
    order_lines,
    orders,
)

log = logging.getLogger(__name__)

# Fields whose change means the order must be reviewed again (status/notes alone do not).
REVIEW_FIELDS = [
    "customer_name", "customer_phone", "customer_email", "ship_province", "ship_city", "ship_district",
    "ship_detail", "ship_admin_code", "ship_postcode", "region", "payment_method", "installments", "currency",
    "goods_total_fen", "discount_fen", "freight_fen", "order_total_fen",
]  # fmt: skip
UPDATE_COLUMNS = [c for c in ORDER_STORE_COLUMNS if c not in ("channel", "channel_order_id")]
REVIEWED_STATES = {OrderState.APPROVED, OrderState.REJECTED, OrderState.AUTO_REJECTED, OrderState.ALLOCATED,
                   OrderState.BACKORDERED}


@dataclass
class Counts:
    read: int = 0  # raw records received from the channel
    new: int = 0  # orders created
    updated: int = 0  # orders changed
    unchanged: int = 0  # records already landed, or orders whose content did not change
    quarantined: int = 0  # records that could not be understood (new ones)
    cancelled: int = 0  # orders cancelled because the source cancelled them
    rereview: int = 0  # reviewed orders sent back to review by a change
    remote: int = 0  # of the new and updated orders
    local: int = 0
    unknown: int = 0
    reasons: list[str] = field(default_factory=list)  # the first few quarantine reasons

    def add(self, other: Counts) -> None:
        for key, value in asdict(other).items():
            if key == "reasons":
                self.reasons.extend(value[: max(5 - len(self.reasons), 0)])
            else:
                setattr(self, key, getattr(self, key) + value)


@dataclass
class ChannelSummary(Counts):
    channel: str = ""
    batches: int = 0
    error: str | None = None


# ---------------------------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _clean_content(records: pd.DataFrame) -> pd.DataFrame:
    """PostgreSQL text cannot hold NUL: store it visibly replaced (the hash keeps the original bytes)."""
    if records["content"].dtype == object:  # a few large texts (bulk chunks): checked as they are
        if any("\x00" in text for text in records["content"]):
            records = records.copy()
            records["content"] = [text.replace("\x00", "\ufffd") for text in records["content"]]
        return records
    content = records["content"].astype("str")
    if content.str.contains("\x00", regex=False).any():
        records = records.copy()
        records["content"] = content.str.replace("\x00", "\ufffd", regex=False)
    return records


def _existing_records(conn: Connection, channel: str, hashes: pd.Series) -> pd.DataFrame:
    """(content_hash, id, status) of records of ``channel`` already landed with these hashes."""
    if hashes.empty:
        return pd.DataFrame(columns=["content_hash", "id", "status"])
    # Sorted keys probe the index in order: each index page is read once.
    keys = pd.DataFrame({"channel": channel, "content_hash": np.sort(hashes.drop_duplicates().to_numpy())})
    stage = stage_frame(conn, intake_records, keys)
    result = conn.exec_driver_sql(
        f"SELECT r.content_hash, r.id, r.status FROM intake_records r JOIN {stage} s "
        "ON r.channel = s.channel AND r.content_hash = s.content_hash"
    )
    frame = result_frame(result)
    conn.exec_driver_sql(f"DROP TABLE {stage}")
    return frame


def _existing_orders(conn: Connection, keys: pd.DataFrame) -> pd.DataFrame:
    columns = ["channel", "channel_order_id", "id", "content_hash", "state", "source_modified_at"]
    if keys.empty:
        return pd.DataFrame(columns=columns)
    stage = stage_frame(conn, orders, keys[["channel", "channel_order_id"]].drop_duplicates()
                        .sort_values(["channel", "channel_order_id"]))
    result = conn.exec_driver_sql(
        f"SELECT o.channel, o.channel_order_id, o.id, o.content_hash, o.state, o.source_modified_at "
        f"FROM orders o JOIN {stage} s ON o.channel = s.channel AND o.channel_order_id = s.channel_order_id"
    )
    frame = result_frame(result)
    conn.exec_driver_sql(f"DROP TABLE {stage}")
    frame["source_modified_at"] = pd.to_datetime(frame["source_modified_at"], utc=True, format="mixed")
    return frame


def _ids_of(conn: Connection, table, keys: pd.DataFrame, reserved: np.ndarray, inserted: int) -> pd.DataFrame:
    """``keys`` + ``id`` of rows just inserted with the ``reserved`` ids (in the order of ``keys``). When fewer rows
    were inserted (a concurrent writer on PostgreSQL inserted some keys first), every key is looked up."""
    keys = keys.reset_index(drop=True)
    if inserted == len(keys):
        return keys.assign(id=reserved)
    key_columns = list(keys.columns)
    columns = ", ".join(key_columns)
    before = int(reserved[0]) - 1
    result = conn.exec_driver_sql(f"SELECT {columns}, id FROM {table.name} WHERE id > ?" if
                                  conn.dialect.name == "sqlite" else
                                  f"SELECT {columns}, id FROM {table.name} WHERE id > %(before)s",
                                  (before,) if conn.dialect.name == "sqlite" else {"before": before})
    found = result_frame(result)
    wanted = keys.drop_duplicates()
    merged = wanted.merge(found, on=key_columns, how="left")
    missing = merged[merged["id"].isna()][key_columns]
    if len(missing):
        extra = ids_for_keys(conn, table, missing)
        merged = pd.concat([merged[merged["id"].notna()], extra], ignore_index=True)
    merged["id"] = merged["id"].astype("int64")
    return merged


def catalog_kinds(conn: Connection) -> dict[str, str]:
    return dict(conn.execute(select(catalog_items.c.code, catalog_items.c.kind)).all())


def _customer_ids(conn: Connection, phones: pd.Series) -> pd.Series:
    """customers.id for phones that belong to exactly one customer (else NA)."""
    rows = conn.execute(select(customers.c.phone, customers.c.id).where(customers.c.phone.is_not(None))).all()
    if not rows:
        return pd.Series(pd.NA, index=phones.index, dtype="Int64")
    frame = pd.DataFrame(rows, columns=["phone", "id"])
    unique = frame.drop_duplicates("phone", keep=False).set_index("phone")["id"]
    return phones.map(unique).astype("Int64")


def save_cursor(conn: Connection, channel: str, cursor: str) -> None:
    insert_rows(conn, channel_cursors, pd.DataFrame({"channel": [channel], "cursor": [cursor],
                                                     "updated_at": [_now()]}),
                on_conflict=["channel"], update_columns=["cursor", "updated_at"])


def load_cursor(conn: Connection, channel: str) -> str | None:
    return conn.execute(select(channel_cursors.c.cursor).where(channel_cursors.c.channel == channel)).scalar()


def _subset_parsed(parsed: Parsed, positions: np.ndarray) -> Parsed:
    """The parse restricted to records at ``positions`` (renumbered 0..n-1 in that order)."""
    remap = pd.Series(np.arange(len(positions)), index=positions)
    out = []
    for frame in (parsed.orders, parsed.lines, parsed.problems):
        idx = frame["record_idx"].astype("int64")
        kept = frame[idx.isin(remap.index)].copy()
        kept["record_idx"] = idx[idx.isin(remap.index)].map(remap).to_numpy()
        out.append(kept.reset_index(drop=True))
    return Parsed(*out)


# ---------------------------------------------------------------------------------------------------------------


def take_write_lock(conn: Connection) -> None:
    """SQLite: take the write lock now (waiting up to the busy timeout), not at the first write.

    A deferred transaction that reads and then writes fails at once with "database is locked" when another
    writer committed in between; channels ingest in parallel threads, so every batch locks first.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DELETE FROM channel_cursors WHERE 0")
        # Bulk batches probe large indexes: a bigger page cache (bounded, per connection) keeps them in memory.
        conn.exec_driver_sql("PRAGMA cache_size = -16384")


def ingest_batch(engine: Engine, connector: Connector, batch: Batch, *, actor: str | None = None) -> Counts:
    """Land, parse, normalise and upsert one batch in one transaction; returns what happened."""
    actor = actor or current_actor()
    with engine.begin() as conn:
        take_write_lock(conn)
        if batch.bulk is not None:
            counts = Counts(read=batch.bulk.size)
            _process_chunk(conn, connector, batch.bulk, batch.parsed, counts, actor)
        else:
            counts = Counts(read=len(batch.records))
            records = _clean_content(batch.records[RECORD_COLUMNS].reset_index(drop=True))
            if len(records):
                _process(conn, connector, records, batch.parsed, counts, actor)
        if batch.cursor is not None:
            save_cursor(conn, connector.name, batch.cursor)
    if batch.on_commit is not None:
        batch.on_commit()
    return counts


def _outcomes(conn: Connection, parsed: Parsed, n: int, counts: Counts) -> tuple[Normalised, np.ndarray,
                                                                                  np.ndarray]:
    """Normalise a parse of ``n`` records: (normalised orders, status and reason per record)."""
    normal: Normalised = normalise(parsed, catalog_kinds=catalog_kinds(conn))
    problems = pd.concat([parsed.problems, normal.problems], ignore_index=True)
    status = np.full(n, "accepted", dtype=object)
    reason = np.full(n, None, dtype=object)
    no_order = np.ones(n, dtype=bool)
    no_order[normal.orders["record_idx"].astype("int64").to_numpy()] = False
    status[no_order] = "quarantined"
    reason[no_order] = "no order was found in this record"
    if len(problems):
        reasons = problems.groupby(problems["record_idx"].astype("int64"))["reason"].agg(
            lambda r: "; ".join(dict.fromkeys(r)))
        at = reasons.index.to_numpy()
        status[at] = "quarantined"
        reason[at] = reasons.to_numpy(dtype=object)
    counts.reasons.extend([str(r)[:300] for r in reason[status == "quarantined"][: max(5 - len(counts.reasons), 0)]])
    return normal, status, reason


def _process_chunk(conn: Connection, connector: Connector, bulk: BulkChunk, parsed, counts: Counts,
                   actor: str) -> None:
    """A chunk of a bulk drop: the chunk lands as one record, its quarantined orders as records of their own."""
    channel = connector.name
    now = _now()
    chunk = _clean_content(bulk.record[RECORD_COLUMNS].reset_index(drop=True))
    if len(_existing_records(conn, channel, chunk["content_hash"])):
        counts.unchanged += bulk.size  # the same chunk was landed before (a re-dropped file)
        return
    parsed = parsed(None) if callable(parsed) else parsed
    normal, status, reason = _outcomes(conn, parsed, bulk.size, counts)
    bad = np.flatnonzero(status == "quarantined")

    chunk_id = int(reserve_ids(conn, intake_records, 1)[0])
    note = f"bulk drop chunk: {bulk.size:,} orders; {len(bad):,} of them quarantined as records of their own"
    if not insert_rows(conn, intake_records, chunk.assign(id=chunk_id, channel=channel, status="accepted",
                                                          reason=note, received_at=now, updated_at=now),
                       on_conflict=["channel", "content_hash"]):
        counts.unchanged += bulk.size  # a concurrent run landed the same chunk (PostgreSQL waited for it)
        return
    if len(bad):
        own = _clean_content(bulk.records_at(bad)).assign(channel=channel, status="quarantined", reason=reason[bad],
                                                         received_at=now, updated_at=now)
        fresh = ~own["content_hash"].duplicated() & ~own["content_hash"].isin(
            set(_existing_records(conn, channel, own["content_hash"])["content_hash"]))
        insert_rows(conn, intake_records, own[fresh.to_numpy()], on_conflict=["channel", "content_hash"])
        counts.quarantined += int(fresh.sum())
        counts.unchanged += int((~fresh).sum())
    if len(normal.orders):
        landed = pd.DataFrame({"record_id": np.full(bulk.size, chunk_id, dtype=np.int64)})
        _upsert_orders(conn, normal.orders, normal.lines, landed, counts, actor, now)


def _process(conn: Connection, connector: Connector, records: pd.DataFrame, parsed: Parsed | None,
             counts: Counts, actor: str, replay_of: dict[int, int] | None = None) -> dict[int, int | None]:
    """Returns {position in records: order id or None} for the records processed."""
    channel = connector.name
    now = _now()
    # 1. Skip contents already landed (and repeats inside the batch).
    first_seen = ~records["content_hash"].duplicated(keep="first")
    existing = _existing_records(conn, channel, records["content_hash"])
    known = records["content_hash"].isin(set(existing["content_hash"]))
    todo = np.flatnonzero((first_seen & ~known).to_numpy())
    counts.unchanged += len(records) - len(todo)
    if not len(todo):
        return {}
    work = records.iloc[todo].reset_index(drop=True)
    if callable(parsed):
        parsed = _subset_parsed(parsed(todo), todo)
    elif parsed is not None:
        parsed = _subset_parsed(parsed, todo)
    else:
        parsed = connector.parse(work)

    # 2. Normalise; gather every record's problems.
    n = len(work)
    normal, status, reason = _outcomes(conn, parsed, n, counts)
    counts.quarantined += int((status == "quarantined").sum())

    # 3. Land the raw records (with their outcome) and learn their ids.
    landed = work.assign(channel=channel, status=status, reason=reason, received_at=now, updated_at=now)
    if replay_of:
        landed["replay_of"] = pd.array([replay_of.get(i) for i in range(n)], dtype="Int64")
    reserved = reserve_ids(conn, intake_records, n)
    inserted = insert_rows(conn, intake_records, landed.assign(id=reserved), on_conflict=["channel", "content_hash"])
    record_ids = _ids_of(conn, intake_records, landed[["channel", "content_hash"]], reserved, inserted)
    record_id_of = dict(zip(record_ids["content_hash"], record_ids["id"], strict=True))
    landed["record_id"] = landed["content_hash"].map(record_id_of)

    orders_in = normal.orders
    order_of_record: dict[int, int | None] = {}
    if len(orders_in):
        order_of_record = _upsert_orders(conn, orders_in, normal.lines, landed, counts, actor, now).to_dict()

    # 4. Link accepted records to their orders.
    links = pd.DataFrame({"id": landed["record_id"].to_numpy(),
                          "order_id": [order_of_record.get(i) for i in range(n)]})
    links = links[links["order_id"].notna()]
    if len(links):
        links["order_id"] = links["order_id"].astype("int64")
        stage = stage_frame(conn, intake_records, links)
        conn.exec_driver_sql(  # UPDATE … FROM: one primary-key probe per staged row (SQLite ≥ 3.33, PostgreSQL)
            f"UPDATE intake_records SET order_id = s.order_id FROM {stage} s WHERE intake_records.id = s.id"
        )
        conn.exec_driver_sql(f"DROP TABLE {stage}")
    return {int(todo[i]): order_of_record.get(i) for i in range(n)}


def _upsert_orders(conn: Connection, incoming: pd.DataFrame, lines: pd.DataFrame, landed: pd.DataFrame,
                   counts: Counts, actor: str, now: datetime) -> pd.Series:
    incoming = incoming.copy()
    incoming["raw_record_id"] = landed["record_id"].to_numpy()[incoming["record_idx"].astype("int64").to_numpy()]
    # Several versions of one order in the batch: the latest (by source modified time, then arrival) wins.
    incoming["_pos"] = np.arange(len(incoming))
    incoming = incoming.sort_values(["source_modified_at", "_pos"], kind="stable", na_position="first")
    latest_mask = ~incoming.duplicated(["channel", "channel_order_id"], keep="last")
    superseded = incoming[~latest_mask]
    incoming = incoming[latest_mask].sort_values("_pos").reset_index(drop=True)

    existing = _existing_orders(conn, incoming[["channel", "channel_order_id"]])
    merged = incoming.merge(existing.rename(columns={"content_hash": "old_hash", "id": "order_id",
                                                     "source_modified_at": "old_modified"}),
                            on=["channel", "channel_order_id"], how="left")
    is_new = merged["order_id"].isna().to_numpy()
    same = (merged["old_hash"] == merged["content_hash"]).to_numpy(dtype=bool, na_value=False)
    stale = (merged["old_modified"].notna() & merged["source_modified_at"].notna()
             & (merged["source_modified_at"] < merged["old_modified"])).to_numpy(dtype=bool, na_value=False)
    changed = ~is_new & ~same & ~stale
    counts.unchanged += int((~is_new & (same | stale)).sum())

    # New orders.
    new = merged[is_new]
    if len(new):
        reserved = reserve_ids(conn, orders, len(new))
        rows = new[ORDER_STORE_COLUMNS].copy()
        rows.insert(0, "id", reserved)
        rows["order_no"] = order_numbers(reserved, now)
        rows["state"] = OrderState.RECEIVED.value
        rows["received_at"] = now
        rows["updated_at"] = now
        rows["raw_record_id"] = new["raw_record_id"].astype("Int64").to_numpy()
        rows["customer_id"] = _customer_ids(conn, new["customer_phone"]).to_numpy()
        inserted = insert_rows(conn, orders, rows, on_conflict=["channel", "channel_order_id"])
        ids = _ids_of(conn, orders, new[["channel", "channel_order_id"]], reserved, inserted)
        merged = merged.merge(ids.rename(columns={"id": "new_id"}), on=["channel", "channel_order_id"], how="left")
        merged.loc[is_new, "order_id"] = merged.loc[is_new, "new_id"]
        merged = merged.drop(columns="new_id")
        counts.new += int(inserted)
        new_ids = merged.loc[is_new, ["record_idx", "order_id"]]
        _insert_lines(conn, lines, new_ids)
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

    # Changed orders.
    if changed.any():
        _apply_changes(conn, merged[changed].reset_index(drop=True), lines, counts, actor, now)

    stored = merged[is_new | changed]
    for region in ("remote", "local", "unknown"):
        setattr(counts, region, getattr(counts, region) + int((stored["region"] == region).sum()))

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


def _insert_lines(conn: Connection, lines: pd.DataFrame, owners: pd.DataFrame) -> None:
    """Lines of the given records (record_idx -> order_id)."""
    if owners.empty:
        return
    owner = pd.Series(owners["order_id"].astype("int64").to_numpy(), index=owners["record_idx"].astype("int64"))
    mine = lines[lines["record_idx"].astype("int64").isin(owner.index)]
    if mine.empty:
        return
    rows = mine[LINE_STORE_COLUMNS].copy()
    rows["order_id"] = mine["record_idx"].astype("int64").map(owner).to_numpy()
    insert_rows(conn, order_lines, rows)


def _json_value(value):
    if value is None or (not isinstance(value, list | dict) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _apply_changes(conn: Connection, changed: pd.DataFrame, lines: pd.DataFrame, counts: Counts, actor: str,
                   now: datetime) -> None:
    ids = changed["order_id"].astype("int64").tolist()
    old = read_frame(conn, select(orders).where(orders.c.id.in_(ids))).set_index("id")
    old_lines = read_frame(conn, select(order_lines).where(order_lines.c.order_id.in_(ids)))

    # Update the order rows (only what the channel states; state, numbers and review data stay ours).
    params = []
    for row in changed[[*UPDATE_COLUMNS, "order_id", "raw_record_id"]].to_dict("records"):
        values = {c: _json_value(row[c]) for c in UPDATE_COLUMNS}
        for c in ("order_time", "source_modified_at"):
            if values[c] is not None:
                values[c] = pd.Timestamp(values[c]).to_pydatetime()
        params.append({**values, "oid": int(row["order_id"]), "rid": _json_value(row["raw_record_id"])})
    stmt = (update(orders).where(orders.c.id == bindparam("oid"))
            .values(**{c: bindparam(c) for c in UPDATE_COLUMNS}, raw_record_id=bindparam("rid"), updated_at=now,
                    version=orders.c.version + 1))
    conn.execute(stmt, params)
    conn.execute(delete(order_lines).where(order_lines.c.order_id.in_(ids)))
    _insert_lines(conn, lines, changed[["record_idx", "order_id"]])
    counts.updated += len(changed)

    # Change events: which fields changed (old -> new), and whether the lines did.
    new_lines = lines[lines["record_idx"].astype("int64").isin(changed["record_idx"].astype("int64"))]
    events, rereview, cancel = [], [], []
    for row in changed.to_dict("records"):
        oid = int(row["order_id"])
        before = old.loc[oid]
        diff = {}
        for column in UPDATE_COLUMNS:
            if column in ("content_hash", "source_modified_at"):
                continue
            a, b = _json_value(before[column]), _json_value(row[column])
            if isinstance(a, datetime) and b is not None:
                b = pd.Timestamp(b).to_pydatetime()
            if a != b and not (a is None and b is None):
                diff[column] = [a, b]
        was = old_lines[old_lines["order_id"] == oid].sort_values("line_no")
        now_lines = new_lines[new_lines["record_idx"].astype("int64") == int(row["record_idx"])].sort_values("line_no")
        line_key = ["item_code", "quantity", "unit_price_fen", "discount_fen", "line_total_fen"]
        before_lines = [tuple(_json_value(v) for v in r) for r in was[line_key].itertuples(index=False)]
        after_lines = [tuple(_json_value(v) for v in r) for r in now_lines[line_key].itertuples(index=False)]
        if before_lines != after_lines:
            diff["lines"] = [[list(x) for x in before_lines], [list(x) for x in after_lines]]
        extra = row.get("source_extra")
        if isinstance(extra, str) and extra:
            diff["source_extra"] = json.loads(extra)
        fields = [k for k in diff if k != "source_extra"]
        status_change = f" (status {before['source_status']} → {row['source_status']})" \
            if before["source_status"] != row["source_status"] else ""
        events.append({"order_id": oid, "kind": "change", "actor": actor, "occurred_at": now,
                       "reason": f"changed at the source: {', '.join(fields) or 'details'}{status_change}",
                       "details": diff})
        state = OrderState(before["state"])
        if bool(row.get("source_cancelled")) and OrderState.CANCELLED in LEGAL_TRANSITIONS[state]:
            cancel.append(oid)
        elif state in REVIEWED_STATES and any(f in diff for f in [*REVIEW_FIELDS, "lines"]):
            rereview.append((oid, fields))
    record_events(conn, pd.DataFrame(events))
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


# ---------------------------------------------------------------------------------------------------------------


def run_channel(engine: Engine, connector: Connector, *, actor: str | None = None,
                on_batch: Callable[[Batch, Counts], None] | None = None) -> ChannelSummary:
    """Pull every batch the channel has from the stored cursor on; each batch commits on its own."""
    summary = ChannelSummary(channel=connector.name)
    with engine.connect() as conn:
        cursor = load_cursor(conn, connector.name)
    try:
        for batch in connector.fetch(cursor):
            counts = ingest_batch(engine, connector, batch, actor=actor)
            summary.add(counts)
            summary.batches += 1
            if on_batch is not None:
                on_batch(batch, counts)
            log.info("%s %s: %s", connector.name, batch.label, counts)
    finally:
        connector.close()
    return summary


def replay_record(engine: Engine, connector: Connector, record_id: int, content: str | None = None,
                  *, actor: str | None = None) -> tuple[int, Counts, dict[int, int | None]]:
    """Replay a quarantined record (optionally with corrected content) through the same path.

    The replay lands as a new record pointing at the original (``replay_of``); the original becomes 'replayed'
    when the replay is accepted. Returns (new record id, counts, {0: order id}).
    """
    actor = actor or current_actor()
    with engine.begin() as conn:
        take_write_lock(conn)
        original = conn.execute(select(intake_records).where(intake_records.c.id == record_id)).mappings().first()
        if original is None:
            raise LookupError(f"intake record {record_id} does not exist")
        if original["channel"] != connector.name:
            raise ValueError(f"record {record_id} belongs to channel {original['channel']}, not {connector.name}")
        if original["status"] not in ("quarantined",):
            raise ValueError(f"record {record_id} is {original['status']}; only quarantined records are replayed")
        text = original["content"] if content is None else content
        # A replay's hash also covers the replay itself, so the same content (replayed after a catalog or code
        # fix) lands as a record of its own next to the original.
        attempt = _now().isoformat()
        records = pd.DataFrame({
            "source_ref": [f"replay of {record_id} at {attempt}: {original['source_ref'] or ''}"[:500]],
            "source_key": [original["source_key"]],
            "content": [text],
            "content_type": [original["content_type"]],
            "content_hash": [content_hash(f"{text}\x00replay-of:{record_id}@{attempt}")],
        })
        counts = Counts(read=1)
        outcome = _process(conn, connector, _clean_content(records), None, counts, actor,
                           replay_of={0: record_id})
        new_id = conn.execute(select(intake_records.c.id).where(
            intake_records.c.channel == connector.name,
            intake_records.c.content_hash == records["content_hash"][0])).scalar()
        if new_id is not None and counts.quarantined == 0:
            conn.execute(update(intake_records).where(intake_records.c.id == record_id)
                         .values(status="replayed", updated_at=_now()))
    return new_id, counts, outcome


def discard_record(engine: Engine, record_id: int, reason: str) -> None:
    with engine.begin() as conn:
        found = conn.execute(update(intake_records).where(intake_records.c.id == record_id,
                                                          intake_records.c.status == "quarantined")
                             .values(status="discarded", reason=intake_records.c.reason + " | discarded: " + reason,
                                     updated_at=_now()))
        if found.rowcount != 1:
            raise ValueError(f"intake record {record_id} is not a quarantined record")


__all__ = ["Counts", "ChannelSummary", "ingest_batch", "run_channel", "replay_record", "discard_record"]
