"""peak (`make peak`, `python -m bench.peak`): a normal day's orders, then a 10x burst (双十一), through the whole
pipeline on PostgreSQL with 1, 2 and 4 worker processes, at compressed time.

Arrivals: ``PEAK_N`` orders (default 100) are the normal day, dropped in ``DAY_TICKS`` equal template drops one tick
apart; then the burst: ten times the day's rate for ``BURST_TICKS`` ticks (``PEAK_N`` x 10 / 4 x 2 orders). A tick is
``TICK_S`` real seconds; the stand-ins' shared clock (``bench/pipeline.py``) runs at ``SPEED`` x real time, so a
tick is six simulated hours and parcels travel their 1-3 simulated days in seconds. Every drop is cut between
orders into one part per worker; a worker takes its part when the tick comes (or later, if its last pass ran
over: the file waits in the inbox, and that is backlog too), runs every stage once (``Worker.cycle``), and after
the last drop keeps cycling until nothing waits for an unattended stage or nothing moved for 72 simulated hours
(a normal parcel's whole route takes at most 66).

Backlog: sampled by this process every ``SAMPLE_S``: orders dropped so far (by the schedule) minus orders in a
final state (settled, closed, auto-rejected, rejected, cancelled). It ends at what waits for a person or for money
(delivered but unpaid by the money side's stand-in, approved but heavier than every carrier takes). Time to drain
the burst: from the burst's first drop to the first sample at that end value.

Per stage, over every worker: orders moved, busy seconds, orders per busy second and the database's share of them
(``bench.parts``' sampler: driver CPU plus the wall time waiting for PostgreSQL). Writes
``bench/results/peak.md`` and ``bench/results/peak.png`` (the backlog over time, one line per worker count).
The machine's other load is in the report: on a shared 2-core machine the figures move run to run.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results")
DEFAULT_N = 100  # ~3-4 minutes for the three worker counts on 2 shared cores
BURST_FACTOR = 10
DAY_TICKS = 4  # the normal day: 4 drops, 6 simulated hours apart
BURST_TICKS = 2  # the burst: 10x the day's rate for 12 simulated hours
TICK_S = 1.5
SPEED = 14_400  # simulated seconds per real second: a tick is 6 simulated hours
SAMPLE_S = 0.5
IDLE_HOURS = 72
WORKER_COUNTS = (1, 2, 4)
FINAL = ("settled", "closed", "auto_rejected", "rejected", "cancelled")


def schedule(n: int) -> list[int]:
    """Orders per drop: the day's ``n`` in ``DAY_TICKS`` drops, then the burst at ``BURST_FACTOR`` x that rate."""
    day = [n // DAY_TICKS + (1 if k < n % DAY_TICKS else 0) for k in range(DAY_TICKS)]
    burst_per_tick = n * BURST_FACTOR // DAY_TICKS
    return day + [burst_per_tick] * BURST_TICKS


def make_drops(sizes: list[int], workers: int, folder: Path) -> list[list[Path]]:
    """drops[k][w]: worker w's part of drop k (one generated file cut between orders; order numbers unique)."""
    import pandas as pd

    from bench.ingest import make_csv
    from bench.pipeline import shift_order_times

    folder.mkdir(parents=True, exist_ok=True)
    whole = folder / "all.csv"
    make_csv(sum(sizes), whole, seed=21)
    frame = shift_order_times(pd.read_csv(whole, dtype=str, keep_default_na=False))
    order_no = frame["订单号"].str[1:].astype(int)  # B000000001 … in file order
    drops, first = [], 1
    for k, size in enumerate(sizes):
        parts = []
        for w in range(workers):
            lo = first + size * w // workers
            hi = first + size * (w + 1) // workers
            path = folder / f"drop-{k}-{w}.csv"
            frame[(order_no >= lo) & (order_no < hi)].to_csv(path, index=False)
            parts.append(path)
        drops.append(parts)
        first += size
    return drops


def _worker(store: dict, standins, parts: list[str], index: int, workers: int, started: float, tick_s: float,
            idle_hours: float, out) -> None:
    from bench.pipeline import Worker

    worker = Worker(store, standins=standins, sample=True, part=(index, workers))
    try:
        for k, csv in enumerate(parts):
            wait = started + k * tick_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the next drop has not arrived yet (a bench, not a test: real arrivals)
            worker.cycle(Path(csv))
        worker.until_drained(None, idle_hours=idle_hours, max_cycles=500)
        out.put(worker.clocked.as_dict())
    finally:
        worker.close()


def run_config(workers: int, sizes: list[int], workdir: Path, *, tick_s: float = TICK_S, speed: float = SPEED,
               sample_s: float = SAMPLE_S, idle_hours: float = IDLE_HOURS) -> dict:
    """One run with ``workers`` processes on a fresh store: its backlog samples, stage clocks and end counts."""
    import flows.fulfilment  # noqa: F401  (the step lists imported before the workers fork)
    import flows.intake  # noqa: F401
    import flows.review  # noqa: F401
    import flows.settlement  # noqa: F401
    import flows.tracking  # noqa: F401
    from bench.pipeline import Standins, drop_store, make_store, state_counts, worker_results
    from yidi.db import make_engine

    drops = make_drops(sizes, workers, workdir / f"drops-{workers}")
    store = make_store(workdir / "stores")
    fork = multiprocessing.get_context("fork")
    out = fork.Queue()
    standins = Standins(speed=speed)
    samples: list[tuple[float, int, dict]] = []
    stop = threading.Event()
    released_at = [k * tick_s for k in range(len(sizes))]
    try:
        started = time.monotonic() + 0.5  # every worker forked before the first drop
        procs = [fork.Process(target=_worker, args=(store, standins, [str(d[w]) for d in drops], w, workers, started,
                                                    tick_s, idle_hours, out)) for w in range(workers)]  # fmt: skip
        for proc in procs:
            proc.start()
        engine = make_engine(store["url"])

        def sample() -> None:
            while True:
                t = time.monotonic() - started
                counts = state_counts(engine) if t >= 0 else {}
                dropped = sum(size for size, at in zip(sizes, released_at, strict=True) if at <= max(t, 0))
                final = sum(counts.get(s, 0) for s in FINAL)
                samples.append((round(max(t, 0.0), 2), dropped - final, counts))
                if stop.wait(sample_s):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        clocks = worker_results(out, procs)
        wall = time.monotonic() - started
        stop.set()
        sampler.join()
        end = state_counts(engine)
        final = sum(end.get(s, 0) for s in FINAL)
        samples.append((round(wall, 2), sum(sizes) - final, end))
        engine.dispose()
    finally:
        stop.set()  # no sample of a store being dropped
        standins.stop()
        drop_store(store)
    burst_at = released_at[DAY_TICKS] if len(sizes) > DAY_TICKS else 0.0
    floor = samples[-1][1]
    drained_at = next(t for t, waiting, _c in samples if t >= burst_at and waiting == floor)
    return {"workers": workers, "wall_s": round(wall, 2), "burst_at_s": burst_at,
            "drain_s": round(drained_at - burst_at, 2), "peak_backlog": max(w for _t, w, _c in samples),
            "end_backlog": floor, "end_counts": dict(sorted(end.items())),
            "backlog": [(t, w) for t, w, _c in samples], "clocks": clocks}  # fmt: skip


def run(n: int = DEFAULT_N, worker_counts=WORKER_COUNTS, workdir: Path | None = None, **options) -> dict:
    from bench.scale import _stages

    sizes = schedule(n)
    with tempfile.TemporaryDirectory(prefix="yidi-peak-") as tmp:
        base = workdir or Path(tmp)
        runs = []
        for workers in worker_counts:
            result = run_config(workers, sizes, base, **options)
            result["stages"] = _stages(result.pop("clocks"))
            runs.append(result)
    return {"n": n, "drops": sizes, "orders": sum(sizes), "tick_s": options.get("tick_s", TICK_S),
            "speed": options.get("speed", SPEED), "cores": os.cpu_count(), "load": os.getloadavg(), "runs": runs}


def markdown(report: dict) -> str:
    from bench.pipeline import STAGES

    runs = report["runs"]
    lines = [
        "# peak: a normal day, then a 10x burst",
        "",
        f"{report['orders']} orders on PostgreSQL: the day's {report['n']} in {DAY_TICKS} drops "
        f"({', '.join(map(str, report['drops'][:DAY_TICKS]))}), then the burst "
        f"({', '.join(map(str, report['drops'][DAY_TICKS:]))}), one drop every {report['tick_s']} s "
        f"(the stand-ins' clock at {report['speed']:,}x: {report['tick_s'] * report['speed'] / 3600:g} simulated "
        f"hours). {report['cores']} cores; load average at the end "
        f"{' / '.join(f'{x:.1f}' for x in report['load'])} (a shared machine: figures move run to run).",
        "",
        "## Burst",
        "",
        "| workers | wall s | burst drained in s | peak backlog | backlog left (waits for a person or money) |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['workers']} | {r['wall_s']} | {r['drain_s']} | {r['peak_backlog']} | {r['end_backlog']} |"
              for r in runs]  # fmt: skip
    lines += ["", "## Stages (orders per busy second of every worker; database share of that time)", "",
              "| stage | " + " | ".join(f"{r['workers']} worker(s)" for r in runs) + " |",
              "|---|" + "---:|" * len(runs)]  # fmt: skip
    for stage in STAGES:
        cells = []
        for r in runs:
            s = r["stages"][stage]
            share = f"{s['database_share']:.0%}" if s["database_share"] is not None else "–"
            cells.append(f"{s['orders']} in {s['seconds']} s = {s['orders_per_s'] or 0} /s, db {share}")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    cells = [f"{r['stages']['all']['seconds']} s, db {r['stages']['all']['database_share']:.0%}" for r in runs]
    lines.append("| all | " + " | ".join(cells) + " |")
    lines += ["", "## Orders per state at the end", "",
              "| workers | " + " | ".join(sorted({s for r in runs for s in r["end_counts"]})) + " |",
              "|---:|" + "---:|" * len({s for r in runs for s in r["end_counts"]})]  # fmt: skip
    states = sorted({s for r in runs for s in r["end_counts"]})
    lines += [f"| {r['workers']} | " + " | ".join(str(r["end_counts"].get(s, 0)) for s in states) + " |" for r in runs]
    lines += ["", "## Backlog over time", "", "![backlog](peak.png)", "",
              "Orders dropped so far minus orders in a final state, sampled every "
              f"{SAMPLE_S} s; the dashed line is the burst's first drop.", ""]  # fmt: skip
    return "\n".join(lines)


def write(report: dict, folder: Path = RESULTS) -> tuple[Path, Path]:
    from bench.png import line_chart

    folder.mkdir(parents=True, exist_ok=True)
    md, png = folder / "peak.md", folder / "peak.png"
    md.write_text(markdown(report), encoding="utf-8")
    series = {f"{r['workers']} worker" + ("s" if r["workers"] > 1 else ""): r["backlog"] for r in report["runs"]}
    burst_at = report["runs"][0]["burst_at_s"] if report["runs"] else 0.0
    line_chart(series, png, x_label="seconds", y_label="backlog (orders)", marks=[(burst_at, "burst")])
    return md, png


def main() -> None:
    n = int(os.environ.get("PEAK_N", DEFAULT_N))
    report = run(n)
    md, png = write(report)
    print(markdown(report))
    print(f"\nwrote {md} and {png}")


if __name__ == "__main__":
    main()
