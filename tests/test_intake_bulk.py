"""Bulk drops: a csv of many orders lands one raw record per chunk, its bad orders as records of their own, and
stays idempotent when dropped again or changed; the pieces that keep a million-order file linear."""

from __future__ import annotations

import io
from datetime import datetime

import numpy as np
import pandas as pd
from intake_support import count, frame, neutral
from sqlalchemy import insert, select

from connectors.spreadsheet_orders import SpreadsheetConnector
from connectors.template.csv_rows import iter_csv_chunks
from connectors.template.records import CHUNK_CONTENT_TYPE, SeenOrders
from demo.standins.spreadsheets import template_frame, write_csv
from tasks.intake.landing import run_channel
from yidi.bulk import reserve_ids
from yidi.schema import intake_records, orders

SHANGHAI_DAY = "%y%m%d"


def drop(path, **options) -> SpreadsheetConnector:
    return SpreadsheetConnector("spreadsheet", {"files": [str(path)], "move_processed": False, **options})


def bulk_file(tmp_path, name: str, n: int = 40, bad: tuple[int, ...] = (3, 17)) -> tuple[pd.DataFrame, list[str]]:
    rows = template_frame(neutral(n), prefix="K").astype({"数量": "str"})
    ids = list(dict.fromkeys(rows["订单号"]))
    for i in bad:  # an order whose quantity is not a number
        rows.loc[rows["订单号"] == ids[i], "数量"] = "两箱"
    write_csv(rows, tmp_path / name)
    return rows, [ids[i] for i in bad]


def test_a_bulk_drop_lands_one_record_per_chunk_and_one_per_bad_order(engine, tmp_path):
    rows, bad_ids = bulk_file(tmp_path, "orders.csv")
    summary = run_channel(engine, drop(tmp_path / "orders.csv", chunk_rows=10))
    assert (summary.read, summary.new, summary.quarantined) == (40, 38, 2)

    records = frame(engine, "SELECT id, status, content_type, source_key, content, reason FROM intake_records "
                            "ORDER BY id")
    chunks = records[records["content_type"] == CHUNK_CONTENT_TYPE]
    assert len(chunks) == summary.batches >= 4 and set(chunks["status"]) == {"accepted"}
    header = ",".join(rows.columns)
    # The chunks hold every row of the file, as read, once.
    body = [line for text in chunks["content"] for line in text.split("\n")[1:]]
    assert all(text.startswith(header + "\n") for text in chunks["content"])
    assert len(body) == len(rows)
    notes = chunks["reason"].str.extract(r"chunk: (\d+) orders; (\d+) of them quarantined").astype(int)
    assert notes[0].sum() == 40 and notes[1].sum() == 2

    own = records[records["status"] == "quarantined"].set_index("source_key")
    assert sorted(own.index) == sorted(bad_ids)
    for order_id in bad_ids:  # header + exactly that order's rows: fix and replay one order alone
        lines = own.loc[order_id, "content"].split("\n")
        assert lines[0] == header and len(lines) - 1 == int((rows["订单号"] == order_id).sum())
        assert all(line.startswith(f"{order_id},") for line in lines[1:])
        assert "数量 is '两箱'" in own.loc[order_id, "reason"]

    stored = frame(engine, "SELECT o.id, o.order_no, o.channel_order_id, o.received_at, r.content FROM orders o "
                           "JOIN intake_records r ON r.id = o.raw_record_id")
    assert len(stored) == 38  # every order points at the chunk it came in
    assert all(cid in text for cid, text in zip(stored["channel_order_id"], stored["content"], strict=True))
    received = pd.to_datetime(stored["received_at"], utc=True).dt.tz_convert("Asia/Shanghai")
    expected = ["YD" + day + f"{oid:08d}" for day, oid in
                zip(received.dt.strftime(SHANGHAI_DAY), stored["id"], strict=True)]
    assert stored["order_no"].tolist() == expected


def test_a_bulk_drop_again_is_skipped_and_a_changed_one_updates_only_what_changed(engine, tmp_path):
    rows, _ = bulk_file(tmp_path, "orders.csv")
    run_channel(engine, drop(tmp_path / "orders.csv", chunk_rows=10))
    before = count(engine, intake_records)

    again = run_channel(engine, drop(tmp_path / "orders.csv", chunk_rows=10))
    assert (again.read, again.new, again.updated, again.unchanged, again.quarantined) == (40, 0, 0, 40, 0)
    assert count(engine, intake_records) == before  # nothing landed twice

    changed = rows.copy()
    target = changed["订单号"].iloc[-1]
    changed.loc[changed["订单号"] == target, "客户名称"] = "改过的名字"
    write_csv(changed, tmp_path / "orders_v2.csv")
    second = run_channel(engine, drop(tmp_path / "orders_v2.csv", chunk_rows=10))
    assert (second.new, second.updated, second.quarantined) == (0, 1, 0)
    assert second.unchanged == 39  # the other orders of the changed chunk, and every other chunk
    # Only the changed chunk landed again; the bad orders' records were not duplicated.
    assert count(engine, intake_records) == before + 1
    name = frame(engine, "SELECT customer_name FROM orders WHERE channel_order_id = :c", c=target)
    assert name["customer_name"].tolist() == ["改过的名字"]


def test_a_chunk_that_is_a_single_bad_order_keeps_both_records(sqlite_engine, tmp_path):
    rows, bad_ids = bulk_file(tmp_path, "one.csv", n=1, bad=(0,))
    summary = run_channel(sqlite_engine, drop(tmp_path / "one.csv"))
    assert (summary.new, summary.quarantined) == (0, 1)
    statuses = frame(sqlite_engine, "SELECT status, content_type, source_key FROM intake_records ORDER BY id")
    assert statuses["status"].tolist() == ["accepted", "quarantined"]  # same text, told apart by their hashes
    assert statuses["source_key"].iloc[1] == bad_ids[0]


def test_reserved_ids_are_fresh_and_never_handed_out_again(engine):
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM channel_cursors WHERE 1 = 0")  # SQLite: hold the write lock
        ids = reserve_ids(conn, orders, 3)
        assert len(ids) == 3 and list(ids) == sorted(set(ids))
        assert len(reserve_ids(conn, orders, 0)) == 0
        now = datetime.now().astimezone()
        conn.execute(insert(orders), [
            {"id": int(i), "order_no": f"R{i}", "channel": "phone", "channel_order_id": f"R{i}", "state": "received",
             "received_at": now, "updated_at": now} for i in ids
        ])
        conn.execute(insert(orders).values(order_no="AUTO", channel="phone", channel_order_id="AUTO",
                                           state="received", received_at=now, updated_at=now))
        auto = conn.execute(select(orders.c.id).where(orders.c.order_no == "AUTO")).scalar()
        later = reserve_ids(conn, orders, 2)
    assert auto > ids.max() and later.min() > auto  # the id column's own numbering moved past them


def test_csv_read_in_blocks_gives_the_same_rows_whatever_the_block_size():
    text = ('订单号,客户名称,备注\r\n'
            'A1,张三,"两行\r\n的备注"\r\n'
            '\r\n'
            ' , ,\r\n'
            'A2,"李,四",普通\r'
            'A3,王五,"""引号"""\n'
            'A4,赵六,最后一行没有换行')
    expected = None
    for block_chars in (1, 2, 3, 5, 8, 13, 1 << 20):
        chunks = list(iter_csv_chunks(io.StringIO(text, newline=""), chunk_rows=2, block_chars=block_chars))
        got = ([c.lines for c in chunks], [c.row_numbers.tolist() for c in chunks],
               pd.concat([c.frame for c in chunks], ignore_index=True)["备注"].tolist())
        expected = expected or got
        assert got == expected, block_chars
    lines, numbers, notes = expected
    assert lines == [['A1,张三,"两行\n的备注"', 'A2,"李,四",普通'], ['A3,王五,"""引号"""', "A4,赵六,最后一行没有换行"]]
    assert numbers == [[2, 6], [7, 8]]  # file line numbers; the blank and comma-only lines are skipped
    assert notes == ["两行\n的备注", "普通", '"引号"', "最后一行没有换行"]


def test_seen_orders_answers_membership_across_chunks():
    seen = SeenOrders()
    assert not seen.contains(np.array([1, 2], dtype=np.uint64)).any()
    seen.add(np.array([9, 3, 5], dtype=np.uint64))
    seen.add(np.array([5, 1], dtype=np.uint64))
    assert seen.contains(np.array([1, 2, 3, 5, 9, 10, 0], dtype=np.uint64)).tolist() == [
        True, False, True, True, True, False, False]


def test_the_content_hash_of_an_order_does_not_change_between_releases():
    """Stored orders are compared by this digest on every re-read: if a change to parsing or normalisation moved it,
    every order in every store would look changed at the source and go back to review. The value was computed by
    the first release that stored it."""
    from datetime import UTC

    from connectors.template.records import build_template_records
    from tasks.intake.normalise import normalise

    text = ("订单号,下单时间,客户名称,联系电话,省,市,区县,详细地址,商品编码,商品名称,数量,单价（元）,运费,付款方式\n"
            "G-1,2026-11-26 09:30,张三,13812345678,四川省,成都市,武侯区,人民南路四段1号,SKU-0002,摩托车头盔,2,189.00,"
            "12.00,支付宝\n"
            "G-1,,,,,,,,SV-INSTALL,设备上门安装,1,300,,\n")
    chunk = next(iter_csv_chunks(io.StringIO(text)))
    result = build_template_records(chunk, source_ref="t", default_channel="phone",
                                    received_at=datetime(2026, 11, 27, tzinfo=UTC))
    normal = normalise(result.parse(None), catalog_kinds={})
    assert normal.orders["content_hash"].tolist() == [
        "4433f6e18102ebb8776be7c77d6814b2e07b4ca05a2fa730f246567dafa486f9"]


def test_showing_a_chunk_record_prints_its_head_unless_asked_for_all(sqlite_engine, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from app.cli.main import cli

    bulk_file(tmp_path, "orders.csv", n=60, bad=())
    run_channel(sqlite_engine, drop(tmp_path / "orders.csv"))
    records = frame(sqlite_engine, "SELECT id, content FROM intake_records")
    assert len(records) == 1  # a file smaller than a chunk is one record, its last order included
    chunk = records.iloc[0]
    total = len(chunk["content"].split("\n"))
    assert total > 60
    monkeypatch.setenv("YIDI_DATABASE_URL", str(sqlite_engine.url))
    runner = CliRunner()
    head = runner.invoke(cli, ["intake", "quarantine", "show", str(chunk["id"])])
    assert head.exit_code == 0 and f"{total - 40:,} more lines" in head.stdout
    everything = runner.invoke(cli, ["intake", "quarantine", "show", str(chunk["id"]), "--full"])
    last_line = chunk["content"].split("\n")[-1]
    assert last_line[:12] in everything.stdout and "more lines" not in everything.stdout


KILL_SCRIPT = """
import os, sys
os.environ["YIDI_HOME"] = {home!r}
from connectors.spreadsheet_orders import SpreadsheetConnector
from tasks.intake.landing import run_channel
from yidi.db import make_engine
run_channel(make_engine({db!r}), SpreadsheetConnector("spreadsheet", {{"files": [{csv!r}], "move_processed": False,
                                                                      "chunk_rows": 200}}))
"""


def test_a_bulk_drop_killed_mid_file_then_run_again_loses_and_duplicates_nothing(sqlite_engine, tmp_path):
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    from bench.ingest import make_csv

    # Large enough that the child is still busy when it is stopped, on a loaded machine too (100 chunks).
    n = 20_000
    make_csv(n, tmp_path / "big.csv")
    script = KILL_SCRIPT.format(home=str(tmp_path / "home"), db=str(sqlite_engine.url), csv=str(tmp_path / "big.csv"))
    root = os.path.dirname(os.path.dirname(__file__))
    child = subprocess.Popen([sys.executable, "-c", script], cwd=root, env={**os.environ, "PYTHONPATH": root})
    try:
        deadline = time.monotonic() + 120
        while (partial := count(sqlite_engine, orders)) == 0:
            assert child.poll() is None, "the child ended before committing a chunk"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # Hold the write lock so the child cannot commit another chunk however the machine schedules it, then kill
        # it while it waits (mid-file, between chunks), then let go.
        holder = sqlite3.connect(sqlite_engine.url.database, timeout=60, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        holder.execute("ROLLBACK")
        holder.close()
    finally:
        if child.poll() is None:
            child.kill()
    partial = count(sqlite_engine, orders)
    assert 0 < partial < n  # killed between chunks: some committed, the rest not
    summary = run_channel(sqlite_engine, drop(tmp_path / "big.csv", chunk_rows=200))
    assert count(sqlite_engine, orders) == n
    assert (summary.new, summary.unchanged) == (n - partial, partial)  # committed chunks skipped by their hash
    dupes = frame(sqlite_engine, "SELECT content_hash FROM intake_records GROUP BY channel, content_hash "
                                 "HAVING count(*) > 1")
    assert dupes.empty
    lines = frame(sqlite_engine, "SELECT count(*) n FROM order_lines")["n"][0]
    assert lines == len(pd.read_csv(tmp_path / "big.csv", usecols=[0]))
