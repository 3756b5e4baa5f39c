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
import os
import time
from collections import deque
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from connectors.kuaidi100 import Kuaidi100Client
from tasks.tracking.steps import (
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


class PollRuntime:
    """What the run's tasks share (threads of one process): engine, client with its pacer, breaker.

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
    callback_url: str | None = None,
    requests_per_second: float | None = None,
) -> dict:
    """Poll Kuaidi100 for every due active shipment (or one waybill), store, act, report.

    ``as_of`` replaces "now" (replays, simulated carriers); ``query_url``/``subscribe_url`` override the policy
    file (stand-ins); ``callback_url`` subscribes new shipments to pushes at that URL; ``requests_per_second``
    overrides R for this run (the Prefect limit must allow it).
    """
    logger = get_run_logger()
    started = time.perf_counter()
    policy = get_settings().tracking
    overrides: dict = {}
    if callback_url:
        overrides.update(push_enabled=True, callback_public_url=callback_url)
    if requests_per_second:
        overrides.update(requests_per_second=float(requests_per_second))
    policy = policy.model_copy(update=overrides) if overrides else policy
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
        # One cycle at a time across processes: a manual `yidi track` during the scheduled run would otherwise
        # query the same waybills twice inside the carrier's interval (Kuaidi100 locks that).
        with concurrency(policy.cycle_lock_name, occupy=1, strict=False):
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


@flow(name="tracking-demo")
def tracking_demo(
    cycles: int = 8,
    hours_per_cycle: float = 12.0,
    requests_per_second: float = 200.0,
    push_share: float = 0.2,
    seed: int = 7,
) -> dict:
    """The demo's carrier stage: the stand-in carrier learns the store's shipments (most travel normally; some are
    delayed, go silent, get damaged or lost, are refused or returned), simulated time advances ``hours_per_cycle``
    per step, pushes arrive for a share of subscribed waybills, and ``poll-carriers`` runs each step.
    """
    from app.callbacks import CallbackServer
    from demo.standins.kuaidi100 import SimClock, start
    from demo.tracking import DEMO_SCENARIO_WEIGHTS, standin_registrations

    logger = get_run_logger()
    policy = get_settings().tracking
    # Demo account for the stand-in; a real deployment sets these in its environment.
    for env, value in ((policy.customer_env, "demo-customer"), (policy.key_env, "demo-key"),
                       (policy.salt_env, "demo-salt")):  # fmt: skip
        os.environ.setdefault(env, value)
    customer, key, salt = (
        os.environ[policy.customer_env],
        os.environ[policy.key_env],
        os.environ[policy.salt_env],
    )
    engine = get_engine()
    with engine.connect() as conn:
        registrations = standin_registrations(conn, scenario_weights=DEMO_SCENARIO_WEIGHTS, seed=seed)
    if not registrations:
        logger.warning("no shipments with waybills: nothing to track")
        return {"shipments": 0}
    first = min(datetime.fromisoformat(r["shipped_at"]) for r in registrations)
    ensure_rate_limit(policy.rate_limit_name, requests_per_second)
    ensure_rate_limit(policy.cycle_lock_name, 1, decay=0.0)
    clock = SimClock(first)
    pushed_share = max(0, min(len(registrations), round(len(registrations) * push_share)))
    cycles_run = []
    with (
        start(customer=customer, key=key, clock=clock, seed=seed) as carrier,
        CallbackServer(engine, policy, salt, port=0, clock=clock.now) as receiver,
    ):
        carrier.register_many(registrations)
        subscribe = [r["num"] for r in registrations[:pushed_share]]
        paced = policy.model_copy(update={"requests_per_second": requests_per_second})
        with make_client(
            paced, pacer=make_pacer(paced, shared_limit=False), query_url=carrier.query_url,
            subscribe_url=carrier.subscribe_url,
        ) as client:  # fmt: skip
            for num in subscribe:
                com = next(r["com"] for r in registrations if r["num"] == num)
                client.subscribe(com, num, receiver.url)
        for step in range(cycles):
            clock.advance(hours=hours_per_cycle)
            pushes = carrier.push_updates()
            summary = poll_carriers(
                as_of=clock.now(), query_url=carrier.query_url, subscribe_url=carrier.subscribe_url,
                requests_per_second=requests_per_second,
            )  # fmt: skip
            cycles_run.append(
                {"step": step + 1, "as_of": summary["as_of"], "pushes": len(pushes), "due": summary["due"],
                 "outcomes": summary["outcomes"], "exceptions": summary["exceptions"]}
            )  # fmt: skip
            logger.info("step %d: %d pushes, polled %d, exceptions %s", step + 1, len(pushes), summary["due"],
                        summary["exceptions"])  # fmt: skip
        receiver_counts = dict(receiver.counts)
    return {"shipments": len(registrations), "cycles": cycles_run, "receiver": receiver_counts}


logging.getLogger("urllib3").setLevel(logging.WARNING)
