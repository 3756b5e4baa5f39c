"""Order intake flows (requirements I1-I4, S1).

``intake_orders`` (flow ``intake-orders``): every configured channel (or the ones asked for, or given files) as its
own task, side by side through the task runner ``[runtime]`` names (threads in the flow run's process, or a Dask
cluster: each task builds its connector and opens the store where it runs). The batches of one channel are landed
in order inside its task: a channel's cursor advances only with what is committed. The chunks of one large drop
(order templates: csv/xlsx files) are tasks of their own (``drop_intake``): side by side on PostgreSQL, one after
another on SQLite (one writer per file) and in process; the drop's bookkeeping (cursor, file moved to
``processed/``) follows them in file order, up to the first that failed. A channel task works through all its batches (chunks of up to
thousands of records) and is retried with exponential backoff only when it failed transiently (5xx, timeouts, throttling, malformed answers); a
wrong password or signature fails at once with a clear message. One channel failing never stops the others, and
the run ends Failed when any channel failed, Completed otherwise. A summary table artifact shows per channel:
read, new, updated, unchanged, quarantined, and remote/local/unknown.

``intake_phone_order`` (flow ``intake-phone-order``): a phone or fax order keyed in the Prefect UI. The run pauses
with a form; the answer goes through the same step list as every channel.

The step list is written once, in ``order_intake(run, ...)``: the flows run it with Prefect task runs, and
``yidi intake run --no-prefect``, the tests and the benchmark run it in this process (``flows.compose``).

Transaction scope: one transaction per batch. A batch's raw records, its quarantined records, its order
inserts/updates with their events and lines, and the channel's cursor commit together, or not at all
(``tasks.intake.landing``); a channel commits batch by batch, so a channel that fails keeps the batches it
committed and its cursor stays at the last of them. A drop's chunk is a batch of its own without the cursor,
which is saved after it once every chunk before it committed. Channels never share a transaction.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from sqlalchemy import Engine

import yidi  # noqa: F401  (Prefect offline defaults)
from connectors.base import TransientChannelError
from connectors.phone_form import FormLine, PhoneOrder, form_record
from connectors.registry import ORDER_CHANNELS, build_connector, connector_for_file, enabled_channels
from flows.compose import (
    Run,
    configured_runner_option,
    require_store,
    resolved,
    retry_on_database_error,
    side_by_side,
    step_logger,
    store_for_steps,
    submitted,
    with_prefect,
)
from flows.naming import run_name
from flows.params import Hours
from tasks.intake import store as intake_store
from tasks.intake.landing import land_batch, run_channel
from tasks.intake.rules import ChannelSummary, Counts
from yidi.db import StoreAddress, engine_of, get_engine
from yidi.settings import get_settings
from yidi.steps import (
    NO_CACHE,
    create_markdown_artifact,
    create_table_artifact,
    exponential_backoff,
    flow,
    get_run_logger,
    task,
)

SUMMARY_FIELDS = ["read", "new", "updated", "unchanged", "quarantined", "cancelled", "rereview", "remote", "local",
                  "unknown", "batches"]


def retry_only_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry a channel only when it failed in a way that may pass."""
    try:
        state.result()
    except TransientChannelError:
        return True
    except Exception:  # noqa: BLE001 - anything else is permanent
        return False
    return False


@task(cache_policy=NO_CACHE, task_run_name="intake-{channel}")
def intake_channel(channel: str, file: str | None = None, options: dict | None = None, engine: Engine | None = None,
                   actor: str | None = None) -> dict:
    """All batches of one channel (or one file), each committed with its cursor. ``options`` override the policy
    file's settings of the channel (no secrets: those stay in environment variables)."""
    logger = step_logger(__name__)
    connector = _connector(channel, file, options)
    summary = run_channel(engine or get_engine(), connector, actor=actor,
                          on_batch=lambda batch, counts: logger.info("%s %s: read %d, new %d, updated %d, "
                                                                     "unchanged %d, quarantined %d", channel,
                                                                     batch.label, counts.read, counts.new,
                                                                     counts.updated, counts.unchanged,
                                                                     counts.quarantined))
    logger.info("%s done: %s", channel, {k: getattr(summary, k) for k in SUMMARY_FIELDS})
    # Quarantine reasons may quote customer data: they stay in the store (`yidi intake quarantine list`), not in
    # Prefect.
    return {k: v for k, v in asdict(summary).items() if k != "reasons"}


def _connector(channel: str, file: str | None, options: dict | None):
    options = options or {}
    return connector_for_file(Path(file), **options) if file else build_connector(channel, **options)


# Channels whose batches are chunks of large drops, landed side by side (``drop_intake``): the order templates.
DROP_CHANNELS = frozenset({"spreadsheet"})


@task(cache_policy=NO_CACHE, task_run_name="intake-{label}")
def land_drop_chunk(connector, batch, store: Engine | StoreAddress | None = None, actor: str | None = None,
                    label: str = "") -> Counts:
    """One chunk of a large drop (thousands of orders) in its own transaction: its raw chunk record, quarantined
    orders, orders, events, lines and notices (``tasks.intake.landing.land_batch``). The chunk comes without cursor
    and after-commit hook: the drop's step list keeps those for when every chunk before them has committed."""
    counts = land_batch(engine_of(store) if store is not None else get_engine(), connector, batch, actor=actor)
    step_logger(__name__).info("%s %s: read %d, new %d, updated %d, unchanged %d, quarantined %d", connector.name,
                               label, counts.read, counts.new, counts.updated, counts.unchanged, counts.quarantined)
    return counts


def drop_intake(run: Run, connector, *, engine: Engine | None = None, actor: str | None = None) -> dict:
    """The chunks of one large drop (the order-template channel: a csv or xlsx of up to millions of orders) side by
    side (issue 17), each a ``land_drop_chunk`` task of its own, retried when the database failed.

    Concurrent on PostgreSQL in a flow run, through the flow's task runner (threads, or Dask processes): chunks of
    one drop hold disjoint orders (a number met again later in the file is quarantined when the file is read, here,
    in file order, whichever chunk lands first), every chunk lands in its own transaction keyed by its content hash
    (a chunk landed twice, by a retry or an overlapping run, waits for the first and is skipped), and orders by
    ``(channel, channel_order_id)``. Serial on SQLite, whose file has one writer at a time: concurrent chunks would
    only queue for its write lock (or fail with "database is locked" past the busy timeout), and in process (the
    CLI's ``--no-prefect``). At most twice the runner's workers chunks are read ahead, so memory stays a few chunks.

    The bookkeeping waits for the chunks in file order, whichever finishes first: the channel's cursor is saved,
    and the after-commit hooks run (the file moved to ``processed/``), only up to the first chunk that failed; the
    chunks after it stay landed, and the next run skips them by their hash and lands the rest."""
    settings = get_settings()
    engine_here = engine or get_engine()
    in_flow = run is submitted or run is with_prefect
    one_by_one = with_prefect if in_flow else run  # the drop's own steps: the file is read here, in order
    chunk_run = side_by_side(one_by_one, engine_here)
    store = store_for_steps(engine_here) if in_flow else engine  # a Dask worker opens the flow run's store
    step = land_drop_chunk.with_options(
        retries=settings.intake.task_retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=max(settings.intake.retry_delay_seconds, 0.001)),
        retry_jitter_factor=0.2,
        retry_condition_fn=retry_on_database_error,
    )
    runtime = settings.runtime
    ahead = 2 * (runtime.dask_workers if runtime.task_runner == "dask" else runtime.thread_workers)
    summary = ChannelSummary(channel=connector.name)
    started: list[tuple[object, object]] = []  # (the chunk's batch, its future, value or exception), file order
    settled: list = []
    error: Exception | None = None
    cursor = one_by_one(_drop_cursor, engine_here, connector.name)
    try:
        for batch in connector.fetch(cursor):
            held = (batch.cursor, batch.on_commit)
            batch.cursor, batch.on_commit = None, None
            try:
                outcome = chunk_run(step, connector, batch, store, actor, batch.label)
            except Exception as exc:  # noqa: BLE001 - the chunk failed (serial runs raise here); settled below
                outcome = exc
            started.append((held, outcome))
            while len(started) - len(settled) > ahead:
                settled.append(_chunk_outcome(started[len(settled)][1]))
    except Exception as exc:  # noqa: BLE001 - reading the drop failed: the chunks started still land
        error = exc
    finally:
        settled.extend(_chunk_outcome(outcome) for _, outcome in started[len(settled):])
        connector.close()
    in_order = True
    for ((cursor_after, on_commit), _), outcome in zip(started, settled, strict=True):
        if isinstance(outcome, Exception):
            in_order, error = False, error or outcome
            continue
        summary.add(outcome)
        summary.batches += 1
        if in_order and cursor_after is not None:
            one_by_one(_drop_cursor, engine_here, connector.name, cursor_after)
        if in_order and on_commit is not None:
            on_commit()
    if error is not None:
        raise error
    return {k: v for k, v in asdict(summary).items() if k != "reasons"}


def _drop_cursor(engine: Engine, channel: str, cursor_after: str | None = None) -> str | None:
    """The channel's stored cursor; with ``cursor_after``, saved first (every chunk up to it committed)."""
    if cursor_after is None:
        with engine.connect() as conn:
            return intake_store.load_cursor(conn, channel)
    with engine.begin() as conn:
        intake_store.save_cursor(conn, channel, cursor_after)
    return cursor_after


def _chunk_outcome(outcome):
    """A chunk's counts, or the exception that ended it (after its retries)."""
    if isinstance(outcome, Exception):
        return outcome
    try:
        return resolved(outcome)
    except Exception as exc:  # noqa: BLE001 - reported with the drop, once every chunk has ended
        return exc


@dataclass(frozen=True)
class IntakeJob:
    label: str  # the channel, or file:PATH
    channel: str
    file: str | None = None


def intake_jobs(channels: list[str] | None = None, files: list[str] | None = None) -> list[IntakeJob]:
    """The given files (csv/xlsx/eml), else the channels asked for, else every enabled channel."""
    if files:
        return [IntakeJob(f"file:{path}", "email" if path.lower().endswith(".eml") else "spreadsheet", path)
                for path in files]
    return [IntakeJob(name, name) for name in channels or enabled_channels()]


def order_intake(run: Run, *, channels: list[str] | None = None, files: list[str] | None = None,
                 options: dict[str, dict] | None = None, engine: Engine | None = None,
                 actor: str | None = None) -> dict[str, dict]:
    """The intake step list: one ``intake_channel`` step per channel or file, each retried on transient errors
    only; returns {channel or file: counts, and ``error`` when it failed}. One failing never stops the others."""
    settings = get_settings().intake
    step = intake_channel.with_options(
        retries=settings.task_retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=max(settings.retry_delay_seconds, 0.001)),
        retry_jitter_factor=0.2,
        retry_condition_fn=retry_only_transient,
    )
    jobs = intake_jobs(channels, files)
    if not jobs:
        step_logger(__name__).warning("no channel is enabled in [intake] and none was asked for")
    options = options or {}
    started: dict[str, object] = {}
    # The other channels start first, so they run while this run reads the drops and hands out their chunks.
    for job in sorted(jobs, key=lambda job: job.channel in DROP_CHANNELS):
        try:
            if job.channel in DROP_CHANNELS:
                connector = _connector(job.channel, job.file, options.get(job.channel))
                started[job.label] = drop_intake(run, connector, engine=engine, actor=actor)
            else:
                started[job.label] = run(step, job.channel, job.file, options.get(job.channel), engine, actor)
        except Exception as exc:  # noqa: BLE001 - reported per channel
            started[job.label] = exc
    return {job.label: _settled(job.label, started[job.label]) for job in jobs}


def _settled(label: str, outcome) -> dict:
    """A channel's counts, or zero counts with the error that stopped it."""
    try:
        if isinstance(outcome, Exception):
            raise outcome
        return resolved(outcome)
    except Exception as exc:  # noqa: BLE001 - reported per channel
        message = f"{type(exc).__name__}: {exc}"
        step_logger(__name__).error("channel %s failed: %s", label, message)
        return {**{k: v for k, v in asdict(ChannelSummary(channel=label)).items() if k != "reasons"},
                "error": message[:500]}


# The channel as staff call it (the orders' own channel column says taobao, website, email, phone, fax); seen:
# "spreadsheet" in the summary for what staff know as phone and fax orders.
CHANNEL_LABELS = {"taobao": "taobao (platform)", "woocommerce": "website (WooCommerce)", "email": "email",
                  "spreadsheet": "phone/fax (order templates)", "form": "phone/fax (UI form)"}  # fmt: skip
IntakeChannel = Literal[ORDER_CHANNELS]  # type: ignore[valid-type]  (the Run form offers these)


def _summary_rows(results: dict[str, dict]) -> list[dict]:
    """The intake-summary table: one row per channel. No `batches` column (the log has it) and an `error` column
    only when a channel failed: seen, the table was wider than the UI's artifact view and its last columns cut off."""
    rows = []
    for name, result in results.items():
        row = {"channel": CHANNEL_LABELS.get(name, name), **{k: result.get(k, 0) for k in SUMMARY_FIELDS}}
        row.pop("batches")
        row["error"] = result.get("error") or ""
        rows.append(row)
    if not any(row["error"] for row in rows):
        for row in rows:
            del row["error"]
    return rows


@flow(name="intake-orders", log_prints=True, flow_run_name=run_name("intake", "channels", "files"),
      task_runner=configured_runner_option())
def intake_orders(channels: list[IntakeChannel] | None = None, files: list[str] | None = None,
                  options: dict[str, dict] | None = None) -> dict[str, dict]:
    """Pull orders from the configured channels (or ``channels``), or take in ``files`` (csv/xlsx/eml).

    Args:
        channels: Only these channels: taobao (the platform's TOP API), woocommerce (the website), email (order
            mails), spreadsheet (phone/fax order templates in the inbox). Empty: every channel enabled in [intake].
        files: Take in these files instead (csv/xlsx order templates, .eml order mails), paths the worker can read.
        options: Per-channel overrides of the policy file, e.g. {"taobao": {"url": "http://127.0.0.1:8021"}} (no
            secrets: those stay in environment variables).
    """
    require_store()
    results = order_intake(submitted, channels=channels, files=files, options=options)
    rows = _summary_rows(results)
    totals = {k: sum(r[k] for r in rows) for k in SUMMARY_FIELDS if k != "batches"}
    create_table_artifact(
        key="intake-summary",
        table=rows,
        description=(
            f"Order intake: {totals['read']} record(s) read, {totals['new']} new, {totals['updated']} updated, "
            f"{totals['unchanged']} unchanged, {totals['quarantined']} quarantined "
            f"(`yidi intake quarantine list`). Of new/updated orders: {totals['remote']} remote, "
            f"{totals['local']} local, {totals['unknown']} unknown."
        ),
    )
    failed = {label: r["error"] for label, r in results.items() if r.get("error")}
    if failed:
        raise RuntimeError("channel(s) failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    return results


# ---------------------------------------------------------------------------------------------------------------
# The phone-order form


@cache
def phone_order_form() -> type:
    """The form shown in the Prefect UI (fields of ``connectors.phone_form.PhoneOrder``); made in the flow run, where
    Prefect is loaded (``yidi.steps``)."""
    from prefect.input import RunInput
    from pydantic import Field

    class PhoneOrderForm(RunInput, PhoneOrder):
        """The phone-order form."""

        entered_by: str = Field("", description="录入人: your name or login as listed in [staff] (checked)")

    return PhoneOrderForm


FORM_HELP = """### 电话/传真订单录入 — phone or fax order

Fill in the customer, delivery address and one entry per product or service (code or name, quantity, unit price
in yuan), then **Resume**. The order goes through the same checks as every channel: a problem puts it in
quarantine with a reason (`yidi intake quarantine list`), nothing is lost.
"""


@flow(name="intake-phone-order", log_prints=True, flow_run_name=run_name("phone order", "entered_by"))
def intake_phone_order(timeout_hours: Hours = 8.0,
                       entered_by: Annotated[str, Field(max_length=100, examples=["王芳"])] = "") -> dict:
    """Pause with a form in the Prefect UI; the answer is taken in as a 'form' channel record. The form's
    ``entered_by`` (pre-filled from the parameter) must be a listed staff member (issue 20: keying in and approving
    are separate duties); otherwise the form comes back with the reason and what was typed, and nothing is taken in.

    Args:
        timeout_hours: How long the form waits for an answer.
        entered_by: Who keys the order in: a name or login listed in [staff] (the form can change it).
    """
    require_store()
    from prefect.flow_runs import pause_flow_run

    from yidi.staff import NotPermitted, act_as

    logger = get_run_logger()
    deadline = time.monotonic() + timeout_hours * 3600
    initial = phone_order_form().with_initial_data(
        description=FORM_HELP, customer_name="", phone="", address="", entered_by=entered_by,
        lines=[FormLine(item_code="", quantity=1, unit_price_yuan="0.00")],
    )  # fmt: skip
    while True:
        answer = pause_flow_run(
            wait_for_input=initial,
            timeout=max(1, int(deadline - time.monotonic())),
            poll_interval=2,  # staff wait for the answer: check for the resumed form often
        )
        try:
            keyer = act_as(get_settings().staff, "key_order", answer.entered_by)
            break
        except NotPermitted as exc:  # asked again with what was typed: nothing is lost, nothing taken in yet
            logger.warning("phone order form refused: %s", exc)
            typed = answer.model_dump(include={*PhoneOrder.model_fields, "entered_by"})
            initial = phone_order_form().with_initial_data(
                description=f"⚠ **Input refused — nothing was taken in.** {exc}\n\n{FORM_HELP}", **typed)
    data = PhoneOrder.model_validate(answer.model_dump(include=set(PhoneOrder.model_fields)))
    # bootstrap (nobody listed) and nobody named: recorded as "form:staff", as before staff were listed
    records = form_record(data, entered_by=keyer.name if keyer.listed or answer.entered_by.strip() else "")
    summary = order_intake(with_prefect, channels=["form"], options={"form": {"records": records}})["form"]
    if summary.get("error"):
        raise RuntimeError(f"the phone order was not taken in: {summary['error']}")
    result = {k: summary[k] for k in SUMMARY_FIELDS} | {"order_no": records["source_key"].iloc[0]}
    status = "quarantined" if summary["quarantined"] else "accepted"
    create_markdown_artifact(
        key="phone-order",
        markdown=f"Phone order **{result['order_no']}**: {status}"
        + (" — see `yidi intake quarantine list --channel form` for the reason" if summary["quarantined"] else ""),
    )
    logger.info("phone order %s %s", result["order_no"], status)
    return result | {"status": status}
