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


def main() -> int:
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        print(f"README.md has no {BEGIN} … {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{table(results)}\n{END}{tail}", encoding="utf-8")
    print(f"README.md: {len(results)} benchmark(s) from {RESULTS.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
