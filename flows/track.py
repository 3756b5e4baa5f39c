"""``poll-carriers``: every 30 minutes (prefect.yaml), and on demand with ``yidi track [--waybill N]``.

Thin composition of ``tasks/track.py``: landed pushes first, optional push subscriptions, then the due shipments
in batches (a few in flight, so storing one batch overlaps polling the next), then time-based exceptions. Every
request passes the process's pacer, which draws from the Prefect global rate limit ``tracking.rate_limit_name``
(created by ``make up`` and by the test fixture), so concurrent runs share the carrier's request rate.

A batch task is retried only when storing failed (database errors); it then reuses the answers it already got
instead of querying the carrier again inside the minimum interval. One waybill's failure is that waybill's
outcome, never the batch's.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from connectors.kuaidi100 import Kuaidi100Client
from tasks.track import (
    BatchSummary,
    CircuitBreaker,
    PollOutcome,
    apply_landed_pushes,
    apply_outcomes,
    cycle_summary,
    detect_time_exceptions,
    due_shipments,
    exceptions_table,
    make_client,
    make_pacer,
    poll_frame,
    split_batches,
    subscribe_shipments,
    summary_markdown,
)
from yidi.bulk import utc_now
from yidi.db import get_engine
from yidi.lifecycle import current_actor
from yidi.settings import TrackingPolicy, get_settings

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass
class PollRuntime:
    """What the run's tasks share (threads of one process): engine, client with its pacer, breaker."""

    engine: Engine
    client: Kuaidi100Client
    policy: TrackingPolicy
    breaker: CircuitBreaker
    actor: str
    answers: dict[int, list[PollOutcome]] = field(default_factory=dict)


def _store_failed(_task, _task_run, state) -> bool:
    """Retry a batch only when the database failed; carrier trouble is already handled per waybill."""
    try:
        state.result()
    except DBAPIError:
        return True
    except Exception:  # noqa: BLE001
        return False
    return False


@task(name="apply-landed-pushes", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=_store_failed)  # fmt: skip
def apply_pushes_task(runtime: PollRuntime, as_of: datetime) -> BatchSummary:
    with runtime.engine.begin() as conn:
        return apply_landed_pushes(conn, as_of, runtime.policy, actor=runtime.actor)


@task(name="subscribe-shipments", cache_policy=NO_CACHE)
def subscribe_task(runtime: PollRuntime, as_of: datetime) -> dict:
    with runtime.engine.begin() as conn:
        return dict(subscribe_shipments(conn, runtime.client, runtime.policy, as_of))


@task(name="track-batch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=_store_failed)  # fmt: skip
def track_batch(runtime: PollRuntime, index: int, batch: pd.DataFrame, as_of: datetime) -> BatchSummary:
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
      retry_condition_fn=_store_failed)  # fmt: skip
def time_exceptions_task(runtime: PollRuntime, as_of: datetime) -> dict:
    with runtime.engine.begin() as conn:
        return detect_time_exceptions(conn, as_of, runtime.policy, actor=runtime.actor)


def _aware(value: datetime | None) -> datetime:
    if value is None:
        return utc_now()
    # A time without a zone from an operator means Beijing time (the business zone).
    return (value if value.tzinfo else value.replace(tzinfo=SHANGHAI)).astimezone(UTC)


@flow(name="poll-carriers")
def poll_carriers(
    waybill: str | None = None,
    as_of: datetime | None = None,
    max_shipments: int | None = None,
    query_url: str | None = None,
    subscribe_url: str | None = None,
) -> dict:
    """Poll Kuaidi100 for every due active shipment (or one waybill), store, act, report.

    ``as_of`` replaces "now" (replays, simulated carriers); ``query_url``/``subscribe_url`` override the policy
    file (stand-ins).
    """
    logger = get_run_logger()
    started = time.perf_counter()
    policy = get_settings().tracking
    now = _aware(as_of)
    engine = get_engine()
    client = make_client(
        policy, pacer=make_pacer(policy, shared_limit=True), query_url=query_url, subscribe_url=subscribe_url
    )
    runtime = PollRuntime(
        engine, client, policy, CircuitBreaker(policy.circuit_breaker_failures), current_actor()
    )
    try:
        total = BatchSummary()
        total.merge(apply_pushes_task(runtime, now))
        if policy.push_enabled:
            logger.info("subscriptions: %s", subscribe_task(runtime, now))
        with engine.begin() as conn:
            due = due_shipments(conn, now, policy, waybill=waybill, limit=max_shipments)
        batches = split_batches(due, policy.batch_size)
        logger.info("%d due shipment(s) in %d batch(es)", len(due), len(batches))
        in_flight: deque = deque()
        for index, batch in enumerate(batches):
            if len(in_flight) >= policy.parallel_batches:
                total.merge(in_flight.popleft().result())
            in_flight.append(track_batch.submit(runtime, index, batch, now))
        while in_flight:
            total.merge(in_flight.popleft().result())
        timed = time_exceptions_task(runtime, now)
    finally:
        client.close()
    summary = cycle_summary(total, timed, due=len(due), now=now, seconds=time.perf_counter() - started)
    summary["breaker"] = runtime.breaker.reason
    if runtime.breaker.reason:
        logger.warning("polling stopped early: %s", runtime.breaker.reason)
    logger.info(
        "polled %d: %s; new checkpoints %d; exceptions %s",
        len(due), summary["outcomes"], summary["new_events"], summary["exceptions"],
    )  # fmt: skip
    _artifacts(engine, summary)
    return summary


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


logging.getLogger("urllib3").setLevel(logging.WARNING)
