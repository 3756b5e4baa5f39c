"""One composition per area: the flow is the only place that says in which order an area's steps run.

Each area's flow module writes its step list once, as a plain function taking a ``run`` callable
(``def reconciliation(run, ...)``), and calls every step through it: ``run(match_task, now, actor)``. The
``@flow`` passes ``with_prefect`` (each step a Prefect task run: retries, logs, the UI); the CLI's
``--no-prefect``, the tests and the benchmarks pass ``in_process`` (the same steps' functions, called directly).
Both paths therefore run the same steps in the same order with the same transaction scope, and cannot drift.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

Run = Callable[..., Any]


def with_prefect(step, *args, **kwargs):
    """Inside a flow run: the step runs as a Prefect task run."""
    return step(*args, **kwargs)


def in_process(step, *args, **kwargs):
    """Without Prefect: the step's own function (``Task.fn``), in this process; plain functions as they are."""
    return getattr(step, "fn", step)(*args, **kwargs)


def submitted(step, *args, **kwargs):
    """Inside a flow run, for steps that run side by side: the step is submitted as a Prefect task run and its
    future returned; the step list resolves the futures once every step has started (``resolved``)."""
    return step.submit(*args, **kwargs)


def resolved(outcome):
    """A step's value whichever runner ran it: a future's result, or the value itself."""
    if "prefect.futures" not in sys.modules:  # Prefect not loaded (``in_process``): no future can exist
        return outcome
    from prefect.futures import PrefectFuture

    return outcome.result() if isinstance(outcome, PrefectFuture) else outcome


# --- chunks side by side (issue 17) -------------------------------------------------------------------------------


def side_by_side(run: Run, engine) -> Run:
    """How a stage's independent chunks are started: inside a flow run on PostgreSQL each chunk is submitted to the
    flow's task runner (threads, or Dask processes: ``configured_task_runner``) and they run concurrently; in
    process (``in_process``), and on SQLite, where one writer at a time holds the file, one after another.
    Only for stages whose chunks touch disjoint rows and whose writes are conditional (a moved order is skipped);
    stages that must stay serial do not use it."""
    if run is with_prefect and engine.dialect.name != "sqlite":
        return submitted
    return run


def all_settled(outcomes: list) -> list:
    """Every chunk's value in submission order, after all of them ended: a failed chunk raises only once the
    others finished, so the stage's bookkeeping (a run record marked failed) never races a chunk still writing."""
    if "prefect.futures" not in sys.modules:  # Prefect not loaded (``in_process``): every value is there already
        return outcomes
    from prefect.futures import PrefectFuture, wait

    futures = [outcome for outcome in outcomes if isinstance(outcome, PrefectFuture)]
    if futures:
        wait(futures)
    return [resolved(outcome) for outcome in outcomes]


def store_for_steps(engine):
    """The store as the flow's task runner can hand it to a step: the engine itself in this process, a picklable
    ``StoreAddress`` when steps run in other processes (Dask workers open their own engine from it)."""
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    from yidi.db import store_address

    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx else None
    if runner is None or isinstance(runner, ThreadPoolTaskRunner):
        return engine
    return store_address(engine)


def configured_task_runner(policy=None):
    """The task runner ``[runtime]`` asks for: threads in the flow run's process (default), or Dask: the cluster at
    ``dask_address``, or a local cluster of ``dask_workers`` processes started for the run."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from yidi.settings import get_settings

    policy = policy or get_settings().runtime
    if policy.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if policy.dask_address:
            return DaskTaskRunner(address=policy.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": policy.dask_workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})  # fmt: skip
    return ThreadPoolTaskRunner(max_workers=policy.thread_workers)


def configured_runner_option():
    """The ``task_runner`` option for a flow whose runner ``[runtime]`` chooses per run (``flows.runners``), made only
    when the Prefect flow is built: the in-process path (``--no-prefect``) never imports Prefect."""
    from yidi.steps import Later

    def make():
        from flows.runners import ConfiguredTaskRunner

        return ConfiguredTaskRunner()

    return Later(make)


def step_logger(name: str) -> logging.Logger | logging.LoggerAdapter:
    """The run's logger inside Prefect (shown in the UI); the module's logger in process (``in_process``)."""
    if "prefect.context" not in sys.modules:  # Prefect not loaded: not inside a run
        return logging.getLogger(name)
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)


def retry_on_database_error(_task, _task_run, state) -> bool:
    """Prefect retry condition: run a step again only when the database failed (a lock, a dropped connection);
    outside trouble is handled inside the step (per waybill, per purchase order), and a bug is not retried."""
    from sqlalchemy.exc import DBAPIError

    try:
        state.result()
    except DBAPIError:
        return True
    except Exception:  # noqa: BLE001 - anything else is not a reason to run the step again
        return False
    return False


class StoreNotReady(RuntimeError):
    """The order store is missing, unreachable or on another migration than the code (one line, no traceback)."""


def require_store(engine=None) -> None:
    """The first step of every flow: fail at once with the same one line the CLI prints when the store is not
    initialised (or behind the code), instead of a traceback about a missing table halfway through a step."""
    from yidi.db import store_problem

    problem = store_problem(engine)
    if problem:
        step_logger(__name__).error(problem)
        raise StoreNotReady(problem)
