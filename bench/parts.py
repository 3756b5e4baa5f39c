"""Where a benchmark's time goes: Great Expectations, Prefect, the database, our own code, other threads.

``sample_parts(fn, ctx)`` runs ``fn(ctx)`` once while a sampler thread looks at every thread's stack every few
milliseconds (``sys._current_frames``) and charges the time since its last look to one part:

- **database**: a frame of SQLAlchemy, psycopg or the sqlite3 module, or our line that calls the driver itself
  (``cursor.executemany``, ``COPY … write``: ``yidi.bulk`` talks to the raw connection). Its CPU time is
  ``database``; the rest of the wall time spent there is ``database_wait`` (waiting for PostgreSQL, which works in
  another process, for a SQLite lock or the disk; on a loaded machine also waiting for a CPU).
- **great_expectations**, **prefect**: a frame of that package (and what it calls, e.g. pandas inside GX).
- **ours**: our code (``yidi``, ``tasks``, ``flows``, ``connectors``, ``expectations``, ``app``, ``demo``, ``bench``) and
  the libraries it calls directly (pandas, numpy, pyarrow, rapidfuzz, httpx …).
- **other**: threads with none of the above on their stack (an HTTP server's event loop, a thread pool's idle
  workers).

Every part is charged in the thread's CPU time (``time.pthread_getcpuclockid``; only ``database_wait`` is wall
time), so a thread that waits on a socket, a lock or the GIL costs nothing, and the figures barely move with the
machine's load. The figures are thread-seconds: with several busy threads
their sum can exceed the wall time (``wall_s`` is reported beside them). The split is taken in one separate,
untimed run, because looking at stacks costs a little time; the timed pairs run without it.
"""

from __future__ import annotations

import linecache
import re
import sys
import threading
import time
from pathlib import Path

PARTS = ("database", "database_wait", "great_expectations", "prefect", "ours", "other")
INTERVAL_S = 0.004

ROOT = Path(__file__).resolve().parent.parent
OUR_PACKAGES = ("yidi", "tasks", "flows", "connectors", "expectations", "app", "demo", "bench", "tests")
DATABASE_PACKAGES = {"sqlalchemy", "psycopg", "psycopg2", "psycopg_pool", "psycopg_binary", "sqlite3"}
# A line of ours that calls the driver directly (a C call: no Python frame of the driver on the stack).
DRIVER_CALL = re.compile(r"\.(executemany|executescript|execute|exec_driver_sql|commit|rollback|write_row|fetchall|"
                         r"fetchmany|fetchone)\(|\bcopy\.write\(|\.copy\(f?[\"']COPY")  # fmt: skip


def _package(filename: str) -> str | None:
    """The top-level package a frame's file belongs to (``ours`` for this repository's code)."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    path = Path(filename)
    try:
        relative = path.relative_to(ROOT)
    except ValueError:
        return "sqlite3" if "/sqlite3/" in filename else None  # the standard library's sqlite3 package
    return "ours" if relative.parts and relative.parts[0] in OUR_PACKAGES else None


def classify(frame) -> str:
    """The part a stack belongs to, looking from the innermost frame outwards (see the module docstring)."""
    innermost = True
    while frame is not None:
        package = _package(frame.f_code.co_filename)
        if package in DATABASE_PACKAGES:
            return "database"
        if package == "great_expectations":
            return "great_expectations"
        if package == "prefect":
            return "prefect"
        if package == "ours":
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno) if frame.f_lineno else ""
            return "database" if innermost and DRIVER_CALL.search(line) else "ours"
        innermost = False
        frame = frame.f_back
    return "other"


class Sampler:
    """Charges every thread's time to the part its stack shows, until ``stop()``."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self._last: dict[int, tuple[float, float]] = {}  # thread id -> (wall, cpu) at the last look
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bench-parts-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """The seconds per part; raises what stopped the sampler early (a partial split is never reported)."""
        self._stop.set()
        self._thread.join()
        if self._failure is not None:
            raise RuntimeError("the stack sampler stopped early") from self._failure
        return self.seconds

    def _run(self) -> None:
        me = threading.get_ident()
        try:
            while not self._stop.wait(self.interval_s):
                self.look(skip=me)
            self.look(skip=me)
        except BaseException as exc:  # noqa: BLE001 - handed to stop()
            self._failure = exc

    def look(self, skip: int | None = None) -> None:
        wall = time.perf_counter()
        for ident, frame in sys._current_frames().items():
            if ident == skip:
                continue
            try:
                cpu = time.clock_gettime(time.pthread_getcpuclockid(ident))
            except (OSError, ValueError):  # the thread ended between the two calls
                continue
            last = self._last.get(ident)
            self._last[ident] = (wall, cpu)
            if last is None:
                continue
            part = classify(frame)
            used = max(cpu - last[1], 0.0)
            self.seconds[part] += used
            if part == "database":
                self.seconds["database_wait"] += max(wall - last[0] - used, 0.0)


def sample_parts(fn, ctx) -> dict:
    """Run ``fn(ctx)`` once under the sampler; returns ``{"wall_s": …, "parts_s": {part: seconds}}``."""
    sampler = Sampler().start()
    started = time.perf_counter()
    try:
        fn(ctx)
    finally:
        seconds = sampler.stop()
    wall = time.perf_counter() - started
    return {"wall_s": round(wall, 3), "parts_s": {part: round(seconds[part], 3) for part in PARTS}}
