"""The benchmark's two sides agree: Great Expectations and the hand-written pandas masks find the same failures."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

# bench/ is a top-level folder of scripts, not an installed package: import it from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
bench_review = importlib.import_module("bench.review")


@pytest.mark.parametrize("case", ["1pct", "10pct"])
def test_gx_and_pandas_find_the_same_failures(tmp_path, case):
    settings = bench_review.bench_settings(tmp_path)
    inputs, failing = bench_review.make_inputs(3000, bench_review.FAIL_RATES[case], seed=3)
    ctx = bench_review.Ctx(inputs, settings, 3000, failing)
    evaluation = bench_review.ours(ctx)
    failures, decisions = bench_review.baseline(ctx)
    ours = set(zip(evaluation.failures["order_id"], evaluation.failures["rule"], strict=True))
    theirs = set(zip(failures["order_id"], failures["rule"], strict=True))
    assert ours == theirs
    # Exactly the orders given a fault fail, and each fault is found.
    assert evaluation.failures["order_id"].nunique() == failing
    assert (evaluation.decisions["outcome"] == decisions["outcome"]).all()


def test_kept_results_render_as_offline_data_docs(tmp_path):
    from expectations.engine import build_data_docs, keep_results, validator_for

    settings = bench_review.bench_settings(tmp_path)
    inputs, _ = bench_review.make_inputs(500, 0.1, seed=5)
    ctx = bench_review.Ctx(inputs, settings, 500, 0)
    evaluation = bench_review.ours(ctx)
    written = keep_results(evaluation.outcome, "run-test", "chunk0000", home=tmp_path)
    stored = json.loads(written[0].read_text(encoding="utf-8"))
    # Failing ids are kept compactly (at most 20 per expectation); the full list lives in the store.
    assert all(len(r["result"].get("unexpected_index_list") or []) <= 20 for r in stored["results"])
    assert validator_for(settings)
    index = build_data_docs("run-test", home=tmp_path, settings=settings)
    pages = list(index.parent.rglob("*.html"))
    assert len(pages) == 5  # the index and one page per area suite
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "https://" not in text and "http://" not in text, page
    assert "review_v3_price_payment" in index.read_text(encoding="utf-8")
