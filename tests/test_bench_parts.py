"""The benchmarks' split of ours into database, Great Expectations, Prefect, our code and other threads.

``bench.parts.classify`` is checked on stacks built from real file paths (so the rule, innermost frame outwards, is
pinned exactly); the sampler on a real run whose time is almost all inside SQLite; the README's split table on a
result of known figures.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import parts, report  # noqa: E402

SITE = "/venv/lib/python3.12/site-packages"


def stack(*frames: tuple[str, int]):
    """A fake stack from (file, line) pairs, outermost first; returns the innermost frame."""
    frame = None
    for filename, line in frames:
        frame = SimpleNamespace(f_code=SimpleNamespace(co_filename=filename), f_lineno=line, f_back=frame)
    return frame


def line_of(path: str, text: str) -> int:
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


FLOW = (str(ROOT / "flows/intake.py"), 1)
STEP = (str(ROOT / "tasks/intake/landing.py"), 1)
BULK = str(ROOT / "yidi/bulk.py")


@pytest.mark.parametrize(
    ("frames", "part"),
    [
        # our step calling pandas: our code
        ((FLOW, STEP, (f"{SITE}/pandas/core/frame.py", 10)), "ours"),
        # pandas inside Great Expectations inside our validator: Great Expectations
        ((STEP, (str(ROOT / "expectations/engine.py"), 1), (f"{SITE}/great_expectations/validator/v.py", 1),
          (f"{SITE}/pandas/core/series.py", 1)), "great_expectations"),  # fmt: skip
        # Prefect's own work (its client, via anyio) around our flow: Prefect
        ((FLOW, (f"{SITE}/prefect/task_engine.py", 1), (f"{SITE}/anyio/from_thread.py", 1)), "prefect"),
        # our step under a Prefect task: our code, not Prefect
        (((f"{SITE}/prefect/task_engine.py", 1), STEP, (f"{SITE}/numpy/core.py", 1)), "ours"),
        # SQLAlchemy below our step: the database
        ((STEP, (f"{SITE}/sqlalchemy/engine/base.py", 1)), "database"),
        # our own line calling the raw driver (a C call, no driver frame): the database
        ((STEP, (BULK, line_of("yidi/bulk.py", "cursor.execute(sql, flat["))), "database"),
        ((STEP, (BULK, line_of("yidi/bulk.py", "copy.write(data)"))), "database"),
        # ... but only when it is the innermost frame: pandas called from that function is our code
        ((STEP, (BULK, line_of("yidi/bulk.py", "cursor.execute(sql, flat[")), (f"{SITE}/pandas/x.py", 1)), "ours"),
        # psycopg waiting for the server
        ((STEP, (f"{SITE}/psycopg/cursor.py", 1), ("/usr/lib/python3.12/selectors.py", 1)), "database"),
        # a server thread with none of ours on it
        ((("/usr/lib/python3.12/threading.py", 1), (f"{SITE}/uvicorn/server.py", 1)), "other"),
    ],
)
def test_a_stack_is_charged_to_the_innermost_part_it_shows(frames, part):
    assert parts.classify(stack(*frames)) == part


def test_time_inside_sqlite_is_charged_to_the_database():
    """200,000 rows through one executemany: almost all of the sampled time is the database's."""
    rows = [(i, f"name {i}", i * 1.5) for i in range(200_000)]

    def load(_ctx):
        conn = sqlite3.connect(":memory:")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, value REAL)")
        for _ in range(3):
            conn.execute("DELETE FROM t")
            conn.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
        conn.close()

    split = parts.sample_parts(load, None)
    seconds = split["parts_s"]
    assert set(seconds) == {"database", "database_wait", "great_expectations", "prefect", "ours", "other"}
    assert seconds["great_expectations"] == 0.0
    # Every thread is sampled: in the full suite an earlier test has started Prefect's service threads in this
    # process, and their few milliseconds are rightly Prefect's (0.001 s seen); alone, this is 0.0.
    assert seconds["prefect"] < 0.05, seconds
    assert seconds["database"] > 4 * seconds["ours"], seconds


def test_the_readme_split_table_is_written_from_the_results():
    result = {"name": "store_insert", "n": 1000, "sqlite": {"split_s": {"database": 1.5, "database_wait": 0.25,
              "great_expectations": 0.0, "prefect": 0.0, "ours": 0.5, "other": 0.0}, "split_wall_s": 2.3},
              "split_provenance": {"commit": "0123456789abcdef", "date": "2026-12-05T01:00:00+00:00",
                                   "machine": {"load_average_1m": 0.42}}}  # fmt: skip
    assert report.split_table([result]).splitlines()[2:] == [
        "| benchmark | wall s | database CPU | database wait | Great Expectations | Prefect | our code | other threads "
        "| commit, date, load |",
        "|---|---|---|---|---|---|---|---|---|",
        "| `store_insert` sqlite | 2.3 | 1.50 | 0.25 | 0.00 | 0.00 | 0.50 | 0.00 | 01234567, 2026-12-05, load 0.42 |",
    ]
    assert report.split_table([{"name": "old", "n": 1}]) == ""


def test_split_only_adds_the_split_to_a_committed_result_and_keeps_its_figures(tmp_path, monkeypatch):
    import json

    import bench.__main__ as harness

    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    committed = {"name": "allocate", "n": 3000, "ratio": 0.78, "provenance": {"commit": "abc"}}
    (tmp_path / "allocate.json").write_text(json.dumps(committed))
    assert harness.main(["--split-only", "allocate"]) == 0
    result = json.loads((tmp_path / "allocate.json").read_text())
    assert {k: result[k] for k in committed} == committed  # the timed figures and their provenance untouched
    assert set(result["split_s"]) == set(parts.PARTS) and result["split_provenance"]["commit"] != "abc"
    assert (result["split_s"]["database"], result["split_s"]["great_expectations"]) == (0.0, 0.0)


def test_a_frame_without_a_line_number_is_still_charged():
    """Seen: a frame whose f_lineno is None (mid-call) stopped the sampler and left a partial split."""
    frame = stack(STEP, (BULK, 1))
    frame.f_lineno = None
    assert parts.classify(frame) == "ours"


def test_a_sampler_that_stops_early_fails_the_split_instead_of_reporting_part_of_it(monkeypatch):
    def broken(self, skip=None):
        raise TypeError("boom")

    monkeypatch.setattr(parts.Sampler, "look", broken)
    with pytest.raises(RuntimeError, match="the stack sampler stopped early"):
        parts.sample_parts(lambda _ctx: sum(range(10_000)), None)
