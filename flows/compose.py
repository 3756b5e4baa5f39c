"""One composition per area: the flow is the only place that says in which order an area's steps run.

Each area's flow module writes its step list once, as a plain function taking a ``run`` callable
(``def reconciliation(run, ...)``), and calls every step through it: ``run(match_task, now, actor)``. The
``@flow`` passes ``with_prefect`` (each step a Prefect task run: retries, logs, the UI); the CLI's
``--no-prefect``, the tests and the benchmarks pass ``in_process`` (the same steps' functions, called directly).
Both paths therefore run the same steps in the same order with the same transaction scope, and cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Run = Callable[..., Any]


def with_prefect(step, *args, **kwargs):
    """Inside a flow run: the step runs as a Prefect task run."""
    return step(*args, **kwargs)


def in_process(step, *args, **kwargs):
    """Without Prefect: the step's own function (``Task.fn``), in this process; plain functions as they are."""
    return getattr(step, "fn", step)(*args, **kwargs)
