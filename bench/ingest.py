"""ingest: a 1M-order phone/fax template csv drop ingested end to end vs a hand-written pyarrow + sqlite3 load.

Ours: the intake step list (``flows.intake.order_intake``, in process) on the file — ``SpreadsheetConnector`` +
``tasks.intake.landing.run_channel`` on a fresh SQLite store: streaming csv read in chunks of 50,000 rows, encoding
check, each chunk landed as one raw record in ``intake_records`` (sha256; orders that cannot be understood get
records of their own), parse and validation, phone normalisation, address classification
(remote/local/unknown), content hashes, upsert of orders and lines by (channel, channel order id), a 'received'
event per new order, order -> raw record links.

Baseline: ``pyarrow.csv.read_csv`` of the whole file, first row per order, money to fen, then plain
``sqlite3.executemany`` ``INSERT … ON CONFLICT DO UPDATE`` of the orders and of their lines into the same schema
(no landing, no validation, no normalisation, no classification, no events).

Extra figures: ``reingest_s`` (the same file again: every chunk already landed, nothing parsed or written) and
``reingest_ratio`` (< 1 means re-ingest is faster than the first ingest); ``peak_mb_quarter`` (our peak memory for
a file a quarter the size: chunking keeps the peak flat, so it is close to ``peak_mb``).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

NAME = "ingest"
DEFAULT_N = 1_000_000
TARGET = 2.5
BASELINE = "pyarrow read_csv + sqlite3 executemany upsert of orders and lines (no landing/validation/classification)"

HEADERS = ["订单号", "渠道", "下单时间", "客户名称", "联系电话", "省", "市", "区县", "详细地址", "商品编码", "商品名称",
           "规格", "型号", "数量", "单价（元）", "运费", "付款方式", "备注"]


def make_csv(n: int, path: Path, seed: int = 3) -> None:
    """``n`` orders, one row per line (1-3 lines), realistic addresses in every province (vectorised)."""
    from demo.data import LOCATIONS, PRODUCTS, SURNAMES

    rng = np.random.default_rng(seed)
    per_order = rng.choice([1, 1, 1, 2, 2, 3], size=n)
    order_idx = np.repeat(np.arange(n), per_order)
    rows = len(order_idx)
    line_no = np.arange(rows) - np.repeat(np.cumsum(per_order) - per_order, per_order)
    loc = rng.integers(0, len(LOCATIONS), size=n)[order_idx]
    locations = pd.DataFrame(LOCATIONS, columns=["p", "c", "d", "s"])
    product = rng.integers(0, len(PRODUCTS), size=rows)
    products = pd.DataFrame(PRODUCTS, columns=["name", "spec", "model", "unit", "price", "w", "v", "src", "lead"])
    surnames = np.array(SURNAMES)
    given = np.array(["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛", "明", "超"])
    ids = pd.Series(np.arange(1, n + 1)).map("B{:09d}".format).to_numpy()[order_idx]
    minutes = rng.integers(0, 7 * 24 * 60, size=n)[order_idx]
    times = (pd.Timestamp("2026-11-20 08:00") + pd.to_timedelta(minutes, unit="min")).strftime("%Y-%m-%d %H:%M")
    phones = pd.Series(rng.integers(13_000_000_000, 19_999_999_999, size=n)).astype(str).to_numpy()[order_idx]
    house = pd.Series(rng.integers(1, 999, size=n)).astype(str).to_numpy()[order_idx]
    frame = pd.DataFrame({
        "订单号": ids,
        "渠道": np.where(rng.random(n) < 0.7, "电话", "传真")[order_idx],
        "下单时间": times,
        "客户名称": (pd.Series(surnames[rng.integers(0, len(surnames), size=n)])
                  + pd.Series(given[rng.integers(0, len(given), size=n)])).to_numpy()[order_idx],
        "联系电话": phones,
        "省": locations["p"].to_numpy()[loc],
        "市": locations["c"].to_numpy()[loc],
        "区县": locations["d"].to_numpy()[loc],
        "详细地址": locations["s"].to_numpy()[loc] + "附" + house + "号",
        "商品编码": pd.Series(product + 1).map("SKU-{:04d}".format).to_numpy(),
        "商品名称": products["name"].to_numpy()[product],
        "规格": products["spec"].to_numpy()[product],
        "型号": products["model"].to_numpy()[product],
        "数量": rng.choice([1, 1, 2, 3, 5, 10], size=rows).astype(str),
        "单价（元）": products["price"].map("{:.2f}".format).to_numpy()[product],
        "运费": np.where(line_no == 0, rng.choice(["0", "8.00", "12.00", "20.00"], size=rows), ""),
        "付款方式": rng.choice(["支付宝", "微信", "银行转账", "货到付款"], size=n)[order_idx],
        "备注": np.where(rng.random(rows) < 0.1, "请尽快发货", ""),
    })
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), path)


def prepare(n: int, workdir: Path, case=None) -> dict:
    import flows.intake  # noqa: F401  (imported here, before the timed children fork: Prefect's import is not intake)
    from connectors.registry import _classes

    _classes()  # the channel modules imported before the fork too (the baseline's pyarrow is imported already)
    from yidi.db import init_db, make_engine

    csv_path = workdir / "orders.csv"
    make_csv(n, csv_path)
    quarter = workdir / "orders_quarter.csv"
    make_csv(max(n // 4, 1), quarter, seed=4)
    empty = workdir / "empty.db"
    engine = make_engine(f"sqlite:///{empty}")
    init_db(engine)
    engine.dispose()
    return {"csv": csv_path, "quarter": quarter, "empty": empty, "workdir": workdir, "n": n}


def _fresh_db(ctx: dict, name: str) -> Path:
    target = ctx["workdir"] / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copy(ctx["empty"], target)
    return target


def _ingest(db: Path, csv_path: Path) -> dict:
    from flows.compose import in_process
    from flows.intake import order_intake
    from yidi.db import make_engine

    os.environ.setdefault("YIDI_HOME", str(db.parent / "home"))
    engine = make_engine(f"sqlite:///{db}")
    results = order_intake(in_process, files=[str(csv_path)], options={"spreadsheet": {"chunk_rows": 50_000}},
                           engine=engine, actor="bench")
    engine.dispose()
    summary = results[f"file:{csv_path}"]
    assert not summary.get("error"), summary["error"]
    return {k: summary[k] for k in ("new", "unchanged", "quarantined")}


def ours(ctx: dict) -> None:
    result = _ingest(_fresh_db(ctx, "ours.db"), ctx["csv"])
    assert result["new"] == ctx["n"] and result["quarantined"] == 0, result


def baseline(ctx: dict) -> None:
    db = _fresh_db(ctx, "baseline.db")
    table = pacsv.read_csv(ctx["csv"], convert_options=pacsv.ConvertOptions(
        column_types={h: pa.string() for h in HEADERS}))
    frame = table.to_pandas()
    frame["price_fen"] = (pd.to_numeric(frame["单价（元）"]) * 100).round().astype("int64")
    frame["quantity"] = pd.to_numeric(frame["数量"])
    frame["line_total_fen"] = (frame["price_fen"] * frame["quantity"]).round().astype("int64")
    frame["line_no"] = frame.groupby("订单号").cumcount() + 1
    goods = frame.groupby("订单号", sort=False)["line_total_fen"].sum()
    heads = frame.drop_duplicates("订单号")
    freight = (pd.to_numeric(heads["运费"]).fillna(0) * 100).round().astype("int64").to_numpy()
    goods_total = goods.loc[heads["订单号"]].to_numpy()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("BEGIN")
    order_cols = ["order_no", "channel", "channel_order_id", "customer_name", "customer_phone", "ship_province",
                  "ship_city", "ship_district", "ship_detail", "payment_method", "freight_fen", "goods_total_fen",
                  "order_total_fen", "order_time", "state", "received_at"]
    ids = heads["订单号"].tolist()
    rows = zip(["B" + i for i in ids], ["phone"] * len(ids), ids, heads["客户名称"].tolist(),
               heads["联系电话"].tolist(), heads["省"].tolist(), heads["市"].tolist(), heads["区县"].tolist(),
               heads["详细地址"].tolist(), heads["付款方式"].tolist(), freight.tolist(), goods_total.tolist(),
               (goods_total + freight).tolist(), heads["下单时间"].tolist(), ["received"] * len(ids),
               ["2026-11-27 00:00:00"] * len(ids), strict=True)
    updates = ", ".join(f"{c} = excluded.{c}" for c in order_cols[3:14])
    conn.executemany(
        f"INSERT INTO orders ({', '.join(order_cols)}) VALUES ({', '.join('?' * len(order_cols))}) "
        f"ON CONFLICT (channel, channel_order_id) DO UPDATE SET {updates}", rows)
    order_id = dict(conn.execute("SELECT channel_order_id, id FROM orders WHERE channel = 'phone'"))
    line_cols = ["order_id", "line_no", "item_code", "item_name", "spec", "model", "quantity", "unit_price_fen",
                 "line_total_fen"]
    line_rows = zip([order_id[i] for i in frame["订单号"].tolist()], frame["line_no"].tolist(),
                    frame["商品编码"].tolist(), frame["商品名称"].tolist(), frame["规格"].tolist(),
                    frame["型号"].tolist(), frame["quantity"].tolist(), frame["price_fen"].tolist(),
                    frame["line_total_fen"].tolist(), strict=True)
    conn.executemany(
        f"INSERT INTO order_lines ({', '.join(line_cols)}) VALUES ({', '.join('?' * len(line_cols))}) "
        "ON CONFLICT (order_id, line_no) DO UPDATE SET item_code = excluded.item_code, "
        "quantity = excluded.quantity, unit_price_fen = excluded.unit_price_fen, "
        "line_total_fen = excluded.line_total_fen", line_rows)
    conn.execute("COMMIT")
    conn.close()


def parity(ctx: dict) -> None:
    """Ours and the baseline land the same orders and lines (the columns both take from the file: ``bench.rows``)."""
    from bench.rows import assert_same_rows, landed_intake

    ours(ctx)
    baseline(ctx)
    mine, theirs = landed_intake(ctx["workdir"] / "ours.db"), landed_intake(ctx["workdir"] / "baseline.db")
    assert_same_rows(mine[0], theirs[0], "orders")
    assert_same_rows(mine[1], theirs[1], "order lines")


def _child(fn, conn) -> None:
    try:
        started = time.perf_counter()
        result = fn()
        conn.send(("ok", time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   result))
    except BaseException as exc:  # noqa: BLE001 - report to the parent
        conn.send(("error", repr(exc), 0, None))
    finally:
        conn.close()


def _in_child(fn) -> tuple[float, float, object]:
    fork = multiprocessing.get_context("fork")
    parent, child = fork.Pipe(duplex=False)
    process = fork.Process(target=_child, args=(fn, child))
    process.start()
    child.close()
    status, seconds, peak, result = parent.recv()
    process.join()
    if status != "ok":
        raise RuntimeError(seconds)
    return seconds, peak, result


def extra(ctx: dict) -> dict:
    first_s, peak_full, _ = _in_child(lambda: _ingest(_fresh_db(ctx, "reingest.db"), ctx["csv"]))
    again_s, _, again = _in_child(lambda: _ingest(ctx["workdir"] / "reingest.db", ctx["csv"]))
    assert again["new"] == 0 and again["unchanged"] == ctx["n"], again
    _, peak_quarter, _ = _in_child(lambda: _ingest(_fresh_db(ctx, "quarter.db"), ctx["quarter"]))
    return {
        "first_ingest_s": round(first_s, 3),
        "reingest_s": round(again_s, 3),
        "reingest_ratio": round(again_s / first_s, 3),
        "peak_mb_full": round(peak_full, 1),
        "peak_mb_quarter": round(peak_quarter, 1),
        "orders_per_s": round(ctx["n"] / first_s),
    }
