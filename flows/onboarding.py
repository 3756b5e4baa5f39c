"""Onboarding flow (issue 12): existing orders from a company's old system.

``import_orders(file_path)``: on demand (deployment ``import-orders-on-demand``, the Run form, or
``yidi load orders FILE``). The step list is ``order_import`` (see ``flows.compose``): the flow runs it with
``with_prefect``, the CLI and the tests with ``in_process``. Transaction scope: the whole file in one transaction;
a refused order is quarantined inside it, so a file is either read and decided order by order or (unreadable,
a required column missing) refused with nothing written. Re-running on the same file changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from flows.compose import Run, retry_on_database_error, step_logger, with_prefect
from flows.params import ServerFile
from tasks.onboarding.orders import import_orders as import_order_file
from yidi.bulk import utc_now
from yidi.db import get_engine
from yidi.lifecycle import current_actor
from yidi.settings import get_settings
from yidi.steps import NO_CACHE, create_markdown_artifact, flow, task


@task(name="import-order-file", cache_policy=NO_CACHE, retries=2, retry_condition_fn=retry_on_database_error)
def import_file_task(path: str, now: datetime, actor: str, engine: Engine | None = None) -> dict:
    """One order file, in one transaction."""
    with (engine or get_engine()).begin() as conn:
        result = import_order_file(conn, path, settings=get_settings(), actor=actor, now=now)
    step_logger(__name__).info(
        "%s: %s imported, %s unchanged, %s quarantined", result["file"], result["imported"], result["unchanged"],
        result["quarantined"],
    )  # fmt: skip
    return result


def order_import(
    run: Run, *, path: Path, now: datetime | None = None, actor: str | None = None, engine: Engine | None = None
) -> dict:
    """The import's steps: one file, whole orders in, bad orders quarantined."""
    return run(import_file_task, str(path), now or utc_now(), actor or current_actor(), engine)


@flow(name="import-orders", log_prints=True)
def import_orders(file_path: ServerFile) -> dict:
    """Bring in existing orders (csv/xlsx, UTF-8 or GBK, Chinese or English headers) with their own numbers.

    Args:
        file_path: The old system's order file (csv/xlsx), a path the worker can read.
    """
    path = Path(file_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{file_path}: no such file")
    result = order_import(with_prefect, path=path)
    create_markdown_artifact(
        f"# Order import {result['file']}\n- rows {result['rows']}; orders imported **{result['imported']}**, "
        f"unchanged {result['unchanged']}, quarantined **{result['quarantined']}**, shipments {result['shipments']}\n"
        + "".join(f"- {reason}\n" for reason in result["reasons"]),
        key="order-import",
        description=result["file"],
    )
    return result
