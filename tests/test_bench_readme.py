"""The README's benchmark figures are the committed results: the table is exactly what ``make bench-report`` writes
from ``bench/results/*.json``, and every figure the text around it quotes is in those files."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402

README = (ROOT / "README.md").read_text(encoding="utf-8")
RESULTS = {r["name"]: r for r in report.load_results()}


def prose() -> str:
    """The text after the generated block, whitespace folded."""
    after = README.split(report.END, 1)[1].split("\n## ", 1)[0]
    return " ".join(after.split())


def test_the_readme_table_is_the_report_of_the_committed_results():
    block = README.split(report.BEGIN, 1)[1].split(report.END, 1)[0].strip()
    assert block == report.render(list(RESULTS.values())), "run `make bench-report` after committing results"


def test_the_text_says_within_target_and_over_exactly_as_the_results_do():
    text = prose()
    within = re.search(r"What they say: (.*?) are within their targets", text).group(1)
    over = re.search(r"within their targets on the honest baselines; (.*?) (?:is|are) \*\*over\*\*", text).group(1)
    named_within = set(re.findall(r"`(\w+)`", within))
    named_over = set(re.findall(r"`(\w+)`", over))
    assert named_within == {n for n, r in RESULTS.items() if r["within_target"]}
    assert named_over == {n for n, r in RESULTS.items() if not r["within_target"]}


def test_every_figure_quoted_from_a_result_is_in_it():
    text = prose()
    address = RESULTS["address"]
    assert f"`address` at {address['n']:,} rows classifies {address['free_text']['per_s_distinct']:,} distinct" in text
    assert f"({address['free_text']['per_s_repeated']:,}/s on the same rows" in text
    assert f"{address['structured']['per_s_distinct']:,}/s from structured fields" in text
    assert f"cpca-new {round(address['free_text']['baseline_accuracy'] * 100)}%" in text
    stock = RESULTS["stock_sync"]
    assert (f"`stock_sync` at {stock['n']:,} changed figures wrote at most {stock['max_writes_in_any_second']} in any "
            f"second at R={stock['rate_limit_per_second']:g}, none throttled") in text  # fmt: skip
    assert stock["throttled"] == 0
    poll = RESULTS["poll"]
    assert (f"`poll` at {poll['n']:,} shipments sent at most {poll['max_requests_in_any_second']} requests in any "
            f"second at R={poll['rate_limit_per_second']:g}, none refused") in text  # fmt: skip
    assert poll["carrier_rate_limited"] == 0
    quoted_names = set()
    for name, result in RESULTS.items():  # a ratio quoted as `name` (N×) is the result's, to the digits quoted
        for quoted in re.findall(rf"`{name}` \((\d+(?:\.\d+)?)×", text):
            digits = len(quoted.split(".")[1]) if "." in quoted else 0
            assert round(result["ratio"], digits) == float(quoted), (name, quoted, result["ratio"])
            quoted_names.add(name)
    assert quoted_names == {n for n, r in RESULTS.items() if not r["within_target"]}  # each one over is quoted


def test_the_peak_drain_times_quoted_are_the_committed_report():
    """``make peak``'s committed report (bench/results/peak.md): the README quotes its burst drain times per worker
    count exactly."""
    peak = ROOT / "bench" / "results" / "peak.md"
    assert peak.exists(), "make peak's report is committed (bench/results/peak.md)"
    burst = peak.read_text(encoding="utf-8").split("## Burst", 1)[1].split("\n## ", 1)[0]  # not the other tables
    rows = re.findall(r"^\| (\d+) \| [\d.]+ \| ([\d.]+|None) \|", burst, flags=re.M)
    drained = {int(workers): seconds for workers, seconds in rows}
    assert set(drained) == {1, 2, 4}
    text = " ".join(README.split())
    assert (f"burst drained in {drained[1]} s with one worker, {drained[2]} s with two, {drained[4]} s with four"
            in text)
