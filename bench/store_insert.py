"""store_insert: bulk insert of orders into the store vs the plain driver doing the same work.

SQLite case: ``yidi.bulk.insert_rows`` into a fresh store vs plain ``sqlite3.executemany`` of the same rows (row
building from the same DataFrame included on both sides). PostgreSQL case (when it answers): ``insert_rows``
(COPY) vs a plain psycopg ``COPY … write_row`` loop.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bench import Skip

NAME = "store_insert"
DEFAULT_N = 1_000_000
TARGET = 1.5
CASES = ["sqlite", "postgresql"]
BASELINE = "plain sqlite3.executemany / psycopg COPY of the same rows"
POSTGRES_URL = os.environ.get("YIDI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

COLUMNS = [
    "order_no", "channel", "channel_order_id", "customer_name", "customer_phone", "ship_province", "ship_city",
    "ship_district", "ship_detail", "region", "payment_method", "goods_total_fen", "order_total_fen", "state",
    "order_time",
]  # fmt: skip


def make_orders(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    ids = np.arange(n)
    totals = rng.integers(1_000, 5_000_000, size=n)
    provinces = np.array(["重庆市", "四川省", "广东省", "北京市", "浙江省"])
    return pd.DataFrame(
        {
            "order_no": pd.Series(ids).map("YD{:010d}".format),
            "channel": "taobao",
            "channel_order_id": pd.Series(ids).map("T{:012d}".format),
            "customer_name": "张三",
            "customer_phone": pd.Series(rng.integers(13_000_000_000, 13_999_999_999, size=n)).astype(str),
            "ship_province": provinces[ids % 5],
            "ship_city": "某市",
            "ship_district": "某区",
            "ship_detail": "人民路1号",
            "region": np.where(ids % 5 == 0, "local", "remote"),
            "payment_method": "alipay",
            "goods_total_fen": totals,
            "order_total_fen": totals,
            "state": "received",
            "order_time": pd.Timestamp(datetime(2026, 11, 1, tzinfo=UTC))
            + pd.to_timedelta(ids % 86_400, unit="s"),
        }
    ).astype({c: "string" for c in ("order_no", "channel_order_id", "customer_phone")})


def prepare(n: int, workdir: Path, case: str | None):
    from yidi.db import init_db, make_engine

    frame = make_orders(n)
    if case == "sqlite":
        template = workdir / "template.db"
        engine = make_engine(f"sqlite:///{template}")
        init_db(engine)
        engine.dispose()
        return {"case": case, "frame": frame, "template": template, "workdir": workdir}
    try:
        admin = make_engine(POSTGRES_URL)
        with admin.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001
        raise Skip(f"PostgreSQL not available: {exc}") from None
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine = make_engine(f"{POSTGRES_URL}?options=-csearch_path%3D{schema}")
    init_db(engine)
    engine.dispose()
    return {"case": case, "frame": frame, "schema": schema}


def _fresh_sqlite(ctx) -> Path:
    target = ctx["workdir"] / f"run-{uuid.uuid4().hex[:8]}.db"
    shutil.copy(ctx["template"], target)
    return target


def ours(ctx) -> None:
    from yidi.bulk import insert_rows
    from yidi.db import make_engine
    from yidi.schema import orders

    if ctx["case"] == "sqlite":
        engine = make_engine(f"sqlite:///{_fresh_sqlite(ctx)}")
    else:
        engine = make_engine(f"{POSTGRES_URL}?options=-csearch_path%3D{ctx['schema']}")
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


def baseline(ctx) -> None:
    frame = ctx["frame"]
    column_list = ", ".join(COLUMNS)
    if ctx["case"] == "sqlite":
        conn = sqlite3.connect(_fresh_sqlite(ctx), isolation_level=None)
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
