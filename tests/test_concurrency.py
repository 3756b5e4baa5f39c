"""Safe under concurrency (issue 17): two and four worker processes run the same stage on one PostgreSQL store at
once, released together by a barrier (scheduled and on-demand runs overlapping, no deployment concurrency limit
between them), and a worker killed mid-task is retried. Each case compares the raced store with what the stage
does alone, or counts what must happen once: an order per source record, a match per payment line, a query per
waybill inside the carrier's interval, a delivery per notice, a version step per move, stock reserved once.

SQLite admits one writer at a time (the file's write lock): nothing can interleave there, so these run on
PostgreSQL only. The automated review's race is in ``tests/test_scale.py``.
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import pytest
from concurrency_support import at_once, failures, killed, open_store, store_url
from sqlalchemy import func, select
from test_notify import relays  # noqa: F401  (the SMTP and SMS stand-ins and a policy pointing at them)

from yidi.schema import notification_outbox, order_events, order_lines, orders

WORKERS = [2, 4]


@pytest.fixture
def pg(engine):
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer at a time (a write lock per file): workers cannot interleave there; "
                    "the races run on PostgreSQL")
    return engine


def count_by(engine, column, where=None) -> dict:
    stmt = select(column, func.count()).group_by(column)
    if where is not None:
        stmt = stmt.where(where)
    with engine.connect() as conn:
        return dict(conn.execute(stmt).all())


# --- intake: one order per source record ---------------------------------------------------------------------------


def take_in(url: str, path: str, kill=None, chunk_rows: int = 10) -> dict:
    from test_intake_bulk import drop

    from tasks.intake.landing import run_channel

    engine = open_store(url)
    on_batch = (lambda _batch, _counts: kill()) if kill else None
    summary = run_channel(engine, drop(path, chunk_rows=chunk_rows), on_batch=on_batch)
    engine.dispose()
    return {k: v for k, v in asdict(summary).items() if k in ("read", "new", "unchanged", "quarantined")}


def assert_taken_in_once(engine, rows: pd.DataFrame, bad: list[str]) -> None:
    good = set(rows["订单号"]) - set(bad)
    with engine.connect() as conn:
        source_ids = [r for (r,) in conn.execute(select(orders.c.channel_order_id))]
    assert sorted(source_ids) == sorted(good)  # every good source order once, none twice
    received = count_by(engine, order_events.c.order_id, order_events.c.to_state == "received")
    assert sorted(received.values()) == [1] * len(good)
    notices = count_by(engine, notification_outbox.c.dedupe_key)
    assert set(notices.values()) == {1} and len(notices) >= len(good)  # 'received' told once per order and medium


@pytest.mark.parametrize("workers", WORKERS)
def test_the_same_drop_taken_in_by_several_workers_lands_each_order_once(pg, tmp_path, workers):
    from test_intake_bulk import bulk_file

    rows, bad = bulk_file(tmp_path, "drop.csv", n=40, bad=(3, 17))
    results = at_once(workers, take_in, store_url(pg), str(tmp_path / "drop.csv"), engine=pg)
    assert failures(results) == []
    assert sum(r["new"] for r in results) == 38 and all(r["read"] == 40 for r in results)
    assert sum(r["quarantined"] for r in results) == 2  # the two bad orders kept once, by whoever landed them
    assert_taken_in_once(pg, rows, bad)


def test_two_drops_holding_the_same_orders_landing_at_once_write_each_order_once(pg, tmp_path):
    """Not the same file twice (its chunk records catch that) but two drops whose chunks differ and whose order
    numbers overlap: the order insert's conflict decides which drop an order is new in, and only that one writes
    its lines, 'received' event and notice."""
    from test_intake_bulk import bulk_file

    rows, bad = bulk_file(tmp_path, "drop.csv", n=40, bad=(3, 17))
    path = str(tmp_path / "drop.csv")
    results = at_once(2, take_in, store_url(pg), path, None, engine=pg, each=[(10,), (7,)])
    assert failures(results) == []
    assert sum(r["new"] for r in results) == 38
    assert_taken_in_once(pg, rows, bad)
    with pg.connect() as conn:
        lines = conn.execute(select(func.count()).select_from(order_lines)).scalar_one()
    assert lines == int((~rows["订单号"].isin(bad)).sum())  # one stored line per good row of the file, none twice


def test_a_worker_killed_between_batches_is_retried_without_duplicates(pg, tmp_path):
    from test_intake_bulk import bulk_file

    rows, bad = bulk_file(tmp_path, "drop.csv", n=40, bad=(3, 17))
    assert killed(take_in, store_url(pg), str(tmp_path / "drop.csv"), engine=pg) == -9
    with pg.connect() as conn:
        first = conn.execute(select(func.count()).select_from(orders)).scalar_one()
    assert 0 < first < 38  # the first chunk committed, the rest not taken in yet
    retried = at_once(2, take_in, store_url(pg), str(tmp_path / "drop.csv"), engine=pg)  # the retry, and a rerun
    assert failures(retried) == [] and sum(r["new"] for r in retried) == 38 - first
    assert_taken_in_once(pg, rows, bad)


# --- the state machine: no lost update -----------------------------------------------------------------------------


def approve(url: str, order_ids: list[int], actor: str) -> int:
    from yidi.lifecycle import OrderState, transition_orders

    engine = open_store(url)
    with engine.begin() as conn:
        outcome = transition_orders(conn, order_ids, OrderState.APPROVED, reason="approved", actor=actor,
                                    skip_illegal=True)  # fmt: skip
    engine.dispose()
    return len(outcome.moved)


@pytest.mark.parametrize("workers", WORKERS)
def test_workers_moving_the_same_orders_move_each_once(pg, workers):
    from test_lifecycle import make_orders

    with pg.begin() as conn:
        ids = make_orders(conn, ["pending_review"] * 200)
    with pg.connect() as conn:
        before = dict(conn.execute(select(orders.c.id, orders.c.version)).all())
    moved = at_once(workers, approve, store_url(pg), ids, "worker", engine=pg)
    assert failures(moved) == [] and sum(moved) == 200
    with pg.connect() as conn:
        after = {oid: (version, state) for oid, version, state in
                 conn.execute(select(orders.c.id, orders.c.version, orders.c.state))}  # fmt: skip
    assert after == {oid: (before[oid] + 1, "approved") for oid in ids}  # one version step each: none lost
    events = count_by(pg, order_events.c.order_id, order_events.c.to_state == "approved")
    assert events == dict.fromkeys(ids, 1)  # one move logged per order, by whichever worker made it


# --- allocation: stock reserved once, never below zero -------------------------------------------------------------


def allocate(url: str, kill=None) -> int:
    from fulfilment_data import NOW

    from tasks.fulfilment.allocation_run import allocate_orders

    engine = open_store(url)
    result = allocate_orders(engine, now=NOW, after_plan=(lambda _attempt: kill()) if kill else None)
    engine.dispose()
    return result.allocated


def allocation_outcome(engine) -> tuple:
    from tasks.fulfilment.stock import ledger_mismatches, stock_position
    from yidi.bulk import read_frame
    from yidi.schema_fulfilment import allocations

    with engine.connect() as conn:
        position = stock_position(conn).set_index("item_code")
        assert (position["reserved"] <= position["on_hand"]).all() and (position["available"] >= 0).all()
        assert ledger_mismatches(conn).empty
        allocated = read_frame(conn, select(allocations.c.order_line_id, allocations.c.quantity))
        assert not allocated["order_line_id"].duplicated().any()  # no line allocated by two workers
        by_state = dict(conn.execute(select(orders.c.state, func.count()).group_by(orders.c.state)).all())
    return by_state, position["reserved"].to_dict()


def alone(tmp_path, build) -> object:
    from yidi.db import init_db, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'alone.db'}")
    init_db(engine)
    with engine.begin() as conn:
        build(conn)
    return engine


@pytest.mark.parametrize("workers", WORKERS)
def test_workers_allocating_at_once_reserve_each_unit_once(pg, tmp_path, workers):
    from test_fulfilment_store import _race_store

    with pg.begin() as conn:
        _race_store(conn)
    allocated = at_once(workers, allocate, store_url(pg), engine=pg)
    assert failures(allocated) == []
    single = alone(tmp_path, _race_store)
    assert allocate(store_url(single)) == sum(allocated) > 0  # the workers together did what one run does
    assert allocation_outcome(pg) == allocation_outcome(single) and allocation_outcome(pg)[1]["A-STOCK"] == 10.0


def test_an_allocation_killed_mid_transaction_is_retried_once(pg, tmp_path):
    """The worker dies after planning, holding the allocation lock inside its transaction: PostgreSQL rolls it back
    and frees the lock; the retry (beside an overlapping run) allocates exactly what one run does."""
    from test_fulfilment_store import _race_store

    with pg.begin() as conn:
        _race_store(conn)
    assert killed(allocate, store_url(pg), engine=pg) == -9
    assert allocation_outcome(pg)[1] == {"A-STOCK": 0.0, "B-STOCK": 0.0}  # nothing of the dead attempt stayed
    retried = at_once(2, allocate, store_url(pg), engine=pg)
    single = alone(tmp_path, _race_store)
    assert failures(retried) == [] and sum(retried) == allocate(store_url(single))
    assert allocation_outcome(pg) == allocation_outcome(single)


# --- settlement: each payment line matched once ----------------------------------------------------------------------


def reconcile_day(url: str, files: list[str]) -> dict:
    from test_settlement import NOW, reconcile

    engine = open_store(url)
    result = reconcile(engine, files=files, now=NOW, actor="worker")
    engine.dispose()
    return {"files": [f["status"] for f in result["files"]], "matched": result["matching"]["matched_lines"],
            "opened": result["cases"]["opened"]}  # fmt: skip


def settlement_outcome(engine) -> dict:
    from yidi.schema_settlement import payment_lines, payment_matches, settlement_cases

    pl, pm = payment_lines.c, payment_matches.c
    with engine.connect() as conn:
        matches = sorted(conn.execute(
            select(pl.source, pl.amount_fen, orders.c.order_no, pm.amount_fen, pm.rule)
            .join(payment_lines, pl.id == pm.payment_line_id).join(orders, orders.c.id == pm.order_id)).all())
        per_line = conn.execute(select(pm.payment_line_id, pm.order_id, func.count())
                                .group_by(pm.payment_line_id, pm.order_id).having(func.count() > 1)).all()
        lines = conn.execute(select(func.count()).select_from(payment_lines)).scalar_one()
        order_states = dict(conn.execute(select(orders.c.order_no, orders.c.state + "/" + orders.c.payment_state)).all())
        events = sorted(conn.execute(select(orders.c.order_no, order_events.c.kind, func.count())
                                     .join(orders, orders.c.id == order_events.c.order_id)
                                     .group_by(orders.c.order_no, order_events.c.kind)).all())
        cases = sorted(conn.execute(select(settlement_cases.c.case_class, settlement_cases.c.status)).all())
        outbox = conn.execute(select(func.count()).select_from(notification_outbox)).scalar_one()
    assert per_line == []
    return {"matches": [tuple(m) for m in matches], "lines": lines, "states": order_states,
            "events": [tuple(e) for e in events], "cases": [tuple(c) for c in cases], "outbox": outbox}  # fmt: skip


@pytest.mark.parametrize("workers", WORKERS)
def test_workers_reconciling_the_same_day_match_each_line_once(pg, tmp_path, workers):
    from test_settlement import build_store, day_files

    from yidi.db import init_db, make_engine
    from yidi.schema_settlement import statement_files

    build_store(pg)
    files = [str(f) for f in day_files(tmp_path)]
    raced = at_once(workers, reconcile_day, store_url(pg), files, engine=pg)
    assert failures(raced) == []
    assert sorted(status for r in raced for status in r["files"]) == sorted(["ingested"] * 4 + ["duplicate"] * 4 * (
        workers - 1))  # each file taken in by one worker, found a duplicate by the others
    with pg.connect() as conn:  # each file's record keeps the lines its one ingestion added
        assert sorted(conn.execute(select(statement_files.c.new_lines))) == [(1,), (2,), (3,), (6,)]
    single = make_engine(f"sqlite:///{tmp_path / 'alone.db'}")
    init_db(single)
    build_store(single)
    assert sum(r["matched"] for r in raced) == reconcile_day(store_url(single), files)["matched"] == 9  # once each
    assert settlement_outcome(pg) == settlement_outcome(single)


# --- notices: each delivered once ----------------------------------------------------------------------------------


def send_due(url: str) -> int:
    from test_notify import NOW

    from flows.compose import in_process
    from flows.notifications import notification_pass

    engine = open_store(url)
    report = notification_pass(in_process, engine=engine, now=NOW)
    engine.dispose()
    return report.sent


@pytest.mark.parametrize("workers", WORKERS)
def test_workers_sending_at_once_deliver_each_notice_once(pg, relays, workers):  # noqa: F811 (the fixture)
    from test_notify import make_order, notice

    from yidi.outbox import enqueue

    smtp, _sms, _settings = relays
    with pg.begin() as conn:
        oid = make_order(conn)
        enqueue(conn, pd.DataFrame([notice(oid, "email", f"w{i}@example.com", f"race:{i}") for i in range(30)]))
    sent = at_once(workers, send_due, store_url(pg), engine=pg)
    assert failures(sent) == [] and sum(sent) == 30
    assert sorted(m["To"] for m in smtp.received()) == sorted(f"w{i}@example.com" for i in range(30))
    assert count_by(pg, notification_outbox.c.status) == {"sent": 30}


# --- tracking: no waybill queried twice inside its interval --------------------------------------------------------


def poll_once(url: str, policy, query_url: str, now) -> int:
    from test_tracking_cycle import CREDS

    from flows.compose import in_process
    from flows.tracking import poll_cycle
    from tasks.tracking.polling import make_client, make_pacer

    engine = open_store(url)
    with make_client(policy, pacer=make_pacer(policy, shared_limit=False), credentials=CREDS,
                     query_url=query_url) as client:  # fmt: skip
        summary = poll_cycle(in_process, engine=engine, client=client, policy=policy, now=now, actor="worker")
    engine.dispose()
    return summary["due"]


@pytest.mark.parametrize("workers", WORKERS)
def test_workers_polling_at_once_query_each_waybill_once(pg, workers):
    from test_tracking_cycle import _world

    from yidi.schema import shipments

    world_gen = _world(pg)
    world = next(world_gen)
    try:
        world.add(24, "normal")
        world.clock.advance(hours=4)
        due = at_once(workers, poll_once, store_url(pg), world.policy, world.carrier.query_url, world.clock.now(),
                      engine=pg)  # fmt: skip
        assert failures(due) == [] and sum(due) == 24  # the due waybills shared out, none taken twice
        stats = world.carrier.stats()
        assert stats["too_frequent"] == 0 and stats["requests"] == 24
        with pg.connect() as conn:
            polled = {t for (t,) in conn.execute(select(shipments.c.last_polled_at))}
        assert polled == {world.clock.now()}
        world.clock.advance(minutes=31)  # past the interval: due again, once
        again = at_once(workers, poll_once, store_url(pg), world.policy, world.carrier.query_url,
                        world.clock.now(), engine=pg)  # fmt: skip
        assert sum(again) == 24 and world.carrier.stats()["too_frequent"] == 0
        assert world.carrier.stats()["requests"] == 48
    finally:
        world_gen.close()
