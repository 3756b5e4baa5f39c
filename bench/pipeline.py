"""The order pipeline end to end on a PostgreSQL store against the stand-ins, for ``bench/scale.py`` and
``bench/peak.py`` (not a benchmark itself: no ``NAME``).

A store is a fresh schema on the PostgreSQL at ``YIDI_TEST_POSTGRES_URL`` with the demo's catalog and customers,
both warehouses stocked deep (a throughput run measures the stages, not stock-outs), and a policy file. A worker
runs the stages' own step lists in process (``flows.compose.in_process``), each on what its state owns:

intake (a template csv drop, ``order_intake``) → automated review (``automated_review``) → fulfilment
(allocation, parcels, e-waybills from the carrier stand-in: ``handoff``) → tracking (the Kuaidi100 stand-in on a
simulated clock that has every parcel delivered: ``poll_cycle``) → settlement (the money side's files for the
delivered orders, from ``demo.settlement.demo_payments``, reconciled: ``reconciliation``).

Each stage call is timed, with the database's share of it (``bench.parts``: driver CPU plus the wall time spent
waiting for PostgreSQL), and the number of orders it moved (its state counts before and after).
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import flow

from bench.postgres import drop_schemas, new_schema, schema_url

STAGES = ("intake", "review", "fulfilment", "tracking", "settlement")
# The states each stage takes orders out of (what waits for it: its backlog).
WAITING = {
    "intake": (),  # files in the inbox, counted by the caller
    "review": ("received",),
    "fulfilment": ("approved",),
    "tracking": ("shipped", "in_transit", "allocated"),
    "settlement": ("delivered",),
}
DONE = ("settled", "closed")
# The stand-ins' simulated clock starts here, not at today: at thousands of times real time a run of minutes covers
# weeks, and money steps count working days ahead on the official calendar, which ``chinesecalendar`` knows only up
# to its last published year (CalendarOutOfRange after it): from here a year of simulated time is left, 72 minutes
# at 7,200x, 6 at the peak test's 72,000x. The generated drops' order times (2026-11-20..27) move back by
# ``ORDER_SHIFT`` so they fall just before it (``shift_order_times``).
SIM_START = datetime(2025, 12, 28, tzinfo=UTC)
ORDER_SHIFT = pd.Timedelta(days=335)  # 2026-11-20 -> 2025-12-20
STOCK_PER_ITEM = 10_000_000
TRACKING_KEYS = ("bench-customer", "bench-key")


def _policy_text(runtime: str, dask_workers: int, review_chunk: int) -> str:
    return f"""[notifications]
notify_on_receipt = true

[review]
chunk_size = {review_chunk}

[runtime]
task_runner = "{runtime}"
dask_workers = {dask_workers}
"""


def make_store(workdir: Path, *, runtime: str = "thread", dask_workers: int = 2, review_chunk: int = 200_000,
               chunk_rows: int = 50_000) -> dict:
    """A fresh schema with reference data and stock; sets YIDI_HOME, YIDI_DATABASE_URL and YIDI_CONFIG."""
    from demo.data import demo_catalog
    from demo.flows import write_reference_files
    from tasks.fulfilment.receipts import load_stock_file
    from tasks.fulfilment.stock import sync_warehouses
    from tasks.reference import load_catalog, load_customers
    from yidi.db import _cached_engine, init_db, make_engine
    from yidi.settings import get_settings, reload_settings

    schema = new_schema("scale_pipe", migrated=False)
    home = workdir / schema
    home.mkdir(parents=True, exist_ok=True)
    policy = home / "yidi.toml"
    policy.write_text(_policy_text(runtime, dask_workers, review_chunk), encoding="utf-8")
    os.environ.update({"YIDI_HOME": str(home), "YIDI_DATABASE_URL": schema_url(schema), "YIDI_CONFIG": str(policy)})
    reload_settings()
    _cached_engine.cache_clear()
    engine = make_engine(schema_url(schema))
    init_db(engine)
    catalog_path, customers_path = write_reference_files(home)
    load_catalog.fn(catalog_path)  # the tasks' own functions: no Prefect run here
    load_customers.fn(customers_path)
    catalog = demo_catalog()
    products = catalog[(catalog["kind"] == "product")]["code"].tolist()
    stock = pd.DataFrame([(w, code, STOCK_PER_ITEM, "", "", "bench") for code in products
                          for w in ("CQ-XY", "CQ-LJ")],
                         columns=["仓库", "商品编码", "数量", "批次号", "有效期至", "备注"])  # fmt: skip
    stock_path = home / "stock.csv"
    stock.to_csv(stock_path, index=False, encoding="utf-8")
    with engine.begin() as conn:
        sync_warehouses(conn, get_settings().fulfilment)
        load_stock_file(conn, stock_path, actor="bench")
    engine.dispose()
    from yidi.db import get_engine

    get_engine().dispose()  # no pooled connection for forked workers to inherit and share
    _cached_engine.cache_clear()
    return {"schema": schema, "home": str(home), "url": schema_url(schema), "policy": str(policy),
            "chunk_rows": chunk_rows}  # fmt: skip


def drop_store(store: dict) -> None:
    drop_schemas(store["schema"])


def shift_order_times(frame: pd.DataFrame) -> pd.DataFrame:
    """A generated drop (``bench.ingest.make_csv``) with its order times ``ORDER_SHIFT`` earlier, before
    ``SIM_START``."""
    times = pd.to_datetime(frame["下单时间"], format="%Y-%m-%d %H:%M") - ORDER_SHIFT
    return frame.assign(下单时间=times.dt.strftime("%Y-%m-%d %H:%M"))


def state_counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.exec_driver_sql("SELECT state, count(*) FROM orders GROUP BY state").all())


def backlog(counts: dict[str, int]) -> dict[str, int]:
    """Orders waiting for each stage (after intake) and done."""
    out = {stage: sum(counts.get(s, 0) for s in states) for stage, states in WAITING.items() if states}
    out["done"] = sum(counts.get(s, 0) for s in DONE)
    return out


@dataclass
class StageClock:
    """Seconds, database seconds and orders moved per stage, over every call of every worker."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    database: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    orders: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))

    def add(self, other: dict) -> None:
        for key in ("seconds", "database", "orders"):
            for stage, value in other[key].items():
                getattr(self, key)[stage] += value

    def as_dict(self) -> dict:
        return {"seconds": self.seconds, "database": self.database, "orders": self.orders}


def _database_seconds(fn) -> tuple[object, float, float]:
    """(result, wall seconds, database seconds: driver CPU + waiting for PostgreSQL) of ``fn()``."""
    from bench.parts import sample_parts

    box = {}

    def call(_ctx):
        box["value"] = fn()

    parts = sample_parts(call, None)
    split = parts["parts_s"]
    return box.get("value"), parts["wall_s"], split.get("database", 0.0) + split.get("database_wait", 0.0)


# --- the stages' step lists, called alike in process and inside a flow run on a task runner ------------------------


def intake_steps(run, engine, csv: str, chunk_rows: int) -> dict:
    from flows.intake import order_intake

    results = order_intake(run, files=[csv], options={"spreadsheet": {"chunk_rows": chunk_rows}}, engine=engine,
                           actor="bench")  # fmt: skip
    return results[f"file:{csv}"]


def review_steps(run, engine) -> dict:
    from flows.review import automated_review
    from yidi.settings import get_settings

    return automated_review(run, engine=engine, settings=get_settings(), build_docs=False, keep_results=False)


def fulfilment_steps(run, engine, carrier_url: str, as_of: datetime) -> dict:
    from flows.fulfilment import handoff

    return handoff(run, carrier_api_url=carrier_url, send_purchase_orders=False, as_of=as_of)


def tracking_steps(run, engine, query_url: str, now: datetime) -> dict:
    from connectors.kuaidi100 import Credentials
    from flows.tracking import poll_cycle
    from tasks.tracking.polling import make_client, make_pacer
    from yidi.settings import get_settings

    policy = get_settings().tracking.model_copy(update={"requests_per_second": 2000.0})
    client = make_client(policy, pacer=make_pacer(policy, shared_limit=False), credentials=Credentials(*TRACKING_KEYS),
                         query_url=query_url)  # fmt: skip
    with client:
        return poll_cycle(run, engine=engine, client=client, policy=policy, now=now, actor="bench")


def settlement_steps(run, engine, files: list[str], now: datetime) -> dict:
    from flows.settlement import reconciliation

    result = reconciliation(run, files=[Path(f) for f in files], engine=engine, actor="bench", now=now)
    return {"settled": result["settled"].get("settled", 0)}


STEP_LISTS = {"intake": intake_steps, "review": review_steps, "fulfilment": fulfilment_steps,
              "tracking": tracking_steps, "settlement": settlement_steps}  # fmt: skip


@flow(name="stage-run", validate_parameters=False, persist_result=False)
def stage_run(stage: str, url: str, args: dict) -> dict:
    """One stage's step list as a Prefect flow run: every step a task run, the chunks (a drop's, the review's,
    settlement's files) submitted to the flow's task runner. Its parameters are plain values: Prefect ships the run's
    context, parameters included, to the Dask worker with every chunk (module level: shipped by reference)."""
    from flows.compose import with_prefect
    from yidi.db import get_engine

    return STEP_LISTS[stage](with_prefect, get_engine(url), **args)


PREFECT_PORT = int(os.environ.get("BENCH_PREFECT_PORT", "4421"))


@contextmanager
def dask_cluster(processes: int = 2, port: int = PREFECT_PORT):
    """A local Dask cluster of ``processes`` worker processes (one thread each) and a Prefect server on ``port``
    (its own SQLite file) for the flow runs; yields the scheduler's address. The workers are forked from this
    process, which has imported the stages' code and holds the store's environment (``YIDI_DATABASE_URL``,
    ``YIDI_CONFIG``): as ``dask worker`` processes started beside a deployment's worker with the same checkout."""
    import tempfile

    import dask
    from distributed import LocalCluster
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )

    from expectations.engine import validator_for
    from yidi.settings import get_settings

    validator_for(get_settings())  # built once here (a Great Expectations context: seconds), inherited by the fork
    with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}):
        cluster = LocalCluster(n_workers=processes, threads_per_worker=1, processes=True, dashboard_address=None)
    folder = tempfile.mkdtemp(prefix="bench-prefect-")
    try:
        with temporary_settings({PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{folder}/prefect.db"}):
            server = SubprocessASGIServer(port=port)
            server.start(timeout=180)
        try:
            with temporary_settings({PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                yield cluster.scheduler_address
        finally:
            server.stop()
    finally:
        cluster.close()
        shutil.rmtree(folder, ignore_errors=True)


class Worker:
    """One worker's stage calls on the store (in this process), against its own stand-ins. ``dask``: the address of
    a Dask scheduler; each stage then runs as a Prefect flow run whose chunks (a drop's, the review's, settlement's
    files) go to that cluster's worker processes (``[runtime] task_runner = "dask"``); without it, in process."""

    def __init__(self, store: dict, *, standins: Standins, seed: int = 7, sample: bool = True,
                 part: tuple[int, int] = (0, 1), dask: str | None = None):
        from yidi.db import _cached_engine, make_engine
        from yidi.settings import get_settings

        _cached_engine.cache_clear()  # steps that open the store by URL get this process's own engine
        self.store, self.seed, self.sample, self.part = store, seed, sample, part
        self.engine = make_engine(store["url"])
        self.settings = get_settings()
        self.clock, self.carrier, self.tracker = standins.clock, standins.carrier, standins.tracker
        self.clocked = StageClock()
        self.payment_batch = 0
        self.flow = None
        if dask:
            from prefect_dask import DaskTaskRunner

            self.flow = stage_run.with_options(task_runner=DaskTaskRunner(address=dask))

    def close(self) -> None:
        self.engine.dispose()

    def steps(self, stage: str, **args) -> dict:
        """The stage's step list: in process, or as a flow run on the Dask runner."""
        if self.flow is None:
            from flows.compose import in_process

            return STEP_LISTS[stage](in_process, self.engine, **args)
        return self.flow(stage, self.store["url"], args)

    def _timed(self, stage: str, fn, moved) -> object:
        if self.sample:
            value, wall, database = _database_seconds(fn)
        else:
            started = time.perf_counter()
            value, database = fn(), 0.0
            wall = time.perf_counter() - started
        self.clocked.seconds[stage] += wall
        self.clocked.database[stage] += database
        self.clocked.orders[stage] += int(moved(value))
        return value

    def intake(self, csv: Path) -> dict:
        return self._timed("intake", lambda: self.steps("intake", csv=str(csv), chunk_rows=self.store["chunk_rows"]),
                           lambda summary: summary.get("new", 0))  # fmt: skip

    def review(self) -> dict:
        return self._timed("review", lambda: self.steps("review"),
                           # the orders this run decided (another worker's overlapping run may have seen the same
                           # candidates and decided some first: its conditional updates skip them here)
                           lambda summary: summary.get("auto_rejected", 0) + summary.get("pending_review", 0))  # fmt: skip

    def approve(self) -> int:
        """The reviewers: every order waiting for a person is approved in one batch transition (people's clicks are
        not what scales; ``yidi review`` decides one order at a time). Counted in the review stage."""
        from yidi.lifecycle import OrderState, transition_orders

        def call():
            with self.engine.begin() as conn:
                ids = [row[0] for row in conn.exec_driver_sql(
                    "SELECT id FROM orders WHERE state = 'pending_review' ORDER BY id")]  # fmt: skip
                if not ids:
                    return 0
                return len(transition_orders(conn, ids, OrderState.APPROVED, actor="bench-reviewer",
                                             skip_illegal=True, reason="approved (bench reviewer)").moved)

        return self._timed("review", call, lambda moved: 0)

    def fulfilment(self) -> dict:
        def moved(summary):
            waybills = summary.get("waybills") or {}
            return waybills.get("created", waybills.get("shipments", 0)) or 0

        return self._timed("fulfilment", lambda: self.steps("fulfilment", carrier_url=self.carrier.url,
                                                            as_of=self.clock.now()), moved)  # fmt: skip

    def tracking(self) -> dict:
        return self._timed("tracking", lambda: self.steps("tracking", query_url=self.tracker.query_url,
                                                          now=self.clock.now()),
                           lambda summary: (summary.get("orders_moved") or {}).get("delivered", 0))  # fmt: skip

    def settlement(self) -> dict:
        from sqlalchemy import select

        from demo.settlement import demo_payments, write_demo_files
        from yidi import schema
        from yidi.bulk import read_frame

        def call():
            o, s = schema.orders.c, schema.shipments.c
            with self.engine.connect() as conn:
                order_frame = read_frame(conn, select(o.id, o.order_no, o.channel_order_id, o.customer_name,
                                                      o.payment_method, o.order_total_fen, o.order_time, o.state,
                                                      o.installments).where(
                    o.state == "delivered", o.id % self.part[1] == self.part[0]))  # fmt: skip
                shipment_frame = read_frame(conn, select(s.order_id, s.carrier, s.waybill_no, s.cod_amount_fen,
                                                         s.delivered_at).where(
                    s.waybill_no.is_not(None), s.order_id.in_(order_frame["id"].tolist() or [0])))  # fmt: skip
            if order_frame.empty:
                return {"delivered": 0}
            self.payment_batch += 1
            frames = demo_payments(order_frame, shipment_frame, seed=self.seed + self.payment_batch,
                                   now=self.clock.now())
            folder = Path(self.store["home"]) / f"payments-{os.getpid()}-{self.payment_batch}"
            files = write_demo_files(frames, folder)
            result = self.steps("settlement", files=[str(f) for f in files], now=self.clock.now())
            return {"delivered": len(order_frame), "settled": result["settled"]}

        return self._timed("settlement", call, lambda summary: summary.get("settled", 0))

    def cycle(self, csv: Path | None) -> int:
        """One pass of every stage (intake only when there is a drop); returns the orders the pass moved."""
        before = sum(self.clocked.orders.values())
        if csv is not None:
            self.intake(csv)
        self.review()
        self.approve()
        self.fulfilment()
        self.tracking()
        self.settlement()
        return sum(self.clocked.orders.values()) - before

    def until_drained(self, csv: Path | None, idle_hours: float = 96, max_cycles: int = 200) -> None:
        """Cycles until nothing waits for a stage that needs no person, or nothing moved for ``idle_hours`` of
        simulated time (parcels travel meanwhile; what is left then waits for a person or a payment)."""
        last_move = self.clock.now()
        if self.cycle(csv):
            last_move = self.clock.now()
        for _ in range(max_cycles):
            waiting = backlog(state_counts(self.engine))
            if not (waiting["review"] or waiting["fulfilment"] or waiting["tracking"] or waiting["settlement"]):
                return
            if (self.clock.now() - last_move).total_seconds() > idle_hours * 3600:
                return
            if self.cycle(None):
                last_move = self.clock.now()


class Standins:
    """One carrier e-waybill stand-in and one Kuaidi100 stand-in for every worker, on one simulated clock that runs
    at ``speed`` x real time: started before the workers fork, so all of them (and the stand-ins' threads, which
    stay in this process) read the same time from the machine's monotonic clock."""

    def __init__(self, speed: float = 7_200, seed: int = 7, start: datetime = SIM_START):
        from demo.standins import carrier_shipping
        from demo.standins.kuaidi100 import start as kuaidi100
        from demo.standins.parcel_routes import SimClock

        self.clock = SimClock(start, speed=speed)
        self.carrier = carrier_shipping.start()
        self.tracker = kuaidi100(customer=TRACKING_KEYS[0], key=TRACKING_KEYS[1], clock=self.clock, seed=seed,
                                 auto_register=True, scenario_weights={"normal": 1.0}, min_interval_minutes=0)

    def stop(self) -> None:
        self.carrier.stop()
        self.tracker.stop()


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def worker_results(out, procs) -> list[dict]:
    """What each forked worker put on ``out`` (its stage clocks), then every worker joined: a worker that died,
    before or after answering, fails the run instead of hanging it (``peak`` and ``scale`` fork the same way)."""
    import queue

    results = []
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=2))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode]
            if dead:
                raise RuntimeError(f"a worker failed (exit {dead[0]})") from None
    for proc in procs:
        proc.join()
        if proc.exitcode:
            raise RuntimeError(f"a worker failed (exit {proc.exitcode})")
    return results
