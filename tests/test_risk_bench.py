"""The risk benchmarks' parity holds on small data: ours and the baseline give the same KPI values and scores."""

from __future__ import annotations

import pytest

import bench.credit
import bench.kpi


@pytest.mark.parametrize("module", [bench.kpi, bench.credit], ids=["kpi", "credit"])
def test_risk_bench_parity_holds_on_small_data(module, tmp_path):
    ctx = module.prepare(1500, tmp_path)
    module.parity(ctx)


def test_credit_parity_fails_when_a_side_is_wrong(tmp_path, monkeypatch):
    ctx = bench.credit.prepare(1500, tmp_path)
    original = bench.credit._baseline

    def wrong(c):
        out = original(c)
        out.loc[out.index[0], "score"] += 1
        return out

    monkeypatch.setattr(bench.credit, "_baseline", wrong)
    with pytest.raises(AssertionError, match="scores differ"):
        bench.credit.parity(ctx)
