"""Real processes racing on one store (issue 17): ``at_once`` forks workers that meet at a barrier and then run the
same stage, as two or four Prefect workers running the same flow would (no deployment concurrency limit between
them). Each worker opens its own engine from the store's URL; results travel back through a queue."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable

from sqlalchemy import Engine

from yidi.db import make_engine


class WorkerFailed(RuntimeError):
    """A worker process raised; its exception type and text."""


def store_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _worker(results, barrier, index: int, target: Callable, args: tuple, extra: tuple = ()) -> None:
    try:
        barrier.wait(timeout=120)
        results.put((index, target(*args, *extra)))
    except BaseException as exc:  # noqa: BLE001 - handed to the test, which fails on it
        results.put((index, WorkerFailed(f"{type(exc).__name__}: {exc}")))


def at_once(count: int, target: Callable, *args, engine: Engine | None = None, timeout: float = 240,
            each: list[tuple] | None = None) -> list:
    """``target(*args)`` in ``count`` forked processes released together; their results in start order (a
    ``WorkerFailed`` for one that raised). ``engine``: the test's own, its pooled connections closed first so no
    worker inherits one. ``each``: arguments that differ per worker, appended to ``args`` (worker i gets each[i])."""
    if engine is not None:
        engine.dispose()
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(count), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(results, barrier, i, target, args, each[i] if each else ()),
                               daemon=True)
               for i in range(count)]  # fmt: skip
    for worker in workers:
        worker.start()
    got = dict(results.get(timeout=timeout) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
    return [got[i] for i in range(count)]


def killed(target: Callable, *args, engine: Engine | None = None, timeout: float = 240) -> int:
    """``target(*args, kill)`` in one forked process, where calling ``kill()`` ends the process at once with SIGKILL
    (no cleanup, no rollback sent: as the OOM killer or a pulled plug ends a worker). Returns its exit code."""
    if engine is not None:
        engine.dispose()
    ctx = multiprocessing.get_context("fork")
    worker = ctx.Process(target=target, args=(*args, lambda *_a: os.kill(os.getpid(), signal.SIGKILL)), daemon=True)
    worker.start()
    worker.join(timeout=timeout)
    return worker.exitcode


def open_store(url: str) -> Engine:
    """A worker's own engine on the test's store."""
    return make_engine(url)


def failures(results: list) -> list:
    return [r for r in results if isinstance(r, WorkerFailed)]
