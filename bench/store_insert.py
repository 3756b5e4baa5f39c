"""store_insert: bulk insert of orders into the store vs the plain driver doing the same work.

SQLite case: ``yidi.bulk.insert_rows`` into a fresh store vs plain ``sqlite3.executemany`` of the same rows (row
building from the same DataFrame included on both sides). PostgreSQL case (when it answers): ``insert_rows``
(COPY) vs a plain psycopg ``COPY … write_row`` loop.

Data: ``bench.shapes.real_orders``, where every column varies as in real orders (no constant column that one side
could write as a literal). Parity: both sides' stored rows are read back and compared before timing.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path

import pandas as pd

from bench.postgres import POSTGRES_URL, new_schema, schema_url

NAME = "store_insert"
DEFAULT_N = 1_000_000
TARGET = 1.2
CASES = ["sqlite", "postgresql"]
BASELINE = "plain sqlite3.executemany / psycopg COPY of the same rows"

COLUMNS = [
    "order_no", "channel", "channel_order_id", "customer_name", "customer_phone", "ship_province", "ship_city",
    "ship_district", "ship_detail", "region", "payment_method", "goods_total_fen", "order_total_fen", "state",
    "order_time",
]  # fmt: skip


def make_orders(n: int) -> pd.DataFrame:
    from bench.shapes import real_orders

    return real_orders(n)[COLUMNS]


def prepare(n: int, workdir: Path, case: str | None):
    from yidi.db import init_db, make_engine

    frame = make_orders(n)
    if case == "sqlite":
        template = workdir / "template.db"
        engine = make_engine(f"sqlite:///{template}")
        init_db(engine)
        engine.dispose()
        return {"case": case, "frame": frame, "template": template, "workdir": workdir}
    return {"case": case, "frame": frame, "schema": new_schema("bench")}


def _fresh_sqlite(ctx) -> Path:
    target = ctx["workdir"] / f"run-{uuid.uuid4().hex[:8]}.db"
    shutil.copy(ctx["template"], target)
    return target


def ours(ctx, target: Path | None = None) -> None:
    from yidi.bulk import insert_rows
    from yidi.db import make_engine
    from yidi.schema import orders

    if ctx["case"] == "sqlite":
        engine = make_engine(f"sqlite:///{target or _fresh_sqlite(ctx)}")
    else:
        engine = make_engine(schema_url(ctx["schema"]))
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE orders CASCADE")
    with engine.begin() as conn:
        insert_rows(conn, orders, ctx["frame"][COLUMNS])
    engine.dispose()


def _plain_rows(frame: pd.DataFrame, sqlite_times: bool) -> list[tuple]:
    times = frame["order_time"]
    if sqlite_times:
        times = times.dt.tz_localize(None).dt.strftime("%Y-%m-%d %H:%M:%S.%f")
    columns = [frame[c].tolist() for c in COLUMNS[:-1]] + [times.tolist()]
    return list(zip(*columns, strict=True))


def baseline(ctx, target: Path | None = None) -> None:
    frame = ctx["frame"]
    column_list = ", ".join(COLUMNS)
    if ctx["case"] == "sqlite":
        conn = sqlite3.connect(target or _fresh_sqlite(ctx), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN")
        conn.executemany(
            f"INSERT INTO orders ({column_list}) VALUES ({', '.join('?' for _ in COLUMNS)})",
            _plain_rows(frame, sqlite_times=True),
        )
        conn.execute("COMMIT")
        conn.close()
        return
    import psycopg

    with psycopg.connect(POSTGRES_URL, options=f"-csearch_path={ctx['schema']}") as conn:
        conn.execute("TRUNCATE orders CASCADE")
        with conn.cursor() as cursor, cursor.copy(f"COPY orders ({column_list}) FROM STDIN") as copy:
            for row in _plain_rows(frame, sqlite_times=False):
                copy.write_row(row)


def _stored(ctx, target: Path | None) -> pd.DataFrame:
    """The orders as stored, read back the same way for either side (times as UTC instants)."""
    from yidi.db import make_engine

    url = f"sqlite:///{target}" if target else schema_url(ctx["schema"])
    engine = make_engine(url)
    with engine.connect() as conn:
        frame = pd.read_sql(f"SELECT {', '.join(COLUMNS)} FROM orders ORDER BY order_no", conn)
    engine.dispose()
    times = pd.to_datetime(frame["order_time"])
    frame["order_time"] = times.dt.tz_localize("UTC") if times.dt.tz is None else times.dt.tz_convert("UTC")
    return frame.astype(str)


def parity(ctx) -> None:
    if ctx["case"] == "sqlite":
        mine, theirs = _fresh_sqlite(ctx), _fresh_sqlite(ctx)
        ours(ctx, mine)
        baseline(ctx, theirs)
        a, b = _stored(ctx, mine), _stored(ctx, theirs)
    else:
        ours(ctx)
        a = _stored(ctx, None)
        baseline(ctx)
        b = _stored(ctx, None)
    assert len(a) == len(ctx["frame"]), f"ours stored {len(a)} of {len(ctx['frame'])} rows"
    diff = (a != b).any(axis=0)
    assert not diff.any(), f"stored rows differ in {list(diff[diff].index)}: {a[(a != b).any(axis=1)].head(2)}"
