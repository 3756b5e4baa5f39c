"""poll: one carrier-polling cycle over 10,000 active shipments against the stand-in limited to R requests/s.

Ours: ``flows.tracking.poll_cycle`` run ``in_process`` — the ``poll-carriers`` flow's step list (due selection,
paced queries from a thread pool, retries, storing checkpoints once, incidents, claims, notices, order states,
time-based exceptions), on a SQLite store, against the stand-in carrier in its own process (so the carrier does
not share our interpreter). Baseline: the ideal cycle, N / R seconds — every request exactly at the allowed rate
and nothing else. ``ratio`` = cycle time / (N / R); target 1.2.

The stand-in counts every request: ``max_requests_in_any_second`` (sliding one-second window) and ``rate_limited``
(requests its token bucket refused) prove R was never exceeded. ``BENCH_POLL_RATE`` sets R (default 500).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

NAME = "poll"
DEFAULT_N = 10_000
TARGET = 1.2
RATE = float(os.environ.get("BENCH_POLL_RATE", "500"))
BASELINE = f"ideal cycle N/R at R={RATE:g} requests/s (the carrier's limit, nothing else)"
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
FIRST_POLL = T0 + timedelta(hours=8)  # every parcel scanned and moving, none delivered yet


def _policy():
    from yidi.tracking_policy import TrackingPolicy

    # The model's defaults are the shipped defaults (tests/test_tracking_status.py checks they match).
    return TrackingPolicy().model_copy(
        update={"requests_per_second": RATE, "http_workers": 6, "parallel_batches": 3, "batch_size": 1000}
    )


def prepare(n: int, workdir: Path, case=None):
    from demo.standins.kuaidi100 import spawn
    from demo.tracking import DEMO_SCENARIO_WEIGHTS, make_shipped_orders, standin_registrations
    from yidi.db import init_db, make_engine

    db = workdir / "poll.db"
    engine = make_engine(f"sqlite:///{db}")
    init_db(engine)
    with engine.begin() as conn:
        make_shipped_orders(conn, n, shipped_at=T0, expected_delivery_date=(T0 + timedelta(days=4)).date())
        registrations = standin_registrations(conn, scenario_weights=DEMO_SCENARIO_WEIGHTS)
    engine.dispose()
    carrier = spawn(
        rate_per_second=RATE, burst=max(1.0, RATE / 10), start=FIRST_POLL.isoformat(),
        customer="bench-customer", key="bench-key",
    )  # fmt: skip
    carrier.register_many(registrations)
    return {"db": str(db), "carrier": carrier, "n": n}


def ours(ctx) -> None:
    from sqlalchemy import func, select

    from connectors.kuaidi100 import Credentials
    from flows.compose import in_process
    from flows.tracking import poll_cycle
    from tasks.tracking.polling import make_client, make_pacer
    from yidi.db import make_engine
    from yidi.schema import shipments

    engine = make_engine(f"sqlite:///{ctx['db']}")
    with engine.connect() as conn:
        last = conn.execute(select(func.max(shipments.c.last_polled_at))).scalar()
    # Each run is the next cycle: 31 simulated minutes after the previous one, so every waybill is due again.
    as_of = FIRST_POLL if last is None else last + timedelta(minutes=31)
    carrier = ctx["carrier"]
    carrier.set_clock(as_of)
    policy = _policy()
    client = make_client(
        policy, pacer=make_pacer(policy, shared_limit=False), credentials=Credentials("bench-customer", "bench-key"),
        query_url=carrier.query_url,
    )  # fmt: skip
    with client:
        summary = poll_cycle(in_process, engine=engine, client=client, policy=policy, now=as_of, actor="bench")
    engine.dispose()
    answered = sum(v for k, v in summary["outcomes"].items() if k in ("ok", "no_result"))
    if summary["due"] != ctx["n"] or answered != ctx["n"]:
        raise RuntimeError(f"incomplete cycle: due {summary['due']}, outcomes {summary['outcomes']}")


def baseline(ctx) -> None:
    time.sleep(ctx["n"] / RATE)


def extra(ctx) -> dict:
    stats = ctx["carrier"].stats()
    return {
        "rate_limit_per_second": RATE,
        "carrier_requests": stats["requests"],
        "max_requests_in_any_second": stats["max_requests_in_any_second"],
        "carrier_rate_limited": stats["rate_limited"],
        "carrier_too_frequent": stats["too_frequent"],
        "rate_never_exceeded": stats["max_requests_in_any_second"] <= RATE and stats["rate_limited"] == 0,
    }
