"""`make peak` at a tiny size: the report's structure and its exact order counts (not its timings).

A day of 8 orders in 4 drops, then the 10x burst (20 orders a drop, 2 drops): 48 orders, two worker processes on
one PostgreSQL store at once. Each order lands once, is decided by the automated review once (whichever worker got
there), and every order that got a waybill is delivered or settled at the end.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from conftest import REQUIRE_POSTGRES, postgres_problem

from bench import peak


def test_the_schedule_is_a_day_then_ten_times_its_rate():
    assert peak.schedule(8) == [2, 2, 2, 2, 20, 20]
    assert peak.schedule(150) == [38, 38, 37, 37, 375, 375]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4:idat])[0]
    raw = zlib.decompress(data[idat + 4:idat + 4 + length])
    assert len(raw) == height * (1 + width * 3)  # one filter byte and RGB per pixel on every row
    return width, height


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_peak_reports_every_order_once_per_stage(database, tmp_path, monkeypatch):
    if database == "sqlite":
        pytest.skip("make peak runs several worker processes on one store at once: PostgreSQL only (SQLite has "
                    "one writer at a time)")
    problem = postgres_problem()
    if problem:
        if REQUIRE_POSTGRES:
            pytest.fail(f"YIDI_REQUIRE_POSTGRES=1 but {problem}")
        pytest.skip(problem)
    monkeypatch.setenv("YIDI_HOME", str(tmp_path / "home"))
    # Drops 0.2 s apart and the stand-ins' clock at 72,000x: parcels arrive within seconds.
    report = peak.run(8, (2,), workdir=tmp_path, tick_s=0.2, speed=72_000, sample_s=0.2)
    assert report["orders"] == 48 and report["drops"] == [2, 2, 2, 2, 20, 20]
    (run,) = report["runs"]
    stages, end = run["stages"], run["end_counts"]
    assert run["workers"] == 2 and sum(end.values()) == 48
    assert stages["intake"]["orders"] == 48
    # Every order decided by the automated review once across the two workers (overlapping runs skip the others').
    assert stages["review"]["orders"] == 48
    shipped = stages["fulfilment"]["orders"]
    assert stages["tracking"]["orders"] == shipped == end.get("delivered", 0) + end.get("settled", 0)
    assert stages["settlement"]["orders"] == end.get("settled", 0)
    assert end.get("auto_rejected", 0) + shipped + end.get("approved", 0) == 48
    # The backlog: dropped so far minus final; it ends at what waits for money or a person.
    final = sum(end.get(s, 0) for s in peak.FINAL)
    assert run["end_backlog"] == 48 - final == run["backlog"][-1][1]
    assert run["peak_backlog"] == max(w for _t, w in run["backlog"]) <= 48
    assert run["burst_at_s"] == 0.8 and 0 <= run["drain_s"] <= run["wall_s"]

    md, png = peak.write(report, tmp_path / "results")
    text = md.read_text(encoding="utf-8")
    for heading in ("## Burst", "## Stages", "## Orders per state at the end", "## Backlog over time"):
        assert heading in text
    assert "| intake | 48 in " in text and "| review | 48 in " in text
    assert f"| 2 | {run['wall_s']} | {run['drain_s']} | {run['peak_backlog']} | {run['end_backlog']} |" in text
    assert _png_size(png.read_bytes()) == (720, 400)
