"""Each benchmark's parity check passes on small real-shaped data, and fails when either side is wrong.

A benchmark times nothing until ``parity(ctx)`` passes, so a baseline that does less (or different) work cannot
make a ratio look good; these tests keep that check honest at a size that runs in seconds.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bench(name: str):
    return importlib.import_module(f"bench.{name}")


def test_allocate_parity_holds_and_catches_a_wrong_allocation(tmp_path, monkeypatch):
    allocate = bench("allocate")
    ctx = allocate.prepare(3000, tmp_path, None)
    allocate.parity(ctx)
    real = allocate.baseline

    def short_one_line(ctx):
        real(ctx)
        alloc, ships, winners = ctx["result"]
        ctx["result"] = (alloc.iloc[1:], ships, winners)

    monkeypatch.setattr(allocate, "baseline", short_one_line)
    with pytest.raises(AssertionError, match="1 allocations differ"):
        allocate.parity(ctx)


def test_reconcile_parity_holds_and_catches_a_missing_rule(tmp_path, monkeypatch):
    settle = bench("settle")
    ctx = settle.prepare(4000, tmp_path)
    settle.parity(ctx)
    real = settle.duckdb_match
    monkeypatch.setattr(settle, "duckdb_match", lambda *a: (m := real(*a))[m["rule"] != "refund_original"])
    with pytest.raises(AssertionError, match="only ours"):
        settle.parity(ctx)


def test_store_insert_parity_holds_and_catches_a_changed_value(tmp_path, monkeypatch):
    store_insert = bench("store_insert")
    ctx = store_insert.prepare(2000, tmp_path, "sqlite")
    store_insert.parity(ctx)
    frame = ctx["frame"]
    # The baseline writes a different name for one row: the stored rows no longer agree.
    changed = frame.copy()
    changed.loc[5, "customer_name"] = "某某"
    real = store_insert.baseline
    monkeypatch.setattr(store_insert, "baseline", lambda c, target=None: real({**c, "frame": changed}, target))
    with pytest.raises(AssertionError, match="customer_name"):
        store_insert.parity(ctx)


def test_review_parity_holds(tmp_path):
    review = bench("review")
    settings = review.bench_settings(tmp_path)
    inputs, failing = review.make_inputs(2000, review.FAIL_RATES["10pct"], seed=3)
    review.parity(review.Ctx(inputs, settings, 2000, failing))


def test_review_parity_catches_a_missed_rule(tmp_path, monkeypatch):
    """The baseline's masks forget one rule (unknown items): its failures and decisions no longer agree with ours."""
    review = bench("review")
    settings = review.bench_settings(tmp_path)
    inputs, failing = review.make_inputs(2000, review.FAIL_RATES["10pct"], seed=3)
    real = review.pandas_failures
    monkeypatch.setattr(review, "pandas_failures",
                        lambda frame, s: (f := real(frame, s))[f["reason_code"] != "ITEM_UNKNOWN"])  # fmt: skip
    with pytest.raises(AssertionError, match="failures differ: [1-9][0-9]* only ours, 0 only baseline"):
        review.parity(review.Ctx(inputs, settings, 2000, failing))


def test_ingest_parity_holds_and_catches_a_wrong_freight(tmp_path, monkeypatch):
    """Both sides land the same 300 orders and their lines; a baseline that stores one freight 1 yuan too high is
    caught, naming that one order on each side."""
    import sqlite3

    ingest = bench("ingest")
    monkeypatch.setenv("YIDI_HOME", str(tmp_path / "home"))
    ctx = ingest.prepare(300, tmp_path)
    ingest.parity(ctx)
    real = ingest.baseline

    def one_freight_wrong(ctx):
        real(ctx)
        with sqlite3.connect(ctx["workdir"] / "baseline.db") as conn:
            conn.execute("UPDATE orders SET freight_fen = freight_fen + 100 WHERE channel_order_id = 'B000000007'")

    monkeypatch.setattr(ingest, "baseline", one_freight_wrong)
    with pytest.raises(AssertionError, match=r"orders: ours 300 rows, the baseline 300; 1 only ours \(e\.g\. \[\('B000000007'"):
        ingest.parity(ctx)


def test_ingest_parity_catches_a_lost_line(tmp_path, monkeypatch):
    import sqlite3

    ingest = bench("ingest")
    monkeypatch.setenv("YIDI_HOME", str(tmp_path / "home"))
    ctx = ingest.prepare(300, tmp_path)
    real = ingest.baseline

    def one_line_lost(ctx):
        real(ctx)
        with sqlite3.connect(ctx["workdir"] / "baseline.db") as conn:
            conn.execute("DELETE FROM order_lines WHERE id = (SELECT max(id) FROM order_lines)")

    monkeypatch.setattr(ingest, "baseline", one_line_lost)
    with pytest.raises(AssertionError, match=r"order lines: ours (\d+) rows, the baseline (?!\1)\d+; 1 only ours"):
        ingest.parity(ctx)


def test_kpi_parity_holds_and_catches_a_wrong_value(tmp_path, monkeypatch):
    kpi = bench("kpi")
    ctx = kpi.prepare(3000, tmp_path)
    kpi.parity(ctx)
    real = kpi._baseline

    def one_value_off(ctx):
        frame = real(ctx)
        first = frame["value"].first_valid_index()
        frame.loc[first, "value"] = frame.loc[first, "value"] + 1
        return frame

    monkeypatch.setattr(kpi, "_baseline", one_value_off)
    with pytest.raises(AssertionError, match="^1 KPI values differ"):
        kpi.parity(ctx)


def test_credit_parity_holds_and_catches_a_wrong_score(tmp_path, monkeypatch):
    credit = bench("credit")
    ctx = credit.prepare(3000, tmp_path)
    credit.parity(ctx)
    real = credit._baseline

    def one_score_off(ctx):
        frame = real(ctx)
        frame.loc[0, "score"] += 0.1
        return frame

    monkeypatch.setattr(credit, "_baseline", one_score_off)
    with pytest.raises(AssertionError, match="^1 scores differ"):
        credit.parity(ctx)


# --- the harness: a failed parity check or a slower implementation makes `python -m bench` exit 1 ---------------


@pytest.fixture
def harness(tmp_path, monkeypatch):
    import bench.__main__ as harness

    monkeypatch.setattr(harness, "RESULTS", tmp_path / "results")
    monkeypatch.setenv("BENCH_RUNS", "3")
    monkeypatch.setenv("BENCH_N", "3000")
    return harness


def test_the_harness_passes_allocate_within_target_and_records_its_split(harness, tmp_path):
    import json

    assert harness.main(["allocate"]) == 0
    result = json.loads((tmp_path / "results" / "allocate.json").read_text())
    assert (result["parity"], result["runs"], result["n"], result["within_target"]) == ("checked", 3, 3000, True)
    # allocate works in memory: no database, Great Expectations or Prefect in its split.
    assert {k: result["split_s"][k] for k in ("database", "database_wait", "great_expectations", "prefect")} == {
        "database": 0.0, "database_wait": 0.0, "great_expectations": 0.0, "prefect": 0.0}


def test_the_harness_exits_1_when_parity_fails(harness, tmp_path, monkeypatch, capsys):
    allocate = bench("allocate")
    real = allocate.baseline

    def short_one_line(ctx):
        real(ctx)
        alloc, ships, winners = ctx["result"]
        ctx["result"] = (alloc.iloc[1:], ships, winners)

    monkeypatch.setattr(allocate, "baseline", short_one_line)
    assert harness.main(["allocate"]) == 1
    assert "1 allocations differ" in capsys.readouterr().out
    assert not (tmp_path / "results" / "allocate.json").exists()  # nothing timed, nothing written


def test_the_harness_exits_1_when_ours_is_slower_than_its_target(harness, tmp_path, monkeypatch):
    """A slower implementation (ours doing its work four times) is over allocate's 1.2 target: exit status 1."""
    import json

    allocate = bench("allocate")
    real = allocate.ours
    monkeypatch.setattr(allocate, "ours", lambda ctx: [real(ctx) for _ in range(4)][-1])
    assert harness.main(["allocate"]) == 1
    result = json.loads((tmp_path / "results" / "allocate.json").read_text())
    assert result["within_target"] is False
    assert result["ratio"] > allocate.TARGET
