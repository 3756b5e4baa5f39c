"""Intake's SQL: what is already landed or stored, ids of rows just inserted, cursors, order rows and lines.

Every function runs on the caller's connection, inside the caller's transaction (one per batch, see
``tasks.intake.landing``). Key lookups stage the keys in a temporary table and join: sorted keys probe the index in
order, so each index page is read once however large the batch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, delete, select, update

from tasks.intake.normalise import LINE_STORE_COLUMNS
from tasks.intake.rules import UPDATE_COLUMNS, plain_value
from yidi.bulk import ids_for_keys, insert_rows, read_frame, result_frame, stage_frame, utc_now
from yidi.schema import catalog_items, channel_cursors, customers, intake_records, order_lines, orders


def take_write_lock(conn: Connection) -> None:
    """SQLite: take the write lock now (waiting up to the busy timeout), not at the first write.

    A deferred transaction that reads and then writes fails at once with "database is locked" when another
    writer committed in between; channels are taken in parallel threads, so every batch locks first.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DELETE FROM channel_cursors WHERE 0")
        # Bulk batches probe large indexes: a bigger page cache (bounded, per connection) keeps them in memory.
        conn.exec_driver_sql("PRAGMA cache_size = -16384")


def existing_records(conn: Connection, channel: str, hashes: pd.Series) -> pd.DataFrame:
    """(content_hash, id, status) of records of ``channel`` already landed with these hashes."""
    if hashes.empty:
        return pd.DataFrame(columns=["content_hash", "id", "status"])
    keys = pd.DataFrame({"channel": channel, "content_hash": np.sort(hashes.drop_duplicates().to_numpy())})
    stage = stage_frame(conn, intake_records, keys)
    result = conn.exec_driver_sql(
        f"SELECT r.content_hash, r.id, r.status FROM intake_records r JOIN {stage} s "
        "ON r.channel = s.channel AND r.content_hash = s.content_hash"
    )
    frame = result_frame(result)
    conn.exec_driver_sql(f"DROP TABLE {stage}")
    return frame


def existing_orders(conn: Connection, keys: pd.DataFrame) -> pd.DataFrame:
    """The stored orders with these (channel, channel_order_id) keys: id, content hash, state, modified time."""
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


def ids_of(conn: Connection, table, keys: pd.DataFrame, reserved: np.ndarray, inserted: int) -> pd.DataFrame:
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


def customer_ids(conn: Connection, phones: pd.Series) -> pd.Series:
    """customers.id for phones that belong to exactly one customer (else NA)."""
    rows = conn.execute(select(customers.c.phone, customers.c.id).where(customers.c.phone.is_not(None))).all()
    if not rows:
        return pd.Series(pd.NA, index=phones.index, dtype="Int64")
    frame = pd.DataFrame(rows, columns=["phone", "id"])
    unique = frame.drop_duplicates("phone", keep=False).set_index("phone")["id"]
    return phones.map(unique).astype("Int64")


def save_cursor(conn: Connection, channel: str, cursor: str) -> None:
    insert_rows(conn, channel_cursors, pd.DataFrame({"channel": [channel], "cursor": [cursor],
                                                     "updated_at": [utc_now()]}),
                on_conflict=["channel"], update_columns=["cursor", "updated_at"])


def load_cursor(conn: Connection, channel: str) -> str | None:
    return conn.execute(select(channel_cursors.c.cursor).where(channel_cursors.c.channel == channel)).scalar()


def link_records(conn: Connection, links: pd.DataFrame) -> None:
    """Set ``intake_records.order_id`` from a frame of (id, order_id)."""
    if not len(links):
        return
    stage = stage_frame(conn, intake_records, links)
    conn.exec_driver_sql(  # UPDATE … FROM: one primary-key probe per staged row (SQLite ≥ 3.33, PostgreSQL)
        f"UPDATE intake_records SET order_id = s.order_id FROM {stage} s WHERE intake_records.id = s.id"
    )
    conn.exec_driver_sql(f"DROP TABLE {stage}")


def insert_lines(conn: Connection, lines: pd.DataFrame, owners: pd.DataFrame) -> None:
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


def stored_orders_and_lines(conn: Connection, ids: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The order rows (indexed by id) and their lines, as stored before a change."""
    old = read_frame(conn, select(orders).where(orders.c.id.in_(ids))).set_index("id")
    old_lines = read_frame(conn, select(order_lines).where(order_lines.c.order_id.in_(ids)))
    return old, old_lines


def update_orders(conn: Connection, changed: pd.DataFrame, lines: pd.DataFrame, now,
                  lines_changed: set[int] | None = None) -> None:
    """Overwrite what the channel states of changed orders (state, numbers and review data stay ours) and replace
    the lines of those in ``lines_changed`` (all when None); the version goes up by one."""
    params = []
    for row in changed[[*UPDATE_COLUMNS, "order_id", "raw_record_id"]].to_dict("records"):
        values = {c: plain_value(row[c]) for c in UPDATE_COLUMNS}
        for c in ("order_time", "source_modified_at"):
            if values[c] is not None:
                values[c] = pd.Timestamp(values[c]).to_pydatetime()
        params.append({**values, "oid": int(row["order_id"]), "rid": plain_value(row["raw_record_id"])})
    stmt = (update(orders).where(orders.c.id == bindparam("oid"))
            .values(**{c: bindparam(c) for c in UPDATE_COLUMNS}, raw_record_id=bindparam("rid"), updated_at=now,
                    version=orders.c.version + 1))
    conn.execute(stmt, params)
    replace = changed if lines_changed is None else changed[changed["order_id"].astype("int64").isin(lines_changed)]
    if replace.empty:
        return
    ids = replace["order_id"].astype("int64").tolist()
    conn.execute(delete(order_lines).where(order_lines.c.order_id.in_(ids)))
    insert_lines(conn, lines, replace[["record_idx", "order_id"]])


def replay_source(conn: Connection, record_id: int, channel: str):
    """The quarantined record to replay (a mapping); raises when it is missing, of another channel or not
    quarantined."""
    original = conn.execute(select(intake_records).where(intake_records.c.id == record_id)).mappings().first()
    if original is None:
        raise LookupError(f"intake record {record_id} does not exist")
    if original["channel"] != channel:
        raise ValueError(f"record {record_id} belongs to channel {original['channel']}, not {channel}")
    if original["status"] not in ("quarantined",):
        raise ValueError(f"record {record_id} is {original['status']}; only quarantined records are replayed")
    return original


def record_id_by_hash(conn: Connection, channel: str, content_hash: str) -> int | None:
    return conn.execute(select(intake_records.c.id).where(intake_records.c.channel == channel,
                                                          intake_records.c.content_hash == content_hash)).scalar()


def mark_replayed(conn: Connection, record_id: int) -> None:
    conn.execute(update(intake_records).where(intake_records.c.id == record_id)
                 .values(status="replayed", updated_at=utc_now()))


def discard_record(engine: Engine, record_id: int, reason: str) -> None:
    """Mark a quarantined record as dealt with outside the system (it stays stored, marked discarded)."""
    with engine.begin() as conn:
        found = conn.execute(update(intake_records).where(intake_records.c.id == record_id,
                                                          intake_records.c.status == "quarantined")
                             .values(status="discarded", reason=intake_records.c.reason + " | discarded: " + reason,
                                     updated_at=utc_now()))
        if found.rowcount != 1:
            raise ValueError(f"intake record {record_id} is not a quarantined record")
