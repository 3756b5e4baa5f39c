"""`python -m bench [NAME ...]`: run benchmarks beside their baselines and write bench/results/NAME.json.

A benchmark module defines ``NAME``, ``DEFAULT_N``, ``BASELINE`` (what the baseline is), ``TARGET`` (the limit on
ours / baseline), ``prepare(n, workdir, case)`` -> ctx, ``ours(ctx)`` and ``baseline(ctx)``; optionally ``CASES``
(several data shapes, e.g. failure rates: the result gets ``ratio_<case>`` and ``ratio`` is the worst) and
``extra(ctx)`` -> dict of further figures. ``prepare`` may raise ``bench.Skip`` (e.g. no PostgreSQL).

Parity first: a module's ``parity(ctx)`` runs ours and the baseline once and raises ``AssertionError`` naming the
first difference when they do not produce the same rows, matches, allocations or decisions; nothing is timed
until it passes. A module without ``parity`` is reported as "parity: not checked".

Where the time goes: after the timed pairs, ours runs once more under ``bench.parts``' stack sampler, and the
result's ``split_s`` gives the thread-seconds spent in the database, Great Expectations, Prefect, our own code and
other threads (``split_wall_s`` is that run's wall time), so a regression shows which part moved.
``python -m bench --split-only NAME …`` adds (or renews) the split in committed results without timing them again,
with its own ``split_provenance``.

Each run of ours and of the baseline happens in a forked child (alternating, ``BENCH_RUNS`` pairs, default 5), so
neither warms the other's caches in-process and each child's peak memory is its own. Min, median and max of both
sides and of the ratio are kept; a ratio whose spread (max - min) is over 10% of its median is marked noisy.
Environment: ``BENCH_N`` scales every benchmark's row count; ``BENCH_RUNS`` sets the pairs.

Results go to ``bench/results/NAME.json`` with the commit, the machine, the versions and the date (committed:
``make bench-report`` writes the README's table from them). The exit status is 1 when a benchmark fails, fails
its parity check, or is over its target.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import pkgutil
import resource
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

import bench

RESULTS = Path(__file__).with_name("results")


Skip = bench.Skip


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _child(fn, ctx, conn) -> None:
    try:
        start_rss = _rss_mb()
        started = time.perf_counter()
        fn(ctx)
        elapsed = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        conn.send(("ok", elapsed, peak, max(peak - start_rss, 0.0)))
    except BaseException:  # noqa: BLE001 - report any failure to the parent
        conn.send(("error", traceback.format_exc(), 0, 0))
    finally:
        conn.close()


def _parts_child(fn, ctx, conn) -> None:
    from bench.parts import sample_parts

    try:
        conn.send(("ok", sample_parts(fn, ctx)))
    except BaseException:  # noqa: BLE001 - report any failure to the parent
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def parts_in_child(fn, ctx) -> dict:
    """Where one run of ``fn(ctx)`` spends its time (``bench.parts``), measured in a forked child, untimed."""
    fork = multiprocessing.get_context("fork")
    parent_end, child_end = fork.Pipe(duplex=False)
    proc = fork.Process(target=_parts_child, args=(fn, ctx, child_end))
    proc.start()
    child_end.close()
    status, value = parent_end.recv()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"benchmark child failed:\n{value}")
    return value


def timed_in_child(fn, ctx) -> tuple[float, float, float]:
    """Run ``fn(ctx)`` in a forked child; returns (seconds, peak RSS MB, peak growth MB)."""
    fork = multiprocessing.get_context("fork")
    parent_end, child_end = fork.Pipe(duplex=False)
    proc = fork.Process(target=_child, args=(fn, ctx, child_end))
    proc.start()
    child_end.close()
    status, value, peak, growth = parent_end.recv()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"benchmark child failed:\n{value}")
    return value, peak, growth


NOISY_SPREAD = 0.10


def spread(values: list[float]) -> dict:
    return {"min": round(min(values), 4), "median": round(statistics.median(values), 4), "max": round(max(values), 4)}


def run_case(module, n: int, case: str | None, runs: int, workdir: Path) -> dict:
    ctx = module.prepare(n, workdir, case) if case is not None else module.prepare(n, workdir, None)
    if hasattr(module, "parity"):
        module.parity(ctx)  # AssertionError: the benchmark fails before anything is timed
        parity = "checked"
    else:
        parity = "not checked"
    ours_s, base_s, ratios, ours_peak, base_peak, ours_growth = [], [], [], [], [], []
    for _ in range(runs):
        t_ours, p_ours, g_ours = timed_in_child(module.ours, ctx)
        t_base, p_base, _ = timed_in_child(module.baseline, ctx)
        ours_s.append(t_ours)
        base_s.append(t_base)
        ratios.append(t_ours / t_base)
        ours_peak.append(p_ours)
        base_peak.append(p_base)
        ours_growth.append(g_ours)
    ratio_median = statistics.median(ratios)
    result = {
        "ours_s": round(statistics.median(ours_s), 4),
        "baseline_s": round(statistics.median(base_s), 4),
        "ratio": round(ratio_median, 3),
        "ours_spread_s": spread(ours_s),
        "baseline_spread_s": spread(base_s),
        "ratio_spread": spread(ratios),
        "noisy": (max(ratios) - min(ratios)) / ratio_median > NOISY_SPREAD,
        "parity": parity,
        "peak_mb": round(max(ours_peak), 1),
        "peak_growth_mb": round(max(ours_growth), 1),
        "baseline_peak_mb": round(max(base_peak), 1),
        "runs": runs,
    }
    # Where ours spends its time (database, Great Expectations, Prefect, our code), from one more, untimed run.
    split = parts_in_child(module.ours, ctx)
    result["split_s"] = split["parts_s"]
    result["split_wall_s"] = split["wall_s"]
    if hasattr(module, "extra"):
        result.update(module.extra(ctx))
    return result


def run_benchmark(module, runs: int, scale: int | None) -> dict:
    n = scale or module.DEFAULT_N
    result: dict = {"name": module.NAME, "n": n, "baseline": module.BASELINE, "target": module.TARGET}
    cases = getattr(module, "CASES", None)
    with tempfile.TemporaryDirectory(prefix=f"bench-{module.NAME}-") as tmp:
        if not cases:
            result.update(run_case(module, n, None, runs, Path(tmp)))
        else:
            worst = None
            for case in cases:
                case_dir = Path(tmp) / case
                case_dir.mkdir()
                try:
                    figures = run_case(module, n, case, runs, case_dir)
                except Skip as why:
                    result[f"skipped_{case}"] = str(why)
                    continue
                result[case] = figures
                result[f"ratio_{case}"] = figures["ratio"]
                if worst is None or figures["ratio"] > worst["ratio"]:
                    worst = figures
            if worst is None:
                raise Skip("; ".join(str(v) for k, v in result.items() if k.startswith("skipped_")))
            for key in (
                "ours_s",
                "baseline_s",
                "ratio",
                "ours_spread_s",
                "baseline_spread_s",
                "ratio_spread",
                "noisy",
                "parity",
                "peak_mb",
                "peak_growth_mb",
                "baseline_peak_mb",
                "runs",
                "split_s",
                "split_wall_s",
            ):
                result[key] = worst[key]
    result["within_target"] = result["ratio"] <= module.TARGET
    result["provenance"] = provenance()
    return result


def provenance() -> dict:
    """Where a figure comes from: commit, machine, versions, date (so a README figure can be traced and redone)."""
    import platform
    import subprocess
    from datetime import UTC, datetime
    from importlib import metadata

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()  # fmt: skip
        # Changed code makes a figure unreproducible; the results being written (this run's or the last's) do not.
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                     ":(exclude)bench/results"], cwd=root, capture_output=True, text=True,
                                    check=True).stdout.strip())  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    with open("/proc/meminfo") as handle:
        mem_kb = int(handle.readline().split()[1])
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())  # fmt: skip
    import sqlite3

    return {
        "commit": commit,
        "uncommitted_changes": dirty,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1), "cpu": cpu,
                    "load_average_1m": round(os.getloadavg()[0], 2)},  # fmt: skip
        "versions": {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
        | {p: version(p) for p in ("pandas", "pyarrow", "numpy", "sqlalchemy", "prefect", "great-expectations",
                                   "duckdb", "psycopg", "rapidfuzz")},  # fmt: skip
    }


def discover() -> dict[str, object]:
    modules = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if hasattr(module, "NAME"):
            modules[module.NAME] = module
    return modules


def add_split(module, result: dict) -> dict:
    """Take the split of ours again (``bench.parts``) at the result's size, for each of its cases, and put it in the
    result with its own provenance; the timed figures and their provenance are left as they were."""
    cases = [c for c in getattr(module, "CASES", None) or [] if isinstance(result.get(c), dict)]
    with tempfile.TemporaryDirectory(prefix=f"bench-{module.NAME}-split-") as tmp:
        for case in cases or [None]:
            workdir = Path(tmp) / (case or "run")
            workdir.mkdir()
            split = parts_in_child(module.ours, module.prepare(result["n"], workdir, case))
            target = result[case] if case else result
            target["split_s"], target["split_wall_s"] = split["parts_s"], split["wall_s"]
    result["split_provenance"] = provenance()
    return result


def split_only(console, names: list[str], available: dict) -> int:
    """``python -m bench --split-only NAME …``: add the split to committed results without timing anything again.

    The split is CPU time (except database wait), so unlike a ratio it hardly moves with the machine's load."""
    for name in names:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            console.print(f"[yellow]{name}: no result to add a split to[/yellow]")
            continue
        result = add_split(available[name], json.loads(path.read_text()))
        path.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
        console.print(f"{name}: split added")
    return 0


def main(argv: list[str]) -> int:
    console = Console(width=max(Console().width, 150))
    available = discover()
    only_split = "--split-only" in argv
    argv = [a for a in argv if a != "--split-only"]
    wanted = [w for arg in argv for w in arg.split(",") if w] or sorted(available)
    unknown = [w for w in wanted if w not in available]
    if unknown:
        console.print(f"[red]unknown benchmark(s) {unknown}[/red]; available: {', '.join(sorted(available))}")
        return 2
    if only_split:
        return split_only(console, wanted, available)
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    scale = int(os.environ["BENCH_N"]) if os.environ.get("BENCH_N") else None
    RESULTS.mkdir(exist_ok=True)
    table = Table(title="yidi benchmarks (medians; ratio = ours / baseline, lower is better)")
    for column in ("benchmark", "n", "ours s", "baseline s", "ratio (min–max)", "target", "parity", "peak MB",
                   "baseline"):  # fmt: skip
        table.add_column(column)
    failed = False
    for name in wanted:
        module = available[name]
        console.print(f"running {name} …")
        try:
            result = run_benchmark(module, runs, scale)
        except Skip as why:
            console.print(f"[yellow]{name} skipped:[/yellow] {why}")
            continue
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            console.print(f"[red]{name} failed[/red]\n{traceback.format_exc()}")
            failed = True
            continue
        (RESULTS / f"{name}.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
        mark = "[green]ok[/green]" if result["within_target"] else "[red]over[/red]"
        failed = failed or not result["within_target"]
        band = result["ratio_spread"]
        noisy = " [yellow]noisy[/yellow]" if result["noisy"] else ""
        table.add_row(
            name,
            f"{result['n']:,}",
            f"{result['ours_s']:.3f}",
            f"{result['baseline_s']:.3f}",
            f"{result['ratio']:.2f} ({band['min']:.2f}–{band['max']:.2f}) {mark}{noisy}",
            f"≤ {module.TARGET}",
            result["parity"],
            f"{result['peak_mb']:.0f}",
            module.BASELINE,
        )
    console.print(table)
    console.print(f"results in {RESULTS}/")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
