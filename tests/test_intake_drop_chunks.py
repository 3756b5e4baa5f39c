"""The chunks of one large drop as concurrent tasks (issue 17): on PostgreSQL a drop's chunks land side by side
through the flow's task runner, one of them retried after its connection was cut, and the store ends with exactly
the drop's orders, events and quarantined rows, once; taking the drop in again lands nothing.

SQLite has one writer per file: its chunks land one after another (``flows.intake.drop_intake``), so the race is
PostgreSQL's only.
"""

from __future__ import annotations

import threading
import time

import pytest
from intake_support import frame
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy import func, select, text
from test_intake_bulk import bulk_file, drop

from connectors.template.records import CHUNK_CONTENT_TYPE
from flows.compose import submitted
from flows.intake import order_intake
from yidi.db import StoreAddress, engine_of, store_address
from yidi.schema import intake_records, notification_outbox, order_events, order_lines, orders
from yidi.settings import get_settings

THREADS = 4
POLICY = """
[intake]
task_retries = 2
retry_delay_seconds = 0.01
"""
CHUNK_ROWS = 10  # the policy's floor is 100 rows; a file's own options go below it, for a drop of several chunks


@flow
def take_in_drop(path: str, url: str) -> dict:
    """The intake step list in a flow run for one file (module level: the flow's parameters are plain values)."""
    return order_intake(submitted, files=[path], options={"spreadsheet": {"chunk_rows": CHUNK_ROWS}},
                        engine=engine_of(StoreAddress(url)))[f"file:{path}"]


class ChunksHeldAtOrders(threading.Thread):
    """Holds an EXCLUSIVE lock on ``orders`` (reads pass, inserts wait) until ``wanted`` chunk transactions wait on it
    at once (or 120 s pass), then cuts one waiting chunk's connection (the database dropped it: the chunk must be
    retried) and lets the rest go. ``waiting``: the most chunk transactions seen waiting together."""

    def __init__(self, engine, wanted: int):
        super().__init__(daemon=True)
        self.engine, self.wanted, self.waiting, self.cut = engine, wanted, 0, None
        self.locked = threading.Event()

    def run(self):
        with self.engine.connect() as conn, self.engine.connect() as watcher:
            conn.execute(text("LOCK TABLE orders IN EXCLUSIVE MODE"))
            self.locked.set()
            deadline = time.monotonic() + 120
            pids: list[int] = []
            while time.monotonic() < deadline and len(pids) < self.wanted:
                pids = [pid for (pid,) in watcher.execute(text(
                    "SELECT pid FROM pg_locks WHERE NOT granted AND relation = 'orders'::regclass"))]
                watcher.commit()
                self.waiting = max(self.waiting, len(pids))
                time.sleep(0.05)
            if pids:
                self.cut = pids[0]
                watcher.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]})
                watcher.commit()
            conn.commit()


def store_counts(engine) -> dict:
    with engine.connect() as conn:
        return {table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (orders, order_lines, order_events, intake_records, notification_outbox)}


def recorded_chunk_runs(flow_run_id, chunks: int, timeout: float = 60) -> list:
    """The flow run's chunk task runs as the Prefect server recorded them: task states reach the server as events,
    after the flow returned, so this reads until every chunk shows completed (or the timeout)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = [run for run in client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[flow_run_id]))) if run.task_key.startswith("land_drop_chunk")]
            # a task run can be recorded before its first state event: no state yet is not done
            done = len(runs) == chunks and all(run.state is not None and run.state.is_completed() for run in runs)
            if done or time.monotonic() > deadline:
                return runs
            time.sleep(0.2)


@pytest.mark.prefect
def test_a_drops_chunks_land_side_by_side_once_each_and_again_nothing(prefect_server, engine, tmp_path,
                                                                    monkeypatch):
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer per file: a drop's chunks land one after another there, nothing races")
    policy = tmp_path / "yidi.toml"
    policy.write_text(POLICY, encoding="utf-8")
    monkeypatch.setenv("YIDI_CONFIG", str(policy))
    get_settings.cache_clear()

    rows, bad = bulk_file(tmp_path, "drop.csv", n=40, bad=(3, 17))
    chunks = len(list(drop(tmp_path / "drop.csv", chunk_rows=CHUNK_ROWS).fetch(None)))
    assert chunks >= THREADS + 1  # more chunks than threads: some wait for a free one
    url = store_address(engine).url
    runner = take_in_drop.with_options(task_runner=ThreadPoolTaskRunner(max_workers=THREADS))

    holder = ChunksHeldAtOrders(engine, wanted=THREADS)
    holder.start()
    assert holder.locked.wait(30)
    state = runner(str(tmp_path / "drop.csv"), url, return_state=True)
    holder.join(30)
    first = state.result()

    assert holder.waiting == THREADS  # four chunks in four transactions at once, one per thread
    assert first["error"] is None, first
    assert (first["read"], first["new"], first["quarantined"], first["batches"]) == (40, 38, 2, chunks)
    good = sorted(set(rows["订单号"]) - set(bad))
    with engine.connect() as conn:
        assert sorted(r for (r,) in conn.execute(select(orders.c.channel_order_id))) == good
        received = dict(conn.execute(select(order_events.c.order_id, func.count())
                                     .where(order_events.c.to_state == "received").group_by(order_events.c.order_id)).all())
        lines = conn.execute(select(func.count()).select_from(order_lines)).scalar_one()
    assert sorted(received.values()) == [1] * 38
    assert lines == len(rows[~rows["订单号"].isin(bad)])  # every row of a good order a line, once
    records = frame(engine, "SELECT status, content_type, source_key FROM intake_records")
    assert (records["content_type"] == CHUNK_CONTENT_TYPE).sum() == chunks  # the cut chunk landed once, retried
    assert sorted(records.loc[records["status"] == "quarantined", "source_key"]) == sorted(bad)
    # 'received' told once per order: by SMS (the drop's orders give mobiles, no mail addresses)
    notices = frame(engine, "SELECT dedupe_key FROM notification_outbox")["dedupe_key"]
    assert sorted(notices) == sorted(f"intake:received:{oid}:sms" for oid in received)

    chunk_runs = recorded_chunk_runs(state.state_details.flow_run_id, chunks)
    assert len(chunk_runs) == chunks and all(run.state.is_completed() for run in chunk_runs)
    assert sorted(run.run_count for run in chunk_runs) == [1] * (chunks - 1) + [2]  # the cut one ran twice

    before = store_counts(engine)
    again = runner(str(tmp_path / "drop.csv"), url)
    assert (again["read"], again["new"], again["updated"], again["unchanged"], again["quarantined"]) == (
        40, 0, 0, 40, 0)
    assert store_counts(engine) == before
