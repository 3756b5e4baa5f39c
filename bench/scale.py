"""scale: end-to-end throughput of the order pipeline on PostgreSQL with two workers against one.

Work: ``n`` orders in template drops go through intake → automated review (+ the reviewers' approvals as one batch)
→ fulfilment (allocation, parcels, e-waybills from the carrier stand-in) → tracking (the Kuaidi100 stand-in on a
simulated clock) → settlement (the money side's files for the delivered orders, reconciled), each stage's own step
list (``bench/pipeline.py``), on a fresh PostgreSQL schema per run. A worker is a process that runs every stage in
turn until a pass moves nothing.

Ours: two worker processes at once on the same store, each with half of the drop (and half of the money side's
files); the stages' conditional updates keep them from doing an order twice. Baseline: one worker with the whole
drop. ``ratio`` = two workers' wall time / one worker's (below 1 is a speed-up; ``speed_up`` = 1 / ratio).

Parity: both configurations end with every order and the same orders per state, delivered and settled counted
together (a worker never loses or doubles an order; which delivered orders the money side's stand-in leaves unpaid
depends on how its files are cut).
Extra figures (one sampled run each): seconds, database share and orders per stage for one and two workers — what
limits the speed-up on this 2-core machine, where PostgreSQL shares the two cores with the workers.
Not measured here: the Dask runner with 2 processes (the review's chunks through ``[runtime] task_runner = "dask"``
need a Prefect flow run; see README: scaling out).
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from bench import Skip

NAME = "scale"
DEFAULT_N = 20_000
TARGET = 1.0
BASELINE = "the same pipeline with one worker process (ratio = 2 workers / 1 worker; below 1 is a speed-up)"


def prepare(n: int, workdir: Path, case=None) -> dict:
    import flows.fulfilment  # noqa: F401  (the step lists imported before the workers fork)
    import flows.intake  # noqa: F401
    import flows.review  # noqa: F401
    import flows.settlement  # noqa: F401
    import flows.tracking  # noqa: F401
    from bench.ingest import make_csv
    from bench.pipeline import make_store

    try:
        probe = make_store(workdir / "probe")
    except Skip:
        raise
    from bench.pipeline import drop_store

    drop_store(probe)
    whole = workdir / "drop-all.csv"
    make_csv(n, whole, seed=21)
    halves = [workdir / "drop-a.csv", workdir / "drop-b.csv"]
    _split(whole, halves)
    return {"n": n, "workdir": workdir, "whole": whole, "halves": halves, "runs": 0}


def _split(whole: Path, parts: list[Path]) -> None:
    """The drop cut in two between orders (rows of one order stay together)."""
    import pandas as pd

    frame = pd.read_csv(whole, dtype=str, keep_default_na=False)
    ids = frame["订单号"]
    cut = ids.drop_duplicates().iloc[len(ids.drop_duplicates()) // 2]
    first = (ids < cut).to_numpy()
    frame[first].to_csv(parts[0], index=False)
    frame[~first].to_csv(parts[1], index=False)


def _worker(store: dict, standins, csv: str | None, part: tuple[int, int], sample: bool, out) -> None:
    from bench.pipeline import Worker

    worker = Worker(store, standins=standins, sample=sample, part=part)
    try:
        worker.until_drained(Path(csv) if csv else None)
        out.put(worker.clocked.as_dict())
    finally:
        worker.close()


def run_workers(store: dict, drops: list[Path], sample: bool = False) -> list[dict]:
    from bench.pipeline import Standins

    fork = multiprocessing.get_context("fork")
    out = fork.Queue()
    standins = Standins()
    procs = [fork.Process(target=_worker, args=(store, standins, str(csv), (i, len(drops)), sample, out))
             for i, csv in enumerate(drops)]  # fmt: skip
    try:
        for proc in procs:
            proc.start()
        results = [out.get() for _ in procs]
        for proc in procs:
            proc.join()
            if proc.exitcode:
                raise RuntimeError(f"a worker failed (exit {proc.exitcode})")
    finally:
        standins.stop()
    return results


def _run(ctx: dict, drops: list[Path], sample: bool = False) -> tuple[dict, list[dict]]:
    from bench.pipeline import drop_store, make_store, state_counts
    from yidi.db import make_engine

    store = make_store(ctx["workdir"] / "stores")
    try:
        clocks = run_workers(store, drops, sample)
        engine = make_engine(store["url"])
        counts = state_counts(engine)
        engine.dispose()
    finally:
        drop_store(store)
    return counts, clocks


def ours(ctx: dict) -> None:
    _run(ctx, ctx["halves"])


def baseline(ctx: dict) -> None:
    _run(ctx, [ctx["whole"]])


def _delivered_or_later(counts: dict) -> dict:
    """Orders per state with delivered and settled together: the money side's stand-in draws its troubles (short
    payments, COD not yet remitted) per file, so which delivered orders settle depends on how the files are cut."""
    out = {k: v for k, v in counts.items() if k not in ("delivered", "settled")}
    out["delivered_or_settled"] = counts.get("delivered", 0) + counts.get("settled", 0)
    return out


def parity(ctx: dict) -> None:
    two, _ = _run(ctx, ctx["halves"])
    one, _ = _run(ctx, [ctx["whole"]])
    assert sum(two.values()) == sum(one.values()) == ctx["n"], (two, one)
    assert _delivered_or_later(two) == _delivered_or_later(one), (
        f"orders per state differ: two workers {two}, one worker {one}")


def _stages(clocks: list[dict]) -> dict:
    from bench.pipeline import STAGES

    out = {}
    for stage in STAGES:
        seconds = sum(c["seconds"][stage] for c in clocks)
        database = sum(c["database"][stage] for c in clocks)
        orders = sum(c["orders"][stage] for c in clocks)
        out[stage] = {"seconds": round(seconds, 2), "orders": orders,
                      "orders_per_s": round(orders / seconds, 1) if seconds else None,
                      "database_share": round(database / seconds, 3) if seconds else None}  # fmt: skip
    total = sum(v["seconds"] for v in out.values())
    database = sum(c["database"][s] for c in clocks for s in STAGES)
    out["all"] = {"seconds": round(total, 2), "database_share": round(database / total, 3) if total else None}
    return out


def extra(ctx: dict) -> dict:
    import time

    started = time.perf_counter()
    _, one = _run(ctx, [ctx["whole"]], sample=True)
    one_s = time.perf_counter() - started
    started = time.perf_counter()
    _, two = _run(ctx, ctx["halves"], sample=True)
    two_s = time.perf_counter() - started
    return {"sampled_one_worker_s": round(one_s, 2), "sampled_two_workers_s": round(two_s, 2),
            "speed_up_sampled": round(one_s / two_s, 2), "one_worker": _stages(one), "two_workers": _stages(two),
            "cores": os.cpu_count(), "dask": "not measured (see the module docstring)"}  # fmt: skip
