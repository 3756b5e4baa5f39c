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
