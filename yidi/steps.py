"""Steps and flows declared without importing Prefect: Prefect is imported when a flow run first needs it.

``from yidi.steps import flow, task, NO_CACHE`` replaces ``from prefect import flow, task`` in ``flows/`` and
``tasks/``: the decorators take Prefect's own options, and the objects behave as Prefect's tasks and flows
(calling, ``.submit``, ``.with_options``, ``.fn``, every other attribute). Why: importing Prefect costs about a
second and a half of CPU, and the CLI's in-process path (``flows.compose.in_process``, which calls a step's ``.fn``)
and the tests need none of it, so a command can start working at once without a Prefect server.

Where Prefect is already loaded (a worker, ``prefect deploy``, a flow run), ``flow`` and ``task`` return Prefect's
real objects directly. Otherwise a stand-in builds the real one on first use and takes its place in its module,
so ``prefect`` tooling that loads an entrypoint always finds a ``Flow`` (the stand-in also answers
``isinstance(x, Flow)``).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any


class Later:
    """An option value that needs Prefect (a cache policy, a backoff), made when the real task is built."""

    def __init__(self, make: Callable[[], Any]):
        self.make = make


def _no_cache():
    from prefect.cache_policies import NO_CACHE as prefect_no_cache

    return prefect_no_cache


NO_CACHE = Later(_no_cache)


def exponential_backoff(backoff_factor: float):
    """``prefect.tasks.exponential_backoff``: at once where Prefect is loaded (a real task's ``with_options`` needs
    the value), else made when the task is built."""

    def make():
        from prefect.tasks import exponential_backoff as prefect_backoff

        return prefect_backoff(backoff_factor=backoff_factor)

    return make() if _prefect_loaded() else Later(make)


def _resolved(options: dict) -> dict:
    return {key: value.make() if isinstance(value, Later) else value for key, value in options.items()}


def _prefect_loaded() -> bool:
    # Either module means Prefect's import is paid for (prefect.flows no longer pulls prefect.tasks in with it, and
    # its entrypoint loader checks isinstance(x, Flow) with only prefect.flows loaded).
    return "prefect.tasks" in sys.modules or "prefect.flows" in sys.modules


class _Deferred:
    """A Prefect task or flow not built yet: ``fn`` is the plain function (what ``in_process`` calls)."""

    _kind = ""

    def __init__(self, fn: Callable, options: dict):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self._options = options
        self._built = None

    def _build(self):
        raise NotImplementedError

    @property
    def prefect_object(self):
        if self._built is None:
            self._built = self._build()
            module = sys.modules.get(self.fn.__module__)
            if module is not None and getattr(module, self.fn.__name__, None) is self:
                setattr(module, self.fn.__name__, self._built)  # from now on the module holds the real one
        return self._built

    def __call__(self, *args, **kwargs):
        return self.prefect_object(*args, **kwargs)

    def with_options(self, **options):
        return type(self)(self.fn, {**self._options, **options})

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("fn", "_options", "_built"):
            raise AttributeError(name)
        return getattr(self.prefect_object, name)

    def __repr__(self) -> str:
        return f"<{self._kind} {self.fn.__name__} (Prefect not loaded yet)>"


class DeferredTask(_Deferred):
    _kind = "task"

    def _build(self):
        from prefect import task as prefect_task

        return prefect_task(self.fn, **_resolved(self._options))

    def submit(self, *args, **kwargs):
        return self.prefect_object.submit(*args, **kwargs)

    @property
    def __class__(self):  # noqa: D105 - isinstance(x, prefect.Task) holds, as for the real task
        if _prefect_loaded():
            from prefect.tasks import Task

            return Task
        return DeferredTask


class DeferredFlow(_Deferred):
    _kind = "flow"

    def _build(self):
        from prefect import flow as prefect_flow

        return prefect_flow(self.fn, **_resolved(self._options))

    @property
    def __class__(self):  # noqa: D105 - prefect's entrypoint loader checks isinstance(x, Flow)
        if _prefect_loaded():
            from prefect.flows import Flow

            return Flow
        return DeferredFlow


def _decorator(kind: type[_Deferred], builder: str, fn: Callable | None, options: dict):
    def wrap(function: Callable):
        if _prefect_loaded():  # a worker, a deployment, a flow run: Prefect's own object, nothing deferred
            import prefect

            return getattr(prefect, builder)(function, **_resolved(options))
        return kind(function, options)

    return wrap(fn) if fn is not None else wrap


def task(fn: Callable | None = None, **options):
    """``prefect.task``, deferred: ``@task`` or ``@task(name=..., retries=..., cache_policy=NO_CACHE)``."""
    return _decorator(DeferredTask, "task", fn, options)


def flow(fn: Callable | None = None, **options):
    """``prefect.flow``, deferred: ``@flow`` or ``@flow(name=..., log_prints=True)``."""
    return _decorator(DeferredFlow, "flow", fn, options)


# --- Prefect calls made only inside flow runs, imported when made -------------------------------------------------


def get_run_logger(*args, **kwargs):
    from prefect import get_run_logger as prefect_run_logger

    return prefect_run_logger(*args, **kwargs)


def create_markdown_artifact(*args, **kwargs):
    from prefect.artifacts import create_markdown_artifact as prefect_markdown_artifact

    return prefect_markdown_artifact(*args, **kwargs)


def create_table_artifact(*args, **kwargs):
    from prefect.artifacts import create_table_artifact as prefect_table_artifact

    return prefect_table_artifact(*args, **kwargs)


def flow_run_id() -> str | None:
    """The current flow run's id, or None (no flow run; Prefect not loaded means there is none)."""
    if "prefect.context" not in sys.modules:
        return None
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return str(context.flow_run.id) if context and context.flow_run else None
