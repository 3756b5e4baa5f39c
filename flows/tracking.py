"""``poll-carriers``: every 30 minutes (prefect.yaml), and on demand with ``yidi tracking poll [--waybill N]``.
``intercept-parcels`` (issue 18, 拦截): every 10 minutes and ``yidi tracking intercept``; its step list
``interception_cycle``: find parcels to stop, ask the carrier, read what became of the asked ones from their
tracked status, and put returned goods back in stock (fulfilment's ``restock_intercepted``).

``poll_cycle`` is the area's one step list (``flows.compose``): landed pushes first, optional push subscriptions,
then the due shipments in batches (a few in flight, so storing one batch overlaps polling the next), then
time-based exceptions. The flow runs it ``with_prefect``; ``yidi tracking poll --no-prefect``, the tests and
``bench/poll.py`` run it ``in_process``. Every request passes the client's pacer; inside the flow the pacer also
draws from the Prefect global rate limit ``tracking.rate_limit_name`` (created by ``make up`` and by the test
fixture), so concurrent runs share the carrier's request rate, and the cycle holds ``tracking.cycle_lock_name``.

Transaction scope: one transaction per step, and per batch. Applying landed pushes, subscribing, selecting the
due shipments and the time-based exceptions each commit on their own; a batch's carrier answers are fetched
outside any transaction and stored in one transaction per batch, so a failed batch leaves the others stored.
A batch task is retried only when storing failed (database errors); it then reuses the answers it already got
instead of querying the carrier again inside the minimum interval. One waybill's failure is that waybill's
outcome, never the batch's.

Overlapping cycles (several workers, a manual poll beside the scheduled one, with or without the Prefect lock)
share the due shipments out: selecting them claims them in the database (``tasks.tracking.store.claim_due``), so
no waybill is queried twice inside the carrier's interval. The batches stay threads of the flow run's process
rather than tasks on the configured runner: polling waits on the carrier's request budget, not on the CPU, and
the batches share one pacer, one circuit breaker and the answers a retried batch reuses.
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Annotated

import pandas as pd
from pydantic import Field
from sqlalchemy import Engine

from connectors.kuaidi100 import Kuaidi100Client
from flows.compose import Run, require_store, retry_on_database_error, with_prefect
from flows.naming import run_name
from flows.params import Moment, OptionalCount, Url
from tasks.tracking.applying import BatchSummary, apply_outcomes
from tasks.tracking.incidents import detect_time_exceptions
from tasks.tracking.polling import (
    CircuitBreaker,
    PollOutcome,
    make_client,
    make_pacer,
    poll_frame,
    split_batches,
)
from tasks.tracking.pushes import apply_landed_pushes, subscribe_shipments
from tasks.tracking.report import cycle_summary, exceptions_table, summary_markdown
from tasks.tracking.store import claim_due, due_shipments
from yidi.bulk import utc_now
from yidi.db import for_writing, get_engine
from yidi.lifecycle import current_actor
from yidi.settings import get_settings
from yidi.steps import NO_CACHE, create_markdown_artifact, create_table_artifact, flow, get_run_logger, task
from yidi.tracking_policy import TrackingPolicy
from yidi.workdays import BUSINESS_TZ

log = logging.getLogger(__name__)


class PollRuntime:
    """What the cycle's steps share (threads of one process): engine, client with its pacer, breaker.

    A plain class, not a dataclass: Prefect walks dataclass task arguments looking for futures, and this one
    holds a batch's carrier answers while it is being stored.
    """

    def __init__(self, engine: Engine, client: Kuaidi100Client, policy: TrackingPolicy, breaker, actor: str):
        self.engine, self.client, self.policy, self.breaker, self.actor = (
            engine,
            client,
            policy,
            breaker,
            actor,
        )
        self.answers: dict[int, list[PollOutcome]] = {}


@task(name="apply-landed-pushes", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_on_database_error)  # fmt: skip
def apply_pushes_task(runtime: PollRuntime, as_of: datetime) -> BatchSummary:
    with runtime.engine.begin() as conn:
        return apply_landed_pushes(conn, as_of, runtime.policy, actor=runtime.actor)


@task(name="subscribe-shipments", cache_policy=NO_CACHE)
def subscribe_task(runtime: PollRuntime, as_of: datetime) -> dict:
    with runtime.engine.begin() as conn:
        return dict(subscribe_shipments(conn, runtime.client, runtime.policy, as_of))


def select_due(runtime: PollRuntime, as_of: datetime, waybill: str | None, limit: int | None) -> pd.DataFrame:
    """The due shipments, claimed for this cycle (``claim_due``): another cycle running at the same time, in this
    worker or another, gets the rest."""
    with runtime.engine.begin() as conn:
        due = due_shipments(conn, as_of, runtime.policy, waybill=waybill, limit=limit)
        return claim_due(conn, due, as_of, runtime.policy)


@task(name="poll-batch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_on_database_error)  # fmt: skip
def poll_batch_task(runtime: PollRuntime, index: int, batch: pd.DataFrame, as_of: datetime) -> BatchSummary:
    outcomes = runtime.answers.get(index)
    if outcomes is None:
        outcomes = poll_frame(runtime.client, batch, runtime.breaker, workers=runtime.policy.http_workers)
        runtime.answers[index] = outcomes
    with runtime.engine.begin() as conn:
        summary = apply_outcomes(conn, batch, outcomes, as_of, runtime.policy, actor=runtime.actor)
    runtime.answers.pop(index, None)
    summary.breaker = runtime.breaker.reason
    return summary


@task(name="detect-time-exceptions", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_on_database_error)  # fmt: skip
def time_exceptions_task(runtime: PollRuntime, as_of: datetime) -> dict:
    with runtime.engine.begin() as conn:
        return detect_time_exceptions(conn, as_of, runtime.policy, actor=runtime.actor)


def _in_flight(run: Run, step, calls: Sequence[tuple], width: int) -> list:
    """``run(step, *args)`` for each call, ``width`` at a time, results in call order. Each thread gets a copy of
    the caller's context, so inside a flow run every call is a task run of that flow."""
    if not calls:
        return []
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="batch") as pool:
        futures = [pool.submit(contextvars.copy_context().run, run, step, *args) for args in calls]
        return [f.result() for f in futures]


def poll_cycle(
    run: Run,
    *,
    engine: Engine,
    client: Kuaidi100Client,
    policy: TrackingPolicy,
    now: datetime,
    actor: str,
    waybill: str | None = None,
    limit: int | None = None,
    shared_limits: bool = False,
    logger: logging.Logger | logging.LoggerAdapter = log,
) -> dict:
    """One polling cycle (the step list): pushes, subscriptions, due shipments in batches, time exceptions.

    ``shared_limits``: hold the Prefect lock ``tracking.cycle_lock_name`` while polling (inside flow runs; a
    manual ``yidi tracking poll`` during the scheduled run would otherwise query the same waybills twice inside
    the carrier's interval, which Kuaidi100 locks).
    """
    started = time.perf_counter()
    # every step's transaction reads, then writes what it read, beside the push receiver's writes: on SQLite it takes
    # the write lock first (a deferred one failed "database is locked" when a push landed in between)
    runtime = PollRuntime(for_writing(engine), client, policy, CircuitBreaker(policy.circuit_breaker_failures), actor)
    total = BatchSummary()
    total.merge(run(apply_pushes_task, runtime, now))
    if policy.push_enabled:
        logger.info("subscriptions: %s", run(subscribe_task, runtime, now))
    if shared_limits:  # only flow runs share limits: Prefect is loaded there
        from prefect.concurrency.sync import concurrency
    lock = concurrency(policy.cycle_lock_name, occupy=1, strict=False) if shared_limits else nullcontext()
    with lock:
        due = run(select_due, runtime, now, waybill, limit)
        batches = split_batches(due, policy.batch_size)
        logger.info("%d due shipment(s) in %d batch(es)", len(due), len(batches))
        calls = [(runtime, index, batch, now) for index, batch in enumerate(batches)]
        for part in _in_flight(run, poll_batch_task, calls, policy.parallel_batches):
            total.merge(part)
    timed = run(time_exceptions_task, runtime, now)
    summary = cycle_summary(total, timed, due=len(due), now=now, seconds=time.perf_counter() - started)
    summary["breaker"] = runtime.breaker.reason
    return summary


def aware(value: datetime | None) -> datetime:
    """A run's "now": the given time (without a zone it means Beijing time, the business zone) or the clock."""
    if value is None:
        return utc_now()
    return (value if value.tzinfo else value.replace(tzinfo=BUSINESS_TZ)).astimezone(UTC)


def run_policy(callback_url: str | None = None, requests_per_second: float | None = None) -> TrackingPolicy:
    """The policy file's tracking section with this run's overrides."""
    policy = get_settings().tracking
    overrides: dict = {}
    if callback_url:
        overrides.update(push_enabled=True, callback_public_url=callback_url)
    if requests_per_second:
        overrides.update(requests_per_second=float(requests_per_second))
    return policy.model_copy(update=overrides) if overrides else policy


@flow(name="poll-carriers", flow_run_name=run_name("track", "waybill"))
def poll_carriers(
    waybill: Annotated[str | None, Field(min_length=6, examples=["SF1234567890123"])] = None,
    as_of: Moment = None,
    max_shipments: OptionalCount = None,
    query_url: Url = None,
    subscribe_url: Url = None,
    callback_url: Url = None,
    requests_per_second: Annotated[float | None, Field(gt=0, examples=[5])] = None,
) -> dict:
    """Poll Kuaidi100 for every due active shipment (or one waybill), store, act, report.

    Args:
        waybill: Only this waybill number. Empty: every active shipment that is due.
        as_of: Act as if it were this time (replays, simulated carriers). Empty: now.
        max_shipments: At most this many shipments in this run. Empty: all that are due.
        query_url: Kuaidi100's query API (a stand-in). Empty: the policy's [tracking].query_url.
        subscribe_url: Kuaidi100's subscription API. Empty: the policy's [tracking].subscribe_url.
        callback_url: Subscribe new shipments to pushes at this URL. Empty: no subscription.
        requests_per_second: Queries per second for this run (the Prefect limit must allow it). Empty: the policy's.
    """
    require_store()
    logger = get_run_logger()
    policy = run_policy(callback_url, requests_per_second)
    engine = get_engine()
    if not all(os.environ.get(name) for name in (policy.customer_env, policy.key_env)):
        # A fresh stack has no Kuaidi100 account: not an error (issue 15), the carrier is simply not in use yet.
        from tasks.tracking.store import active_shipments

        with engine.connect() as conn:
            waiting = len(active_shipments(conn))
        logger.info("kuaidi100: not configured, skipped (%d active shipments not polled)", waiting)
        return {"skipped": {"kuaidi100": waiting}}
    pacer = make_pacer(policy, shared_limit=True)
    with make_client(policy, pacer=pacer, query_url=query_url, subscribe_url=subscribe_url) as client:
        summary = poll_cycle(
            with_prefect, engine=engine, client=client, policy=policy, now=aware(as_of), actor=current_actor(),
            waybill=waybill, limit=max_shipments, shared_limits=True, logger=logger,
        )  # fmt: skip
    outcomes = summary["outcomes"]
    # The carrier could not be reached: the breaker tripped, or every query failed and none got an answer.
    unreachable = summary["breaker"] or (
        f"every query failed ({outcomes.get('failed')})" if outcomes.get("failed") and not outcomes.get("ok") else None)
    if unreachable:
        logger.error("could not reach the carrier API: %s", unreachable)
    logger.info(
        "polled %d: %s; new checkpoints %d; exceptions %s",
        summary["due"], summary["outcomes"], summary["new_events"], summary["exceptions"],
    )  # fmt: skip
    _artifacts(engine, summary)
    if unreachable:
        # Red, not green (issue 15): the shipments not polled are due again at the next run.
        raise CarrierUnreachable(f"carrier API unreachable: {unreachable}; outcomes {outcomes}")
    return summary


class CarrierUnreachable(RuntimeError):
    """The carrier's API kept failing: the circuit breaker stopped the run's polling."""


def _artifacts(engine: Engine, summary: dict) -> None:
    create_markdown_artifact(
        key="poll-carriers",
        markdown=summary_markdown(summary),
        description="Carrier polling: counts by status",
    )
    with engine.connect() as conn:
        table = exceptions_table(conn, summary["incident_ids"])
    if table:
        create_table_artifact(
            key="tracking-exceptions",
            table=table,
            description="Exceptions found in this run (personal data masked)",
        )


def ensure_rate_limit(name: str, rate: float, *, decay: float | None = None) -> None:
    """Create or update a Prefect global limit (what `make up` does): by default a rate limit with a second of
    burst decaying at ``rate`` per second; ``decay=0`` makes it a plain concurrency limit of ``rate`` slots."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    limit = max(1, round(rate))
    rate = float(rate if decay is None else decay)
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            client.update_global_concurrency_limit(
                name, GlobalConcurrencyLimitUpdate(limit=limit, slot_decay_per_second=float(rate))
            )
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit, slot_decay_per_second=float(rate))
            )


# --- interception (issue 18) -------------------------------------------------------------------------------------


@task(name="find-interceptions", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_on_database_error)  # fmt: skip
def find_interceptions_task(engine: Engine, now: datetime) -> int:
    from tasks.tracking.interception import find_interceptions

    return find_interceptions(engine, now)


@task(name="send-interceptions", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
      retry_condition_fn=retry_on_database_error)  # fmt: skip
def send_interceptions_task(engine: Engine, client, now: datetime, actor: str) -> dict:
    from tasks.tracking.interception import send_interceptions

    return send_interceptions(engine, client, now=now, actor=actor).as_dict()


@task(name="settle-interceptions", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_on_database_error)  # fmt: skip
def settle_interceptions_task(engine: Engine, now: datetime, actor: str) -> dict:
    from tasks.tracking.interception import settle_interceptions

    return settle_interceptions(engine, now=now, actor=actor).as_dict()


@task(name="restock-intercepted", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_on_database_error)  # fmt: skip
def restock_intercepted_task(engine: Engine, now: datetime, actor: str) -> dict:
    from tasks.fulfilment.returns import restock_intercepted

    with engine.begin() as conn:
        return restock_intercepted(conn, now, actor=actor)


def interception_cycle(run: Run, *, engine: Engine, client, now: datetime, actor: str) -> dict:
    """The step list of ``intercept-parcels`` (one transaction per step; carrier calls outside them). Without a
    client (no Kuaidi100 account here) parcels are found and outcomes read, nothing is asked."""
    found = run(find_interceptions_task, engine, now)
    sent = run(send_interceptions_task, engine, client, now, actor) if client is not None else {}
    settled = run(settle_interceptions_task, engine, now, actor)
    restocked = run(restock_intercepted_task, engine, now, actor)
    keys = ("requested", "too_late", "refused", "failed")
    return {"found": found, **{k: sent.get(k, 0) for k in keys}, "asked": sent.get("rows", []),
            **{k: settled[k] for k in ("returning", "returned", "delivered")}, "restocked": restocked,
            "skipped": client is None}  # fmt: skip


def make_intercept_client(settings, url: str | None = None):
    """The interception client from the policy (URL overridable for stand-ins), or None when the Kuaidi100 key or
    secret is not set here."""
    from connectors.kuaidi100_intercept import (
        InterceptClient,
        InterceptCredentials,
        MissingInterceptCredentials,
    )

    policy = settings.tracking.interception
    try:
        credentials = InterceptCredentials.from_env(settings.tracking.key_env, policy.secret_env, policy.partner_id_env)
    except MissingInterceptCredentials:
        return None
    return InterceptClient(url or policy.url, credentials, timeout=policy.timeout_seconds)


@flow(name="intercept-parcels", flow_run_name=run_name("intercept"), log_prints=True)
def intercept_parcels(as_of: Moment = None, url: Url = None) -> dict:
    """Stop parcels whose order was cancelled, refunded or changed after the waybill existed, and act on what
    became of them (back in stock, return in transit, delivered anyway: after-sales).

    Args:
        as_of: Act as if it were this time (replays, simulated carriers). Empty: now.
        url: Kuaidi100's interception API (a stand-in). Empty: the policy's [tracking.interception] address.
    """
    require_store()
    settings = get_settings()
    client = make_intercept_client(settings, url) if settings.tracking.interception.enabled else None
    if client is None:
        print("kuaidi100 interception: not configured, skipped (parcels found, none asked)")
    summary = interception_cycle(with_prefect, engine=get_engine(), client=client, now=aware(as_of),
                                 actor=current_actor())  # fmt: skip
    if client is not None:
        client.close()
    create_markdown_artifact(key="intercept-parcels", markdown=interception_markdown(summary),
                             description="parcel interceptions (拦截)")  # fmt: skip
    if summary["asked"]:
        create_table_artifact(key="interceptions-asked", table=summary["asked"][:1000],
                              description="interceptions asked of the carrier this run")  # fmt: skip
    return summary


def interception_markdown(summary: dict) -> str:
    return "\n".join([
        "# Parcel interceptions (拦截)", "",
        "| new | asked: intercepted | too late | refused | to ask again | return in transit | back in stock | "
        "delivered anyway |", "|---|---|---|---|---|---|---|---|",
        f"| {summary['found']} | {summary['requested']} | {summary['too_late']} | {summary['refused']} | "
        f"{summary['failed']} | {summary['returning']} | {summary['returned']} | {summary['delivered']} |",
    ])  # fmt: skip


logging.getLogger("urllib3").setLevel(logging.WARNING)
