"""`python -m bench.report`: write the README's benchmark table from the committed ``bench/results/*.json``.

A figure in the README is always one of these files: the table sits between the two marker comments in README.md
and is replaced whole, so editing it by hand is undone by the next report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BEGIN, END = "<!-- bench-report:begin -->", "<!-- bench-report:end -->"


def _ratio(result: dict) -> str:
    band = result.get("ratio_spread")
    text = f"{result['ratio']:.2f}"
    if band:
        text += f" ({band['min']:.2f}–{band['max']:.2f})"
    if result.get("noisy"):
        text += " noisy"
    return text


def _cases(result: dict) -> str:
    parts = [f"{key[6:]} {value:.2f}" for key, value in result.items() if key.startswith("ratio_") and key != "ratio_spread"]
    return "; ".join(parts)


def table(results: list[dict]) -> str:
    lines = [
        "| benchmark | n | ours s | baseline s | ratio (min–max of pairs) | by case | target | parity | commit, date |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        prov = r.get("provenance", {})
        commit = (prov.get("commit") or "?")[:8] + ("+" if prov.get("uncommitted_changes") else "")
        mark = "" if r.get("within_target", True) else " **over**"
        lines.append(
            f"| `{r['name']}` | {r['n']:,} | {r['ours_s']:.3f} | {r['baseline_s']:.3f} | {_ratio(r)}{mark} | "
            f"{_cases(r)} | ≤ {r['target']} | {r.get('parity', 'not checked')} | {commit}, "
            f"{(prov.get('date') or '?')[:10]} |"
        )
    machines = sorted({(m.get("cores"), m.get("memory_gib"), m.get("cpu"))
                       for r in results if (m := r.get("provenance", {}).get("machine"))})  # fmt: skip
    loads = [r["provenance"]["machine"].get("load_average_1m") for r in results if r.get("provenance")]
    for cores, memory, cpu in machines:
        lines.append("")
        lines.append(f"Machine: {cores} cores, {memory} GiB, {cpu}; 1-minute load when each started: "
                     f"{min(loads)}–{max(loads)}.")  # fmt: skip
    return "\n".join(lines)


SPLIT_COLUMNS = (("database", "database CPU"), ("database_wait", "database wait"),
                 ("great_expectations", "Great Expectations"), ("prefect", "Prefect"), ("ours", "our code"),
                 ("other", "other threads"))  # fmt: skip


def _taken(provenance: dict) -> str:
    commit = (provenance.get("commit") or "?")[:8] + ("+" if provenance.get("uncommitted_changes") else "")
    load = provenance.get("machine", {}).get("load_average_1m", "?")
    return f"{commit}, {(provenance.get('date') or '?')[:10]}, load {load}"


def _split_rows(result: dict) -> list[tuple[str, dict, float | None, str]]:
    """(label, split, wall, taken) for the result, or for each of its cases."""
    taken = _taken(result.get("split_provenance") or result.get("provenance") or {})
    cases = [(key, value) for key, value in result.items() if isinstance(value, dict) and "split_s" in value]
    if cases:
        return [(f"`{result['name']}` {key}", value["split_s"], value.get("split_wall_s"), taken) for key, value in cases]
    if "split_s" in result:
        return [(f"`{result['name']}`", result["split_s"], result.get("split_wall_s"), taken)]
    return []


def split_table(results: list[dict]) -> str:
    """Where ours spends its time: thread-seconds per part (``bench.parts``) from one untimed run of each case."""
    rows = [row for r in results for row in _split_rows(r)]
    if not rows:
        return ""
    lines = [
        "Where ours spends its time (thread-seconds from one more, untimed run at the same size under `bench.parts`' "
        "stack sampler; every part is CPU time except database wait, which on a loaded machine also holds the wait for a "
        "CPU: see the 1-minute load when the split was taken):",
        "",
        "| benchmark | wall s | " + " | ".join(label for _, label in SPLIT_COLUMNS) + " | commit, date, load |",
        "|---|---|" + "---|" * len(SPLIT_COLUMNS) + "---|",
    ]
    for label, split, wall, taken in rows:
        cells = [f"{split.get(part, 0.0):.2f}" for part, _ in SPLIT_COLUMNS]
        lines.append(f"| {label} | {wall if wall is not None else '?'} | " + " | ".join(cells) + f" | {taken} |")
    return "\n".join(lines)


SCALE_CONFIGS = (("one_worker", "1 worker process", "one_worker"), ("two_workers", "2 worker processes", "two_workers"),
                 ("dask", "Dask runner, 2 processes", "dask"))  # fmt: skip


def scale_table(results: list[dict]) -> str:
    """The ``scale`` result's configurations side by side: the pipeline's own seconds (median of the timed runs),
    orders per second, the speed-up over one worker, and where the time went (busy seconds per stage, the
    database's share from the sampled runs)."""
    scale = next((r for r in results if r["name"] == "scale" and "pipeline_s" in r), None)
    if scale is None:
        return ""
    one = scale["pipeline_s"]["one_worker"]["median_s"]
    lines = [
        f"Scale-out (`scale`, {scale['n']:,} orders end to end on PostgreSQL, {scale['cores']} cores; the pipeline's "
        "own seconds without the store's setup, the Dask cluster's or the Prefect server's start; busy seconds per "
        "stage summed over the workers, from one sampled run each, the Dask one in its flow-run process):",
        "",
        "| configuration | pipeline s (runs) | orders/s | speed-up | intake s | review s | fulfilment s | tracking s | "
        "settlement s | database share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label, stages_key in SCALE_CONFIGS:
        figures = scale["pipeline_s"].get(key)
        if not figures:
            continue
        stages = scale.get(stages_key, {})
        busy = " | ".join(f"{stages[s]['seconds']:.1f}" if s in stages else "?"
                          for s in ("intake", "review", "fulfilment", "tracking", "settlement"))  # fmt: skip
        share = (stages.get("all") or {}).get("database_share")
        lines.append(f"| {label} | {figures['median_s']:.1f} ({figures['runs']}) | {figures['orders_per_s']:.2f} | "
                     f"{one / figures['median_s']:.2f}× | {busy} | {f'{share:.0%}' if share is not None else 'not sampled'} |")  # fmt: skip
    loads = scale.get("load_average_1m_after_dask_runs") or []
    lines.append("")
    lines.append(f"Timed pairs (the store's setup included): 2 workers {scale['ours_s']:.1f} s, 1 worker "
                 f"{scale['baseline_s']:.1f} s, ratio {scale['ratio']:.2f} ({scale['runs']} pair(s)).")
    lines.append(f"1-minute load: {scale['provenance']['machine'].get('load_average_1m')} when the result was written"
                 + (f", {', '.join(str(x) for x in loads)} after the Dask runs" if loads else "") + ".")
    return "\n".join(lines)


def load_results() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]


def render(results: list[dict]) -> str:
    """What goes between the README's markers: the figures table, then the split table."""
    body = table(results)
    if scaled := scale_table(results):
        body += "\n\n" + scaled
    if split := split_table(results):
        body += "\n\n" + split
    return body


def main() -> int:
    results = load_results()
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        print(f"README.md has no {BEGIN} … {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{render(results)}\n{END}{tail}", encoding="utf-8")
    print(f"README.md: {len(results)} benchmark(s) from {RESULTS.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
