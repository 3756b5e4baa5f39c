"""Polling Kuaidi100 (T2): the client and its pacer, one query per waybill, a circuit breaker, batches.

Each waybill is queried once through the rate pacer, with retries on transient errors inside the connector; every
failure becomes that waybill's outcome, never the batch's. A circuit breaker stops the cycle's polling after a
run of "unavailable" answers (a carrier that is down is not hammered) or at once on refused credentials.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import pandas as pd

from connectors.kuaidi100 import (
    PHONE_REQUIRED,
    Credentials,
    ErrorKind,
    Kuaidi100Client,
    Kuaidi100Error,
    RetryPolicy,
    TrackingResult,
)
from connectors.pacing import RatePacer
from yidi.bulk import frame_records
from yidi.tracking_policy import TrackingPolicy

log = logging.getLogger(__name__)


def make_pacer(policy: TrackingPolicy, *, shared_limit: bool) -> RatePacer:
    """The request pacer; ``shared_limit`` also draws from the Prefect global rate limit (inside flow runs)."""
    limit = policy.global_limits[policy.rate_limit_name]["limit"]
    return RatePacer(
        policy.requests_per_second,
        limit_name=policy.rate_limit_name if shared_limit else None,
        # A quarter second's worth per Prefect round trip, never more than the limit holds.
        chunk=max(1, min(int(policy.requests_per_second / 4), int(limit))),
        pace_fraction=policy.pace_fraction,
    )


def make_client(
    policy: TrackingPolicy,
    *,
    pacer: RatePacer | None = None,
    credentials: Credentials | None = None,
    query_url: str | None = None,
    subscribe_url: str | None = None,
) -> Kuaidi100Client:
    credentials = credentials or Credentials.from_env(policy.customer_env, policy.key_env, policy.salt_env)
    return Kuaidi100Client(
        credentials,
        query_url=query_url or policy.query_url,
        subscribe_url=subscribe_url or policy.subscribe_url,
        timeout_seconds=policy.request_timeout_seconds,
        retry=RetryPolicy(
            max_attempts=policy.max_attempts,
            backoff_seconds=policy.retry_backoff_seconds,
            backoff_max_seconds=policy.retry_backoff_max_seconds,
            rate_limited_backoff_seconds=policy.rate_limited_backoff_seconds,
        ),
        before_request=pacer,
        pool_size=policy.http_workers * policy.parallel_batches,
    )


@dataclass
class PollOutcome:
    shipment_id: int
    outcome: str  # one of rules.OUTCOMES
    result: TrackingResult | None = None
    error: str | None = None


class CircuitBreaker:
    """Opens after ``threshold`` consecutive unavailable answers, or at once on an auth failure."""

    def __init__(self, threshold: int):
        self.threshold = threshold
        self._lock = threading.Lock()
        self._run = 0
        self.reason: str | None = None

    @property
    def open(self) -> bool:
        return self.reason is not None

    def success(self) -> None:
        with self._lock:
            self._run = 0

    def failure(self, why: str) -> None:
        with self._lock:
            self._run += 1
            if self._run >= self.threshold and self.reason is None:
                self.reason = f"carrier unavailable: {self._run} failures in a row (last: {why})"

    def trip(self, why: str) -> None:
        with self._lock:
            self.reason = self.reason or why


def destination(row: dict) -> str | None:
    """Province, city and district as one text (Kuaidi100 predicts arrival from it)."""
    parts = [row.get("ship_province"), row.get("ship_city"), row.get("ship_district")]
    text = "".join(p for p in parts if isinstance(p, str) and p)
    return text or None


def poll_one(client: Kuaidi100Client, row: dict, breaker: CircuitBreaker) -> PollOutcome:
    sid = int(row["shipment_id"])
    if breaker.open:
        return PollOutcome(sid, "skipped", error=breaker.reason)
    phone = row.get("phone") if row["carrier"] in PHONE_REQUIRED else None
    try:
        result = client.query(row["carrier"], row["waybill_no"], phone, to=destination(row))
    except Kuaidi100Error as exc:
        if exc.kind is ErrorKind.NO_RESULT:
            breaker.success()
            return PollOutcome(sid, "no_result", error=exc.message)
        if exc.kind is ErrorKind.TOO_FREQUENT:
            breaker.success()
            return PollOutcome(sid, "too_frequent", error=exc.message)
        if exc.kind is ErrorKind.AUTH:
            breaker.trip(
                f"Kuaidi100 refused our credentials ({exc.return_code} {exc.message}); check the key"
            )
            return PollOutcome(sid, "failed", error=str(exc))
        if exc.transient:
            breaker.failure(str(exc))
            return PollOutcome(sid, "failed", error=str(exc))
        breaker.success()
        return PollOutcome(sid, "rejected", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one waybill's surprise never fails the batch
        log.warning("waybill poll failed unexpectedly: %s", type(exc).__name__)
        return PollOutcome(sid, "failed", error=f"{type(exc).__name__}: {exc}")
    breaker.success()
    return PollOutcome(sid, "ok", result=result)


def poll_frame(
    client: Kuaidi100Client, frame: pd.DataFrame, breaker: CircuitBreaker, workers: int = 16
) -> list[PollOutcome]:
    rows = frame_records(frame)
    if not rows:
        return []
    # A parcel carrying several orders has one waybill and one shipment per order (issue 18): the waybill is asked
    # once (the carrier locks faster queries of one waybill) and its answer is every such shipment's.
    first: dict[tuple, dict] = {}
    for row in rows:
        first.setdefault((row["carrier"], row["waybill_no"]), row)
    unique = list(first.values())
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(unique))), thread_name_prefix="poll") as pool:
        answers = list(pool.map(lambda row: poll_one(client, row, breaker), unique))
    by_waybill = {(r["carrier"], r["waybill_no"]): a for r, a in zip(unique, answers, strict=True)}
    return [replace(by_waybill[(r["carrier"], r["waybill_no"])], shipment_id=int(r["shipment_id"])) for r in rows]


def split_batches(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[i : i + size].reset_index(drop=True) for i in range(0, len(frame), size)]
