"""ingest_pg: a 1M-order phone/fax template csv drop through our intake path on PostgreSQL vs a hand-written psycopg
COPY + upsert of the same rows.

Ours: the intake step list (``flows.intake.order_intake``, in process) on the file, on a PostgreSQL store: the same
path as ``bench/ingest.py`` (chunks of 50,000 rows, each landed as one raw record, parse, validation, phone and
address normalisation, content hashes, orders and lines upserted through ``yidi.bulk`` — staging table + MERGE —,
a 'received' event and a received notice per new order, order -> raw record links).

Baseline: ``pyarrow.csv.read_csv`` of the whole file, first non-empty value per order, the template's channel and
payment words mapped to our codes, Shanghai order times to UTC, money to fen, then plain psycopg: ``COPY`` of the
orders into a temporary staging table and ``INSERT … SELECT … ON CONFLICT (channel, channel_order_id) DO UPDATE``,
the new ids read back, the same for the lines (no landing, validation, classification, events or notices).

Parity first: both sides run once into their own schema and the orders (channel, channel's order id, customer,
phone, address but the district, which intake writes in its official name, payment, money, order time, note, state) and their lines (line number, item, quantity, prices) are
read back and compared. Each timed run empties its schema's tables first (TRUNCATE, the same on both sides).
Skipped when PostgreSQL does not answer (``YIDI_TEST_POSTGRES_URL``).

Extra figure: ``orders_per_s`` (ours).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from bench.ingest import HEADERS, make_csv
from bench.postgres import drop_schemas, new_schema, schema_url

NAME = "ingest_pg"
DEFAULT_N = 1_000_000
TARGET = 2.5
BASELINE = "pyarrow read_csv + psycopg COPY into a staging table + INSERT … ON CONFLICT upsert of orders and lines"

WRITTEN = ["intake_records", "orders", "order_lines", "order_events", "notification_outbox", "channel_cursors"]
CHANNELS = {"电话": "phone", "传真": "fax"}
PAYMENTS = {"支付宝": "alipay", "微信": "wechatpay", "银行转账": "bank_transfer", "货到付款": "cod"}
# ship_district is left out: intake writes a district's official name (酉阳县 -> 酉阳土家族苗族自治县), the
# baseline the text as typed.
ORDER_PARITY = ["channel", "channel_order_id", "customer_name", "customer_phone", "ship_province", "ship_city",
                "ship_detail", "payment_method", "freight_fen", "goods_total_fen", "order_total_fen", "order_time",
                "buyer_note", "state"]  # fmt: skip
LINE_PARITY = ["channel_order_id", "line_no", "item_code", "item_name", "spec", "model", "quantity",
               "unit_price_fen", "line_total_fen"]  # fmt: skip


def prepare(n: int, workdir: Path, case=None) -> dict:
    import flows.intake  # noqa: F401  (imported before the timed children fork, as in bench/ingest.py)
    from connectors.registry import _classes

    _classes()
    schemas = {side: new_schema(f"bench_ingest_{side}") for side in ("ours", "baseline")}
    csv_path = workdir / "orders.csv"
    make_csv(n, csv_path)
    return {"csv": csv_path, "n": n, "schemas": schemas, "workdir": workdir}


def _empty(schema: str):
    """A connection-pool engine on ``schema`` with the tables both sides write emptied (ids from 1 again)."""
    from yidi.db import make_engine

    engine = make_engine(schema_url(schema))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(WRITTEN)} RESTART IDENTITY CASCADE")
    return engine


def ours(ctx: dict) -> None:
    from flows.compose import in_process
    from flows.intake import order_intake

    os.environ.setdefault("YIDI_HOME", str(ctx["workdir"] / "home"))
    engine = _empty(ctx["schemas"]["ours"])
    results = order_intake(in_process, files=[str(ctx["csv"])], options={"spreadsheet": {"chunk_rows": 50_000}},
                           engine=engine, actor="bench")
    engine.dispose()
    summary = results[f"file:{ctx['csv']}"]
    assert not summary.get("error"), summary["error"]
    assert summary["new"] == ctx["n"] and summary["quarantined"] == 0, summary


def _first_non_empty(frame: pd.DataFrame, key: str, columns: list[str]) -> pd.DataFrame:
    return frame[[key, *columns]].replace("", None).groupby(key, sort=False).first()


def baseline(ctx: dict) -> None:
    engine = _empty(ctx["schemas"]["baseline"])
    table = pacsv.read_csv(ctx["csv"], convert_options=pacsv.ConvertOptions(
        column_types={h: pa.string() for h in HEADERS}))
    frame = table.to_pandas()
    frame["unit_price_fen"] = (pd.to_numeric(frame["单价（元）"]) * 100).round().astype("int64")
    frame["quantity"] = pd.to_numeric(frame["数量"])
    frame["line_total_fen"] = (frame["unit_price_fen"] * frame["quantity"]).round().astype("int64")
    frame["line_no"] = frame.groupby("订单号").cumcount() + 1
    goods = frame.groupby("订单号", sort=False)["line_total_fen"].sum()
    heads = frame.drop_duplicates("订单号").set_index("订单号")
    firsts = _first_non_empty(frame, "订单号", ["运费", "备注"])
    freight = (pd.to_numeric(firsts["运费"]).fillna(0) * 100).round().astype("int64")
    times = (pd.to_datetime(heads["下单时间"], format="%Y-%m-%d %H:%M").dt.tz_localize("Asia/Shanghai")
             .dt.tz_convert("UTC"))
    n = len(heads)
    orders = pd.DataFrame({
        "order_no": "B" + heads.index.to_series(),
        "channel": heads["渠道"].map(CHANNELS).to_numpy(),
        "channel_order_id": heads.index.to_numpy(),
        "customer_name": heads["客户名称"].to_numpy(),
        "customer_phone": heads["联系电话"].to_numpy(),
        "ship_province": heads["省"].to_numpy(),
        "ship_city": heads["市"].to_numpy(),
        "ship_district": heads["区县"].to_numpy(),
        "ship_detail": heads["详细地址"].to_numpy(),
        "payment_method": heads["付款方式"].map(PAYMENTS).to_numpy(),
        "freight_fen": freight.to_numpy(),
        "goods_total_fen": goods.to_numpy(),
        "order_total_fen": goods.to_numpy() + freight.to_numpy(),
        "order_time": times.dt.strftime("%Y-%m-%d %H:%M:%S+00").to_numpy(),
        "buyer_note": firsts["备注"].astype(object).where(firsts["备注"].notna(), None).to_numpy(),
        "state": np.full(n, "received"),
        "received_at": np.full(n, "2026-11-27 00:00:00+00"),
    })
    orders = orders.astype(object).where(orders.notna(), None)  # COPY writes None as NULL (NaN would be 'nan')
    order_columns = ", ".join(orders.columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in orders.columns[3:15])
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute(f"CREATE TEMPORARY TABLE stage_orders AS SELECT {order_columns} FROM orders WHERE false")
            with cursor.copy(f"COPY stage_orders ({order_columns}) FROM STDIN") as copy:
                for row in orders.itertuples(index=False, name=None):
                    copy.write_row(row)
            cursor.execute(f"INSERT INTO orders ({order_columns}) SELECT {order_columns} FROM stage_orders "
                           f"ON CONFLICT (channel, channel_order_id) DO UPDATE SET {updates}")
            cursor.execute("SELECT channel_order_id, id FROM orders")
            order_id = dict(cursor.fetchall())
            lines = pd.DataFrame({
                "order_id": frame["订单号"].map(order_id).to_numpy(), "line_no": frame["line_no"].to_numpy(),
                "item_code": frame["商品编码"].to_numpy(), "item_name": frame["商品名称"].to_numpy(),
                "spec": frame["规格"].to_numpy(), "model": frame["型号"].to_numpy(),
                "quantity": frame["quantity"].to_numpy(), "unit_price_fen": frame["unit_price_fen"].to_numpy(),
                "line_total_fen": frame["line_total_fen"].to_numpy(),
            })  # fmt: skip
            line_columns = ", ".join(lines.columns)
            cursor.execute(f"CREATE TEMPORARY TABLE stage_lines AS SELECT {line_columns} FROM order_lines WHERE false")
            with cursor.copy(f"COPY stage_lines ({line_columns}) FROM STDIN") as copy:
                for row in lines.itertuples(index=False, name=None):
                    copy.write_row(row)
            cursor.execute(f"INSERT INTO order_lines ({line_columns}) SELECT {line_columns} FROM stage_lines "
                           "ON CONFLICT (order_id, line_no) DO UPDATE SET item_code = excluded.item_code, "
                           "quantity = excluded.quantity, unit_price_fen = excluded.unit_price_fen, "
                           "line_total_fen = excluded.line_total_fen")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()


def _stored(schema: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from yidi.db import make_engine

    engine = make_engine(schema_url(schema))
    with engine.connect() as conn:
        orders = pd.read_sql(f"SELECT {', '.join(ORDER_PARITY)} FROM orders", conn)
        lines = pd.read_sql(f"SELECT o.channel_order_id, {', '.join('l.' + c for c in LINE_PARITY[1:])} "
                            "FROM order_lines l JOIN orders o ON o.id = l.order_id", conn)
    engine.dispose()
    orders["order_time"] = pd.to_datetime(orders["order_time"], utc=True)
    orders = orders.sort_values("channel_order_id").reset_index(drop=True)
    lines = lines.sort_values(["channel_order_id", "line_no"]).reset_index(drop=True)
    return orders, lines


def parity(ctx: dict) -> None:
    """Both sides once; the same orders and lines stored (AssertionError names the first difference)."""
    ours(ctx)
    baseline(ctx)
    (our_orders, our_lines), (their_orders, their_lines) = _stored(ctx["schemas"]["ours"]), _stored(
        ctx["schemas"]["baseline"])
    assert len(our_orders) == len(their_orders) == ctx["n"], (len(our_orders), len(their_orders))
    for name, mine, theirs in (("orders", our_orders, their_orders), ("order_lines", our_lines, their_lines)):
        for column in mine.columns:
            a, b = mine[column].astype(object), theirs[column].astype(object)
            same = (a.isna() & b.isna()) | (a == b).fillna(False).astype(bool)
            differs = np.flatnonzero(~same.to_numpy(dtype=bool))
            assert not len(differs), (f"{name}.{column} differs at {len(differs)} rows, first: "
                                      f"{mine.iloc[differs[0]].to_dict()} vs {theirs.iloc[differs[0]].to_dict()}")


def extra(ctx: dict) -> dict:
    import time

    started = time.perf_counter()
    ours(ctx)
    seconds = time.perf_counter() - started
    drop_schemas(*ctx["schemas"].values())
    return {"orders_per_s": round(ctx["n"] / seconds)}
