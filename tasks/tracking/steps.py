"""Carrier-status tracking (issue 6; F6, T1, T2, K3, P2): poll, store once, advance orders, catch exceptions.

Plain functions over DataFrames and one connection each; ``flows/track.py`` wraps them in Prefect tasks, and
``run_poll_cycle`` composes them without Prefect (benchmark, tests of the logic).

One polling cycle:

1. ``due_shipments``: active shipments (a waybill, not delivered/returned/expired) whose last query and last
   push are both older than the carrier's minimum interval, oldest first.
2. ``poll_frame``: each waybill queried once through the rate pacer, with retries on transient errors inside
   the connector; every failure becomes that waybill's outcome, never the batch's. A circuit breaker stops the
   cycle's polling after a run of "unavailable" answers (a carrier that is down is not hammered).
3. ``apply_outcomes`` (one transaction per batch): checkpoints stored once each by their natural key, the
   shipment's status taken from its newest stored checkpoint (so out-of-order data never moves it backwards),
   carrier-code changes applied, new checkpoints appended to the order timeline, incidents opened from the
   checkpoint evidence, claims for loss/damage/delay, customer notices, order states reconciled.
4. ``detect_time_exceptions``: delay against the expected delivery date on the working-day calendar, no carrier
   update for N hours (only when a poll confirmed the silence, so our own outage never blames the carrier),
   unknown waybills, expiry; incidents auto-resolve when the shipment moves on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, func, or_, select, update

from connectors.kuaidi100 import (
    CARRIER_NAMES,
    PHONE_REQUIRED,
    Credentials,
    ErrorKind,
    Kuaidi100Client,
    Kuaidi100Error,
    PushNotice,
    RetryPolicy,
    TrackingResult,
)
from connectors.pacing import RatePacer
from tasks.tracking.status import (
    FINAL_STATUSES,
    STATUS_LABELS_ZH,
    Keywords,
    Reason,
    TrackingStatus,
    classify_checkpoint,
)
from yidi.bulk import ids_for_keys, insert_rows, read_frame, utc_now
from yidi.lifecycle import OrderState, current_actor, record_events, transition_orders
from yidi.masking import mask_name, mask_phone
from yidi.outbox import enqueue
from yidi.schema import orders, shipments
from yidi.schema_tracking import (
    liability_claims,
    tracking_events,
    tracking_incidents,
    tracking_push_receipts,
    tracking_shipment_state,
)
from yidi.settings import TrackingPolicy, get_settings
from yidi.workdays import CalendarOutOfRange, add_working_days, working_days_between

log = logging.getLogger(__name__)
SHANGHAI = ZoneInfo("Asia/Shanghai")
T = TrackingStatus

FINAL = sorted(s.value for s in FINAL_STATUSES)
MOVING = frozenset(
    {T.PICKED_UP, T.IN_TRANSIT, T.OUT_FOR_DELIVERY, T.DELIVERY_FAILED, T.RETURNING, T.DELIVERED, T.RETURNED}
)

# Checkpoint reason -> incident type.
REASON_INCIDENT = {
    Reason.DAMAGED: "damaged",
    Reason.LOST: "lost",
    Reason.REFUSED: "refused",
    Reason.RETURNING: "returned",
    Reason.PROBLEM: "problem",
    Reason.INVALID_ADDRESS: "problem",
    Reason.HELD: "problem",
    Reason.CUSTOMS: "problem",
    Reason.CANCELLED: "problem",
    Reason.DELAYED: "delay",
    Reason.STALE: "stale",
}
INCIDENT_LABELS_ZH = {
    "delay": "运输延误",
    "stale": "物流长时间未更新",
    "problem": "问题件",
    "refused": "拒收",
    "returned": "退回",
    "damaged": "破损",
    "lost": "丢失",
    "unknown_waybill": "运单未被承运商识别",
}
CLAIM_TYPES = {"damaged": "damage", "lost": "loss", "delay": "delay"}
# Incidents the system closes itself when the shipment moves on; the others (damage, loss, refusal, return)
# need a person's resolution.
AUTO_RESOLVE = {
    "delay": "shipment delivered",
    "stale": "carrier reported again",
    "problem": "shipment delivered",
    "unknown_waybill": "carrier now knows the waybill",
}

OUTCOMES = ("ok", "no_result", "too_frequent", "rejected", "failed", "skipped")


def keywords_of(policy: TrackingPolicy) -> Keywords:
    return Keywords.from_mapping(policy.keywords.model_dump())


# --- clients ---------------------------------------------------------------------------------------------------


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


# --- selecting -------------------------------------------------------------------------------------------------


def _chunks(values: Sequence, size: int = 900) -> Iterable[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def due_shipments(
    conn: Connection,
    now: datetime,
    policy: TrackingPolicy,
    *,
    waybill: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Active shipments that may be queried now, least recently polled first."""
    cutoff = now - timedelta(minutes=policy.min_poll_interval_minutes)
    ts = tracking_shipment_state
    stmt = (
        select(
            shipments.c.id.label("shipment_id"),
            shipments.c.order_id,
            shipments.c.shipment_no,
            shipments.c.carrier,
            shipments.c.waybill_no,
            shipments.c.status,
            shipments.c.shipped_at,
            shipments.c.last_polled_at,
            shipments.c.last_event_at,
            orders.c.customer_phone.label("phone"),
            orders.c.ship_province,
            orders.c.ship_city,
            orders.c.ship_district,
            func.coalesce(ts.c.consecutive_failures, 0).label("consecutive_failures"),
            ts.c.no_result_since,
            ts.c.last_outcome,
            ts.c.carrier_state,
            ts.c.events_digest,
        )
        .join(orders, orders.c.id == shipments.c.order_id)
        .outerjoin(ts, ts.c.shipment_id == shipments.c.id)
        .where(
            shipments.c.waybill_no.is_not(None),
            shipments.c.status.not_in(FINAL),
            or_(shipments.c.last_polled_at.is_(None), shipments.c.last_polled_at <= cutoff),
            or_(ts.c.last_push_at.is_(None), ts.c.last_push_at <= cutoff),
        )
        .order_by(shipments.c.last_polled_at.is_not(None), shipments.c.last_polled_at, shipments.c.id)
    )
    if waybill:
        stmt = stmt.where(shipments.c.waybill_no == waybill)
    if limit:
        stmt = stmt.limit(limit)
    return read_frame(conn, stmt)


# --- polling ---------------------------------------------------------------------------------------------------


@dataclass
class PollOutcome:
    shipment_id: int
    outcome: str  # one of OUTCOMES
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


def _destination(row: dict) -> str | None:
    parts = [row.get("ship_province"), row.get("ship_city"), row.get("ship_district")]
    text = "".join(p for p in parts if isinstance(p, str) and p)
    return text or None


def poll_one(client: Kuaidi100Client, row: dict, breaker: CircuitBreaker) -> PollOutcome:
    sid = int(row["shipment_id"])
    if breaker.open:
        return PollOutcome(sid, "skipped", error=breaker.reason)
    phone = row.get("phone") if row["carrier"] in PHONE_REQUIRED else None
    try:
        result = client.query(row["carrier"], row["waybill_no"], phone, to=_destination(row))
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


def frame_records(frame: pd.DataFrame) -> list[dict]:
    columns = list(frame.columns)
    return [
        dict(zip(columns, row, strict=True))
        for row in zip(*(frame[c].tolist() for c in columns), strict=True)
    ]


def poll_frame(
    client: Kuaidi100Client, frame: pd.DataFrame, breaker: CircuitBreaker, workers: int = 16
) -> list[PollOutcome]:
    rows = frame_records(frame)
    if not rows:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(rows))), thread_name_prefix="poll") as pool:
        return list(pool.map(lambda row: poll_one(client, row, breaker), rows))


# --- applying --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=200_000)
def context_hash(context: str) -> str:
    normalised = re.sub(r"\s+", "", context or "")
    return hashlib.sha1(normalised.encode("utf-8")).hexdigest()


def events_digest(keys: Iterable[tuple[datetime, str]]) -> str:
    """One hash for a set of checkpoint keys (time, text hash): equal digests, same checkpoints."""
    parts = sorted(f"{when.astimezone(UTC).isoformat()}|{digest}" for when, digest in keys)
    return hashlib.sha1("\n".join(parts).encode("utf-8")).hexdigest()


def result_digest(result: TrackingResult) -> str:
    return events_digest((cp.time, context_hash(cp.context)) for cp in result.checkpoints)


def result_events(
    result: TrackingResult, ship: dict, keywords: Keywords, *, source: str, now: datetime, batch: str
) -> list[dict]:
    newest = result.newest()
    carrier = result.com_new or result.com or ship["carrier"]
    rows = []
    for cp in result.checkpoints:
        is_newest = cp is newest
        status, reason = classify_checkpoint(
            cp.context,
            status_text=cp.status_text,
            status_code=cp.status_code,
            fallback_state=result.state if is_newest else None,
            keywords=keywords,
        )
        rows.append(
            {
                "shipment_id": int(ship["shipment_id"]),
                "order_id": int(ship["order_id"]),
                "carrier": carrier,
                "waybill_no": ship["waybill_no"],
                "occurred_at": cp.time,
                "context": cp.context,
                "context_hash": context_hash(cp.context),
                "area_name": cp.area_name,
                "carrier_code": cp.status_code
                or (str(result.state) if is_newest and result.state is not None else None),
                "status": status.value,
                "reason": reason.value if reason else None,
                "source": source,
                "received_at": now,
                "ingest_batch": batch,
            }
        )
    return rows


EVENT_KEY = ["shipment_id", "occurred_at", "context_hash"]


def latest_events(conn: Connection, shipment_ids: Sequence[int]) -> pd.DataFrame:
    """Each shipment's newest stored checkpoint (by carrier time, then arrival)."""
    frames = []
    for chunk in _chunks(list(shipment_ids)):
        ranked = select(
            tracking_events.c.shipment_id,
            tracking_events.c.status,
            tracking_events.c.occurred_at,
            func.row_number()
            .over(
                partition_by=tracking_events.c.shipment_id,
                order_by=(tracking_events.c.occurred_at.desc(), tracking_events.c.id.desc()),
            )
            .label("rn"),
        ).where(tracking_events.c.shipment_id.in_(chunk))
        sub = ranked.subquery()
        frames.append(
            read_frame(conn, select(sub.c.shipment_id, sub.c.status, sub.c.occurred_at).where(sub.c.rn == 1))
        )
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["shipment_id", "status", "occurred_at"])
    )


@dataclass
class BatchSummary:
    outcomes: Counter = field(default_factory=Counter)
    new_events: int = 0
    statuses: Counter = field(default_factory=Counter)
    incidents: list[int] = field(default_factory=list)
    incident_types: Counter = field(default_factory=Counter)
    orders_moved: Counter = field(default_factory=Counter)
    notices: int = 0
    carrier_changes: int = 0
    claims: int = 0
    breaker: str | None = None
    errors: list[dict] = field(default_factory=list)

    def merge(self, other: BatchSummary) -> BatchSummary:
        self.outcomes.update(other.outcomes)
        self.new_events += other.new_events
        self.statuses.update(other.statuses)
        self.incidents += other.incidents
        self.incident_types.update(other.incident_types)
        self.orders_moved.update(other.orders_moved)
        self.notices += other.notices
        self.carrier_changes += other.carrier_changes
        self.claims += other.claims
        self.breaker = self.breaker or other.breaker
        self.errors += other.errors[: max(0, 50 - len(self.errors))]
        return self

    def as_dict(self) -> dict:
        return {
            "outcomes": dict(self.outcomes),
            "new_events": self.new_events,
            "statuses": dict(self.statuses),
            "incidents_opened": len(self.incidents),
            "incident_types": dict(self.incident_types),
            "orders_moved": dict(self.orders_moved),
            "notices": self.notices,
            "carrier_changes": self.carrier_changes,
            "claims": self.claims,
            "breaker": self.breaker,
        }


def apply_outcomes(
    conn: Connection,
    frame: pd.DataFrame,
    outcomes: Sequence[PollOutcome],
    now: datetime,
    policy: TrackingPolicy,
    *,
    source: str = "poll",
    actor: str | None = None,
) -> BatchSummary:
    """Store what a batch of queries (or one push) returned, and act on it. One transaction: the caller's."""
    summary = BatchSummary()
    actor = actor or current_actor()
    keywords = keywords_of(policy)
    batch = uuid.uuid4().hex
    ships = {int(r["shipment_id"]): r for r in frame_records(frame)}
    event_rows: list[dict] = []
    changes: list[dict] = []
    state_rows: list[dict] = []
    for outcome in outcomes:
        summary.outcomes[outcome.outcome] += 1
        ship = ships[outcome.shipment_id]
        if outcome.outcome in ("failed", "rejected", "too_frequent") and outcome.error:
            summary.errors.append(
                {"shipment_no": ship.get("shipment_no"), "waybill_no": ship["waybill_no"],
                 "outcome": outcome.outcome, "error": outcome.error[:200]}
            )  # fmt: skip
        if source == "poll" and outcome.outcome != "skipped" and _state_changes(outcome, ship):
            state_rows.append(_state_row(outcome, ship, now))
        result = outcome.result
        if result is None:
            continue
        if result.com_new and result.com_new != ship["carrier"]:
            changes.append({"ship": ship, "old": ship["carrier"], "new": result.com_new})
        if ship.get("events_digest") and ship["events_digest"] == result_digest(result):
            continue  # the carrier's history is exactly what we stored: nothing to classify or insert
        event_rows += result_events(result, ship, keywords, source=source, now=now, batch=batch)
    if source == "poll":
        answered = [o.shipment_id for o in outcomes if o.outcome not in ("failed", "skipped")]
        for chunk in _chunks(answered):
            conn.execute(
                update(shipments).where(shipments.c.id.in_(chunk)).values(last_polled_at=now, updated_at=now)
            )
        if state_rows:
            state = pd.DataFrame(state_rows).astype(
                {"carrier_state": "Int64", "consecutive_failures": "int64"}
            )
            insert_rows(
                conn, tracking_shipment_state, state, on_conflict=["shipment_id"],
                update_columns=[c for c in state.columns if c != "shipment_id"],
            )  # fmt: skip
    if changes:
        _apply_carrier_changes(conn, changes, now, actor)
        summary.carrier_changes = len(changes)

    new_events = _store_events(conn, event_rows, batch)
    summary.new_events = len(new_events)
    touched = sorted(new_events["shipment_id"].unique().tolist()) if not new_events.empty else []
    status_changes = _refresh_shipments(conn, touched, now)
    if not new_events.empty:
        _timeline(conn, new_events, actor)
    # Incidents from checkpoint evidence, earliest evidence per shipment and type.
    with_reason = new_events[new_events["reason"].notna()] if not new_events.empty else new_events
    if not with_reason.empty:
        cand = with_reason.assign(
            incident_type=with_reason["reason"].map(lambda r: REASON_INCIDENT.get(Reason(r)))
        )
        cand = cand[cand["incident_type"].notna()].sort_values("occurred_at")
        cand = cand.drop_duplicates(["shipment_id", "incident_type"])
        opened = open_incidents(
            conn,
            pd.DataFrame(
                {
                    "shipment_id": cand["shipment_id"],
                    "order_id": cand["order_id"],
                    "incident_type": cand["incident_type"],
                    "carrier": cand["carrier"],
                    "waybill_no": cand["waybill_no"],
                    "evidence": cand["context"],
                    "detected_at": cand["occurred_at"],
                }
            ),
            now,
            policy,
            actor=actor,
        )
        summary.incidents = opened["id"].astype(int).tolist() if not opened.empty else []
        summary.incident_types.update(opened["incident_type"].tolist() if not opened.empty else [])
        summary.claims = int(opened.attrs.get("claims", 0))
        summary.notices += int(opened.attrs.get("notices", 0))
    auto_resolve(conn, now, shipment_ids=touched, actor=actor)
    summary.notices += _progress_notices(conn, status_changes, policy)
    order_ids = sorted({int(ships[s]["order_id"]) for s in touched}) if touched else []
    summary.orders_moved = reconcile_orders(conn, order_ids, policy, actor=actor)
    summary.statuses = _status_counts(conn, [o.shipment_id for o in outcomes])
    return summary


def _time(value) -> datetime | None:
    """A stored time, or None (read frames give NaT for NULL, and NaT is a datetime)."""
    return value if isinstance(value, datetime) and not pd.isna(value) else None


def _state_changes(outcome: PollOutcome, ship: dict) -> bool:
    """Whether this answer changes the shipment's polling state (a routine good answer does not)."""
    if outcome.outcome != "ok" or ship.get("last_outcome") != "ok":
        return True
    if int(ship.get("consecutive_failures") or 0) or _time(ship.get("no_result_since")) is not None:
        return True
    previous = ship.get("carrier_state")
    previous = None if previous is None or previous != previous else int(previous)
    return outcome.result is not None and outcome.result.state != previous


def _state_row(outcome: PollOutcome, ship: dict, now: datetime) -> dict:
    ok = outcome.outcome == "ok"
    failures = 0 if outcome.outcome != "failed" else int(ship.get("consecutive_failures") or 0) + 1
    no_result_since = None
    if outcome.outcome == "no_result":
        previous = ship.get("no_result_since")
        no_result_since = _time(previous) or now
    elif not ok:
        previous = ship.get("no_result_since")
        no_result_since = _time(previous)
    result = outcome.result
    return {
        "shipment_id": outcome.shipment_id,
        "last_attempt_at": now,
        "last_outcome": outcome.outcome,
        "last_error": (outcome.error or None) if not ok else None,
        "consecutive_failures": failures,
        "no_result_since": no_result_since,
        "carrier_state": result.state if result else None,
        "ischeck": bool(result.ischeck) if result else False,
        "updated_at": now,
    }


def _store_events(conn: Connection, rows: list[dict], batch: str) -> pd.DataFrame:
    """Insert checkpoints not stored yet; return exactly the rows this call inserted."""
    if not rows:
        return pd.DataFrame(columns=[c.name for c in tracking_events.columns])
    frame = pd.DataFrame(rows).drop_duplicates(EVENT_KEY)
    insert_rows(conn, tracking_events, frame, on_conflict=EVENT_KEY)
    return read_frame(
        conn,
        select(tracking_events).where(tracking_events.c.ingest_batch == batch).order_by(tracking_events.c.id),
    )


def _refresh_shipments(conn: Connection, shipment_ids: Sequence[int], now: datetime) -> pd.DataFrame:
    """Status and last event from each shipment's newest checkpoint; returns the shipments whose status changed."""
    if not shipment_ids:
        return pd.DataFrame(columns=["shipment_id", "old_status", "status"])
    latest = latest_events(conn, shipment_ids)
    before = read_frame(
        conn, select(shipments.c.id.label("shipment_id"), shipments.c.status.label("old_status"))
        .where(shipments.c.id.in_(list(shipment_ids)))
    )  # fmt: skip
    merged = latest.merge(before, on="shipment_id")
    rows = [
        {"sid": int(sid), "st": st, "at": at, "delivered": at if st == T.DELIVERED else None}
        for sid, st, at in zip(
            merged["shipment_id"].tolist(),
            merged["status"].tolist(),
            merged["occurred_at"].tolist(),
            strict=True,
        )
    ]
    _store_digests(conn, shipment_ids, now)
    if rows:
        conn.execute(
            update(shipments)
            .where(shipments.c.id == bindparam("sid"))
            .values(
                status=bindparam("st"),
                last_event_at=bindparam("at"),
                delivered_at=func.coalesce(bindparam("delivered", type_=shipments.c.delivered_at.type),
                                           shipments.c.delivered_at),
                updated_at=now,
            ),
            rows,
        )  # fmt: skip
    changed = merged[merged["status"] != merged["old_status"]]
    return changed[["shipment_id", "old_status", "status"]]


def _store_digests(conn: Connection, shipment_ids: Sequence[int], now: datetime) -> None:
    keys: dict[int, list] = {}
    for chunk in _chunks([int(i) for i in shipment_ids]):
        rows = conn.execute(
            select(tracking_events.c.shipment_id, tracking_events.c.occurred_at, tracking_events.c.context_hash)
            .where(tracking_events.c.shipment_id.in_(chunk))
        )  # fmt: skip
        for sid, when, digest in rows:
            keys.setdefault(int(sid), []).append((when, digest))
    frame = pd.DataFrame(
        {
            "shipment_id": list(keys),
            "events_digest": [events_digest(k) for k in keys.values()],
            "updated_at": now,
        }
    )
    insert_rows(
        conn, tracking_shipment_state, frame, on_conflict=["shipment_id"],
        update_columns=["events_digest", "updated_at"],
    )  # fmt: skip


def _apply_carrier_changes(conn: Connection, changes: list[dict], now: datetime, actor: str) -> None:
    conn.execute(
        update(shipments)
        .where(shipments.c.id == bindparam("sid"))
        .values(carrier=bindparam("new"), updated_at=now),
        [{"sid": int(c["ship"]["shipment_id"]), "new": c["new"]} for c in changes],
    )
    record_events(
        conn,
        pd.DataFrame(
            {
                "order_id": [int(c["ship"]["order_id"]) for c in changes],
                "kind": "tracking",
                "reason": [
                    f"carrier code changed by Kuaidi100: {c['old']} -> {c['new']} (waybill {c['ship']['waybill_no']})"
                    for c in changes
                ],
                "details": [
                    {"shipment_id": int(c["ship"]["shipment_id"]), "com_old": c["old"], "com_new": c["new"]}
                    for c in changes
                ],
                "occurred_at": now,
            }
        ),
        actor=actor,
    )


def _timeline(conn: Connection, events: pd.DataFrame, actor: str) -> None:
    """Each new checkpoint in its order's timeline (P3, T1)."""
    labels = events["status"].map(lambda s: STATUS_LABELS_ZH.get(TrackingStatus(s), s))
    details = [
        {"shipment_id": int(sid), "waybill_no": wb, "carrier": carrier, "status": st, "reason": reason,
         "source": source, "tracking_event_id": int(eid)}
        for sid, wb, carrier, st, reason, source, eid in zip(
            events["shipment_id"], events["waybill_no"], events["carrier"], events["status"],
            events["reason"].astype(object).where(events["reason"].notna(), None), events["source"], events["id"],
            strict=True,
        )
    ]  # fmt: skip
    record_events(
        conn,
        pd.DataFrame(
            {
                "order_id": events["order_id"].astype(int),
                "kind": "tracking",
                "reason": (labels + "：" + events["context"]).tolist(),
                "details": details,
                "occurred_at": events["occurred_at"],
            }
        ),
        actor=actor,
    )


def _status_counts(conn: Connection, shipment_ids: Sequence[int]) -> Counter:
    counts: Counter = Counter()
    for chunk in _chunks(list(shipment_ids)):
        rows = conn.execute(
            select(shipments.c.status, func.count())
            .where(shipments.c.id.in_(chunk))
            .group_by(shipments.c.status)
        )
        counts.update({status: n for status, n in rows})
    return counts


# --- incidents, claims, notices --------------------------------------------------------------------------------


def due_after_working_days(start: datetime, days: int) -> datetime:
    """``start`` plus working days; past the installed holiday calendar, Monday-Friday (never a crash)."""
    try:
        return add_working_days(start, days)
    except CalendarOutOfRange:
        moved, left = start, days
        while left > 0:
            moved += timedelta(days=1)
            if moved.astimezone(SHANGHAI).weekday() < 5:
                left -= 1
        return moved


def open_incidents(
    conn: Connection,
    candidates: pd.DataFrame,
    now: datetime,
    policy: TrackingPolicy,
    *,
    actor: str | None = None,
) -> pd.DataFrame:
    """Open (or reopen on newer evidence) one incident per shipment and type; returns those opened/reopened.

    ``candidates``: shipment_id, order_id, incident_type, carrier, waybill_no, evidence, detected_at.
    """
    empty = pd.DataFrame(columns=["id", "shipment_id", "order_id", "incident_type", "occurrences"])
    if candidates.empty:
        return empty
    actor = actor or current_actor()
    cand = candidates.drop_duplicates(["shipment_id", "incident_type"]).copy()
    cand["shipment_id"] = cand["shipment_id"].astype(int)
    existing = []
    for chunk in _chunks(sorted(cand["shipment_id"].unique().tolist())):
        existing.append(
            read_frame(
                conn,
                select(
                    tracking_incidents.c.id,
                    tracking_incidents.c.shipment_id,
                    tracking_incidents.c.incident_type,
                    tracking_incidents.c.status,
                    tracking_incidents.c.resolved_at,
                    tracking_incidents.c.occurrences,
                ).where(tracking_incidents.c.shipment_id.in_(chunk)),
            )  # fmt: skip
        )
    known = pd.concat(existing, ignore_index=True) if existing else pd.DataFrame()
    if known.empty:
        known = pd.DataFrame(
            columns=["id", "shipment_id", "incident_type", "status", "resolved_at", "occurrences"]
        )
    known["shipment_id"] = known["shipment_id"].astype(int)
    # A refusal is followed by the parcel's return: one incident (the refusal) covers both.
    refused = set(cand.loc[cand["incident_type"] == "refused", "shipment_id"]) | set(
        known.loc[known["incident_type"] == "refused", "shipment_id"]
    )
    cand = cand[~((cand["incident_type"] == "returned") & cand["shipment_id"].isin(refused))]
    merged = cand.merge(known, on=["shipment_id", "incident_type"], how="left")
    fresh = merged[merged["id"].isna()]
    detected = pd.to_datetime(merged["detected_at"], utc=True)
    resolved = pd.to_datetime(merged["resolved_at"], utc=True)
    reopen = merged[(merged["status"] == "resolved") & (detected > resolved)]
    still_open = merged[merged["status"] == "open"]

    if not still_open.empty:
        conn.execute(
            update(tracking_incidents).where(tracking_incidents.c.id.in_(still_open["id"].astype(int).tolist()))
            .values(last_seen_at=now)
        )  # fmt: skip
    if not fresh.empty:
        types = fresh["incident_type"].tolist()
        insert_rows(
            conn,
            tracking_incidents,
            pd.DataFrame(
                {
                    "shipment_id": fresh["shipment_id"].astype(int),
                    "order_id": fresh["order_id"].astype(int),
                    "incident_type": types,
                    "carrier": fresh["carrier"],
                    "waybill_no": fresh["waybill_no"],
                    "owner": [policy.incident_owners.get(t, "logistics-desk") for t in types],
                    "status": "open",
                    "opened_at": now,
                    "due_at": [
                        due_after_working_days(now, policy.incident_due_working_days.get(t, 1)) for t in types
                    ],
                    "evidence": fresh["evidence"],
                    "details": [
                        json.dumps({"detected_at": str(d)}, ensure_ascii=False) for d in fresh["detected_at"]
                    ],
                    "occurrences": 1,
                    "last_seen_at": now,
                    "updated_at": now,
                }
            ),
            on_conflict=["shipment_id", "incident_type"],
        )
    if not reopen.empty:
        conn.execute(
            update(tracking_incidents)
            .where(tracking_incidents.c.id == bindparam("iid"))
            .values(
                status="open", resolved_at=None, resolution=None, resolved_by=None, opened_at=now,
                due_at=bindparam("due"), evidence=bindparam("ev"), occurrences=tracking_incidents.c.occurrences + 1,
                last_seen_at=now, updated_at=now,
            ),
            [
                {"iid": int(i), "due": due_after_working_days(now, policy.incident_due_working_days.get(t, 1)), "ev": e}
                for i, t, e in zip(reopen["id"], reopen["incident_type"], reopen["evidence"], strict=True)
            ],
        )  # fmt: skip
    acted = pd.concat([fresh, reopen], ignore_index=True)
    if acted.empty:
        return empty
    keys = acted[["shipment_id", "incident_type"]].astype({"shipment_id": "int64"})
    opened = ids_for_keys(conn, tracking_incidents, keys)
    details = read_frame(
        conn, select(tracking_incidents).where(tracking_incidents.c.id.in_(opened["id"].astype(int).tolist()))
    )
    claims = _open_claims(conn, details, now, policy)
    notices = _incident_notices(conn, details, policy)
    _incident_timeline(conn, details, actor)
    out = details[["id", "shipment_id", "order_id", "incident_type", "occurrences"]].copy()
    out.attrs["claims"] = claims
    out.attrs["notices"] = notices
    return out


def _incident_timeline(conn: Connection, incidents: pd.DataFrame, actor: str) -> None:
    reasons = [
        f"incident opened: {INCIDENT_LABELS_ZH.get(t, t)} ({t}); owner {o}; due "
        f"{d.astimezone(SHANGHAI):%Y-%m-%d %H:%M}"
        for t, o, d in zip(incidents["incident_type"], incidents["owner"], incidents["due_at"], strict=True)
    ]
    record_events(
        conn,
        pd.DataFrame(
            {
                "order_id": incidents["order_id"].astype(int),
                "kind": "tracking",
                "reason": reasons,
                "details": [
                    {"incident_id": int(i), "shipment_id": int(s), "incident_type": t, "evidence": e}
                    for i, s, t, e in zip(
                        incidents["id"], incidents["shipment_id"], incidents["incident_type"], incidents["evidence"],
                        strict=True,
                    )
                ],
            }
        ),
        actor=actor,
    )  # fmt: skip


def claim_amount_fen(
    *, insured: bool, declared_value_fen: int, freight_fen: int, multiple: float, claim_type: str
) -> tuple[int, str]:
    """What we claim from the carrier, and on what basis (K3, P1).

    《快递暂行条例》第二十七条: an insured parcel is compensated under the insurance (declared value); an
    uninsured one under civil law for the actual loss, which carrier agreements cap at a multiple of the fee.
    Delay: the agreements' remedy is a refund of the freight.
    """
    if claim_type == "delay":
        return int(freight_fen), "时效延误：按承运协议退还运费"
    if insured:
        return int(declared_value_fen), "保价快件：按声明价值赔偿（《快递暂行条例》第二十七条，保价规则）"
    cap = int(round(freight_fen * multiple))
    amount = min(int(declared_value_fen), cap) if declared_value_fen else cap
    return amount, (
        f"未保价快件：按实际损失赔偿（《快递暂行条例》第二十七条），承运协议上限为运费的 {multiple:g} 倍"
    )


def _open_claims(conn: Connection, incidents: pd.DataFrame, now: datetime, policy: TrackingPolicy) -> int:
    claimable = incidents[incidents["incident_type"].isin(list(CLAIM_TYPES))]
    if claimable.empty:
        return 0
    ships = read_frame(
        conn,
        select(
            shipments.c.id.label("shipment_id"), shipments.c.declared_value_fen, shipments.c.insured,
            shipments.c.freight_fen,
        ).where(shipments.c.id.in_(claimable["shipment_id"].astype(int).tolist())),
    )  # fmt: skip
    merged = claimable.merge(ships, on="shipment_id")
    rows = []
    for rec in frame_records(merged):
        claim_type = CLAIM_TYPES[rec["incident_type"]]
        multiple = policy.uninsured_freight_multiple.get(
            rec["carrier"], policy.uninsured_freight_multiple.get("default", 3.0)
        )
        insured = bool(rec["insured"])
        amount, basis = claim_amount_fen(
            insured=insured, declared_value_fen=int(rec["declared_value_fen"] or 0),
            freight_fen=int(rec["freight_fen"] or 0), multiple=multiple, claim_type=claim_type,
        )  # fmt: skip
        rows.append(
            {
                "incident_id": int(rec["id"]),
                "shipment_id": int(rec["shipment_id"]),
                "order_id": int(rec["order_id"]),
                "carrier": rec["carrier"],
                "waybill_no": rec["waybill_no"],
                "claim_type": claim_type,
                "insured": insured,
                "declared_value_fen": int(rec["declared_value_fen"] or 0),
                "insured_value_fen": int(rec["declared_value_fen"] or 0) if insured else 0,
                "freight_fen": int(rec["freight_fen"] or 0),
                "claim_amount_fen": amount,
                "basis": basis,
                "status": "open",
                "opened_at": now,
                "due_at": due_after_working_days(now, policy.claim_due_working_days),
                "updated_at": now,
            }
        )
    return insert_rows(conn, liability_claims, pd.DataFrame(rows), on_conflict=["incident_id"])


def _order_contacts(conn: Connection, order_ids: Sequence[int]) -> pd.DataFrame:
    frames = [
        read_frame(
            conn,
            select(
                orders.c.id.label("order_id"),
                orders.c.order_no,
                orders.c.customer_name,
                orders.c.customer_phone,
                orders.c.customer_email,
            ).where(orders.c.id.in_(chunk)),
        )  # fmt: skip
        for chunk in _chunks(sorted(set(int(i) for i in order_ids)))
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["order_id"])


def _notices(contacts: pd.DataFrame, rows: list[dict], policy: TrackingPolicy) -> pd.DataFrame:
    """rows: order_id, template, dedupe, context -> one outbox row per medium with a contact."""
    by_order = {int(r["order_id"]): r for r in frame_records(contacts)}
    company = get_settings().general.company_name
    out = []
    for row in rows:
        contact = by_order.get(int(row["order_id"]))
        if contact is None:
            continue
        context = {"order_no": contact["order_no"], "customer_name": contact["customer_name"] or "客户",
                   "company_name": company, **row["context"]}  # fmt: skip
        for medium in policy.notice_media:
            recipient = contact["customer_phone"] if medium == "sms" else contact["customer_email"]
            if isinstance(recipient, str) and recipient.strip():
                out.append({"order_id": int(row["order_id"]), "medium": medium, "recipient": recipient.strip(),
                            "template": row["template"], "context": context,
                            "dedupe_key": f"{row['dedupe']}:{medium}"})  # fmt: skip
    return pd.DataFrame(out, columns=["order_id", "medium", "recipient", "template", "context", "dedupe_key"])


def _shipment_facts(conn: Connection, shipment_ids: Sequence[int]) -> dict[int, dict]:
    frame = read_frame(
        conn,
        select(
            shipments.c.id.label("shipment_id"), shipments.c.order_id, shipments.c.carrier, shipments.c.waybill_no,
            shipments.c.expected_delivery_date, shipments.c.status,
        ).where(shipments.c.id.in_([int(i) for i in shipment_ids])),
    )  # fmt: skip
    return {int(r["shipment_id"]): r for r in frame_records(frame)}


def _shipment_context(fact: dict) -> dict:
    expected = fact.get("expected_delivery_date")
    return {
        "carrier_name": CARRIER_NAMES.get(fact["carrier"], fact["carrier"]),
        "waybill_no": fact["waybill_no"] or "",
        "expected_delivery_date": expected.isoformat() if isinstance(expected, date) else "待定",
        "status_label": STATUS_LABELS_ZH.get(TrackingStatus(fact["status"]), fact["status"]),
    }


def _incident_notices(conn: Connection, incidents: pd.DataFrame, policy: TrackingPolicy) -> int:
    notify = incidents[incidents["incident_type"].isin(policy.notify_incidents)]
    if notify.empty:
        return 0
    facts = _shipment_facts(conn, notify["shipment_id"].tolist())
    rows = [
        {
            "order_id": int(rec["order_id"]),
            "template": f"tracking_{rec['incident_type']}",
            "dedupe": f"tracking:incident:{int(rec['id'])}:{int(rec['occurrences'])}",
            "context": {**_shipment_context(facts[int(rec["shipment_id"])]),
                        "incident_label": INCIDENT_LABELS_ZH.get(rec["incident_type"], rec["incident_type"])},
        }
        for rec in frame_records(notify)
    ]  # fmt: skip
    return enqueue(conn, _notices(_order_contacts(conn, notify["order_id"].tolist()), rows, policy))


def _progress_notices(conn: Connection, changes: pd.DataFrame, policy: TrackingPolicy) -> int:
    wanted = changes[changes["status"].isin(policy.notify_statuses)] if not changes.empty else changes
    if wanted.empty:
        return 0
    facts = _shipment_facts(conn, wanted["shipment_id"].tolist())
    rows = [
        {
            "order_id": int(facts[int(sid)]["order_id"]),
            "template": f"tracking_{status}",
            "dedupe": f"tracking:status:{int(sid)}:{status}",
            "context": _shipment_context(facts[int(sid)]),
        }
        for sid, status in zip(wanted["shipment_id"], wanted["status"], strict=True)
    ]
    order_ids = [r["order_id"] for r in rows]
    return enqueue(conn, _notices(_order_contacts(conn, order_ids), rows, policy))


def auto_resolve(
    conn: Connection, now: datetime, *, shipment_ids: Sequence[int] | None = None, actor: str | None = None
) -> list[int]:
    """Close incidents the shipment has moved past; returns their ids."""
    if shipment_ids is not None and len(shipment_ids) == 0:
        return []
    stmt = (
        select(
            tracking_incidents.c.id, tracking_incidents.c.order_id, tracking_incidents.c.incident_type,
            tracking_incidents.c.opened_at, shipments.c.status, shipments.c.last_event_at,
        )
        .join(shipments, shipments.c.id == tracking_incidents.c.shipment_id)
        .where(tracking_incidents.c.status == "open", tracking_incidents.c.incident_type.in_(list(AUTO_RESOLVE)))
    )  # fmt: skip
    frames = []
    if shipment_ids is None:
        frames.append(read_frame(conn, stmt))
    else:
        for chunk in _chunks([int(i) for i in shipment_ids]):
            frames.append(read_frame(conn, stmt.where(tracking_incidents.c.shipment_id.in_(chunk))))
    found = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if found.empty:
        return []
    done = found["status"].isin([T.DELIVERED.value, T.RETURNED.value])
    heard_again = pd.to_datetime(found["last_event_at"], utc=True) > pd.to_datetime(
        found["opened_at"], utc=True
    )
    kind = found["incident_type"]
    resolve = (
        ((kind == "delay") & done)
        | ((kind == "problem") & done)
        | ((kind == "stale") & (heard_again | done))
        | ((kind == "unknown_waybill") & found["last_event_at"].notna())
    )
    chosen = found[resolve]
    if chosen.empty:
        return []
    ids = chosen["id"].astype(int).tolist()
    actor = actor or current_actor()
    conn.execute(
        update(tracking_incidents)
        .where(tracking_incidents.c.id == bindparam("iid"), tracking_incidents.c.status == "open")
        .values(
            status="resolved", resolved_at=now, resolution=bindparam("why"), resolved_by=actor, updated_at=now
        ),
        [{"iid": i, "why": AUTO_RESOLVE[t]} for i, t in zip(ids, chosen["incident_type"], strict=True)],
    )
    record_events(
        conn,
        pd.DataFrame(
            {
                "order_id": chosen["order_id"].astype(int),
                "kind": "tracking",
                "reason": [f"incident resolved: {t} ({AUTO_RESOLVE[t]})" for t in chosen["incident_type"]],
                "details": [{"incident_id": i} for i in ids],
            }
        ),
        actor=actor,
    )
    return ids


class IncidentNotFound(LookupError):
    pass


def resolve_incident(
    conn: Connection,
    incident_id: int,
    resolution: str,
    *,
    actor: str | None = None,
    now: datetime | None = None,
    policy: TrackingPolicy | None = None,
    claim_status: str | None = None,
    settled_amount_fen: int | None = None,
) -> dict:
    """A person closes an incident (and optionally its claim); the customer hears about it; the order follows."""
    policy = policy or get_settings().tracking
    now = now or utc_now()
    actor = actor or current_actor()
    row = (
        conn.execute(select(tracking_incidents).where(tracking_incidents.c.id == incident_id))
        .mappings()
        .first()
    )
    if row is None:
        raise IncidentNotFound(f"no incident {incident_id}")
    if row["status"] == "resolved":
        return dict(row)
    conn.execute(
        update(tracking_incidents)
        .where(tracking_incidents.c.id == incident_id)
        .values(status="resolved", resolved_at=now, resolution=resolution, resolved_by=actor, updated_at=now)
    )
    if claim_status:
        values = {"status": claim_status, "updated_at": now}
        if settled_amount_fen is not None:
            values.update(settled_amount_fen=int(settled_amount_fen), settled_at=now)
        conn.execute(
            update(liability_claims).where(liability_claims.c.incident_id == incident_id).values(**values)
        )
    record_events(
        conn,
        pd.DataFrame(
            {"order_id": [int(row["order_id"])], "kind": "tracking",
             "reason": [f"incident resolved: {row['incident_type']} — {resolution}"],
             "details": [{"incident_id": int(incident_id), "claim_status": claim_status}]}
        ),
        actor=actor,
    )  # fmt: skip
    if row["incident_type"] in policy.notify_incidents:
        fact = _shipment_facts(conn, [int(row["shipment_id"])])[int(row["shipment_id"])]
        notice = {
            "order_id": int(row["order_id"]),
            "template": "tracking_resolved",
            "dedupe": f"tracking:resolved:{int(incident_id)}:{int(row['occurrences'])}",
            "context": {**_shipment_context(fact), "resolution": resolution,
                        "incident_label": INCIDENT_LABELS_ZH.get(row["incident_type"], row["incident_type"])},
        }  # fmt: skip
        enqueue(conn, _notices(_order_contacts(conn, [int(row["order_id"])]), [notice], policy))
    reconcile_orders(conn, [int(row["order_id"])], policy, actor=actor)
    return dict(
        conn.execute(select(tracking_incidents).where(tracking_incidents.c.id == incident_id))
        .mappings()
        .one()
    )


# --- orders ----------------------------------------------------------------------------------------------------

ORDER_STATES_FOLLOWING_TRACKING = frozenset(
    {OrderState.SHIPPED, OrderState.IN_TRANSIT, OrderState.EXCEPTION, OrderState.DELIVERED}
)
_TARGET_REASONS = {
    OrderState.IN_TRANSIT: "carrier has the goods (tracking)",
    OrderState.DELIVERED: "every shipment delivered (tracking)",
    OrderState.EXCEPTION: "tracking incident open",
    OrderState.RETURNED: "every shipment returned to the sender (tracking)",
}


def order_targets(
    order_states: dict[int, str], statuses: dict[int, list[str]], open_incident: set[int]
) -> dict:
    """The state each order should be in given its shipments and open incidents (pure; None = leave it)."""
    targets: dict[int, OrderState] = {}
    for oid, state in order_states.items():
        if state not in ORDER_STATES_FOLLOWING_TRACKING:
            continue
        ship_statuses = statuses.get(oid, [])
        if oid in open_incident:
            target = OrderState.EXCEPTION
        elif ship_statuses and all(s == T.DELIVERED for s in ship_statuses):
            target = OrderState.DELIVERED
        elif ship_statuses and all(s == T.RETURNED for s in ship_statuses):
            target = OrderState.RETURNED
        elif any(s in MOVING for s in ship_statuses):
            target = OrderState.IN_TRANSIT
        else:
            continue
        if target != state:
            targets[oid] = target
    return targets


def reconcile_orders(
    conn: Connection, order_ids: Sequence[int], policy: TrackingPolicy, *, actor: str | None = None
) -> Counter:
    """Move orders to the state their shipments and incidents imply (illegal moves are skipped, not forced)."""
    moved: Counter = Counter()
    if not order_ids:
        return moved
    ids = sorted({int(i) for i in order_ids})
    states, statuses, open_incident = {}, {}, set()
    for chunk in _chunks(ids):
        states.update(
            dict(conn.execute(select(orders.c.id, orders.c.state).where(orders.c.id.in_(chunk))).all())
        )
        for oid, status in conn.execute(
            select(shipments.c.order_id, shipments.c.status).where(shipments.c.order_id.in_(chunk))
        ):
            statuses.setdefault(oid, []).append(status)
        open_incident.update(
            oid
            for (oid,) in conn.execute(
                select(tracking_incidents.c.order_id).where(
                    tracking_incidents.c.order_id.in_(chunk),
                    tracking_incidents.c.status == "open",
                    tracking_incidents.c.incident_type.in_(policy.order_exception_incidents),
                )
            )
        )
    targets = order_targets(states, statuses, open_incident)
    by_target: dict[OrderState, list[int]] = {}
    for oid, target in targets.items():
        by_target.setdefault(target, []).append(oid)
    for target, oids in by_target.items():
        outcome = transition_orders(
            conn, oids, target, reason=_TARGET_REASONS[target], actor=actor, skip_illegal=True
        )
        if outcome.moved:
            moved[target.value] += len(outcome.moved)
    return moved


# --- time-based exceptions -------------------------------------------------------------------------------------


def late_working_days(expected: date, today: date) -> int:
    try:
        return working_days_between(expected, today)
    except CalendarOutOfRange:
        return int(sum(1 for d in pd.bdate_range(expected + timedelta(days=1), today)))


def detect_time_exceptions(
    conn: Connection, now: datetime, policy: TrackingPolicy, *, actor: str | None = None
) -> dict:
    """Delay, stale, unknown waybill, expiry over every active shipment; auto-resolution of moved-on incidents."""
    actor = actor or current_actor()
    ts = tracking_shipment_state
    active = read_frame(
        conn,
        select(
            shipments.c.id.label("shipment_id"), shipments.c.order_id, shipments.c.carrier, shipments.c.waybill_no,
            shipments.c.status, shipments.c.shipped_at, shipments.c.last_event_at, shipments.c.last_polled_at,
            shipments.c.expected_delivery_date, ts.c.no_result_since, ts.c.last_push_at,
        )
        .outerjoin(ts, ts.c.shipment_id == shipments.c.id)
        .where(shipments.c.waybill_no.is_not(None), shipments.c.status.not_in(FINAL)),
    )  # fmt: skip
    found: Counter = Counter()
    candidates = []
    expired_ids: list[int] = []
    if not active.empty:
        now_ts = pd.Timestamp(now)
        today = now.astimezone(SHANGHAI).date()
        last_event = pd.to_datetime(active["last_event_at"], utc=True)
        shipped = pd.to_datetime(active["shipped_at"], utc=True)
        reference = last_event.fillna(shipped)
        heard = pd.concat(
            [
                pd.to_datetime(active["last_polled_at"], utc=True),
                pd.to_datetime(active["last_push_at"], utc=True),
            ],
            axis=1,
        ).max(axis=1)
        stale_after = pd.Timedelta(hours=policy.stale_after_hours)
        in_motion = ~active["status"].isin([T.RETURNING.value])

        # Delay: the expected delivery date has passed on the working-day calendar.
        late_cache: dict[date, int] = {}
        late = []
        for expected, status in zip(active["expected_delivery_date"], active["status"], strict=True):
            if not isinstance(expected, date) or status == T.RETURNING:
                late.append(False)
                continue
            if expected not in late_cache:
                late_cache[expected] = late_working_days(expected, today)
            late.append(late_cache[expected] > policy.delay_grace_working_days)
        late = pd.Series(late, index=active.index)
        for rec in frame_records(active[late]):
            candidates.append(
                _candidate(rec, "delay", f"预计送达 {rec['expected_delivery_date']} 已过（工作日计）", now)
            )

        # Stale: nothing from the carrier for N hours, and a poll or push after that confirmed the silence.
        silent = reference.notna() & ((now_ts - reference) > stale_after) & (heard > reference + stale_after)
        for rec in frame_records(active[silent & in_motion]):
            candidates.append(
                _candidate(rec, "stale", f"承运商超过 {policy.stale_after_hours} 小时无更新", now)
            )

        # Unknown waybill: the carrier still answers "no result" long after shipping.
        no_result = pd.to_datetime(active["no_result_since"], utc=True)
        unknown = (
            last_event.isna()
            & no_result.notna()
            & ((now_ts - no_result) >= pd.Timedelta(hours=policy.unknown_waybill_after_hours))
        )
        for rec in frame_records(active[unknown]):
            candidates.append(_candidate(rec, "unknown_waybill", "承运商查询无结果（运单未被识别）", now))

        # Expired: no update for the policy's days -> final status, polling stops.
        expired = reference.notna() & ((now_ts - reference) > pd.Timedelta(days=policy.expire_after_days))
        expired_ids = active.loc[expired, "shipment_id"].astype(int).tolist()
    if expired_ids:
        for chunk in _chunks(expired_ids):
            conn.execute(
                update(shipments)
                .where(shipments.c.id.in_(chunk))
                .values(status=T.EXPIRED.value, updated_at=now)
            )
        exp = active[active["shipment_id"].isin(expired_ids)]
        record_events(
            conn,
            pd.DataFrame(
                {"order_id": exp["order_id"].astype(int), "kind": "tracking",
                 "reason": [f"tracking expired: no carrier update for {policy.expire_after_days} days (waybill {w})"
                            for w in exp["waybill_no"]],
                 "details": [{"shipment_id": int(s)} for s in exp["shipment_id"]]}
            ),
            actor=actor,
        )  # fmt: skip
    opened = open_incidents(conn, pd.DataFrame(candidates), now, policy, actor=actor) if candidates else None
    if opened is not None and not opened.empty:
        found.update(opened["incident_type"].tolist())
    resolved = auto_resolve(conn, now, actor=actor)
    order_ids = set()
    if opened is not None and not opened.empty:
        order_ids |= set(opened["order_id"].astype(int).tolist())
    if resolved:
        order_ids |= {
            int(o)
            for (o,) in conn.execute(
                select(tracking_incidents.c.order_id).where(tracking_incidents.c.id.in_(resolved))
            )
        }
    if expired_ids:
        order_ids |= set(active.loc[active["shipment_id"].isin(expired_ids), "order_id"].astype(int).tolist())
    moved = reconcile_orders(conn, sorted(order_ids), policy, actor=actor)
    return {
        "incidents_opened": dict(found),
        "incident_ids": opened["id"].astype(int).tolist() if opened is not None and not opened.empty else [],
        "claims": int(opened.attrs.get("claims", 0)) if opened is not None else 0,
        "notices": int(opened.attrs.get("notices", 0)) if opened is not None else 0,
        "auto_resolved": len(resolved),
        "expired": len(expired_ids),
        "orders_moved": dict(moved),
    }


def _candidate(rec: dict, incident_type: str, evidence: str, now: datetime) -> dict:
    return {
        "shipment_id": int(rec["shipment_id"]),
        "order_id": int(rec["order_id"]),
        "incident_type": incident_type,
        "carrier": rec["carrier"],
        "waybill_no": rec["waybill_no"],
        "evidence": evidence,
        "detected_at": now,
    }


# --- pushes ----------------------------------------------------------------------------------------------------


def land_push(conn: Connection, param: str, notice: PushNotice, now: datetime) -> int | None:
    """Keep a verified push as received (once: a re-sent push is the same receipt); returns its id if new."""
    digest = hashlib.sha256(param.encode("utf-8")).hexdigest()
    inserted = insert_rows(
        conn,
        tracking_push_receipts,
        pd.DataFrame(
            [{"received_at": now, "carrier": notice.com, "waybill_no": notice.num, "push_status": notice.status,
              "content": param, "content_hash": digest, "status": "landed"}]
        ),
        on_conflict=["content_hash"],
    )  # fmt: skip
    if not inserted:
        return None
    return conn.execute(
        select(tracking_push_receipts.c.id).where(tracking_push_receipts.c.content_hash == digest)
    ).scalar_one()


def apply_landed_pushes(
    conn: Connection,
    now: datetime,
    policy: TrackingPolicy,
    *,
    receipt_ids: Sequence[int] | None = None,
    actor: str = "carrier:kuaidi100-push",
) -> BatchSummary:
    """Apply landed pushes (oldest first) through the same path as polls."""
    from connectors.kuaidi100 import parse_result

    stmt = select(tracking_push_receipts).where(tracking_push_receipts.c.status == "landed")
    if receipt_ids is not None:
        stmt = stmt.where(tracking_push_receipts.c.id.in_(list(receipt_ids)))
    receipts = read_frame(conn, stmt.order_by(tracking_push_receipts.c.id))
    summary = BatchSummary()
    for rec in frame_records(receipts):
        body = json.loads(rec["content"])
        status = body.get("status")
        last = body.get("lastResult") or {}
        try:
            result = parse_result(
                last, com_old=body.get("comOld") or None, com_new=body.get("comNew") or None
            )
        except Exception:  # noqa: BLE001 - an abort may carry no readable result
            result = None
        num = rec["waybill_no"]
        coms = [c for c in {rec["carrier"], body.get("comOld") or None, (last or {}).get("com")} if c]
        ship = read_frame(
            conn,
            select(
                shipments.c.id.label("shipment_id"), shipments.c.order_id, shipments.c.shipment_no, shipments.c.carrier,
                shipments.c.waybill_no, shipments.c.status,
            ).where(shipments.c.waybill_no == num, shipments.c.carrier.in_(coms)),
        )  # fmt: skip
        if ship.empty:
            conn.execute(
                update(tracking_push_receipts).where(tracking_push_receipts.c.id == rec["id"])
                .values(status="unmatched", applied_at=now, error="no shipment with this waybill and carrier")
            )  # fmt: skip
            summary.outcomes["unmatched"] += 1
            continue
        sid = int(ship["shipment_id"].iloc[0])
        if result is not None and result.checkpoints:
            part = apply_outcomes(conn, ship, [PollOutcome(sid, "ok", result=result)], now, policy, source="push",
                                  actor=actor)  # fmt: skip
            summary.merge(part)
        subscription = {"polling": "active", "updateall": "active", "shutdown": "ended", "abort": "aborted"}
        insert_rows(
            conn,
            tracking_shipment_state,
            pd.DataFrame([{"shipment_id": sid, "last_push_at": now, "subscription_status": subscription[status],
                           "updated_at": now}]),
            on_conflict=["shipment_id"],
            update_columns=["last_push_at", "subscription_status", "updated_at"],
        )  # fmt: skip
        conn.execute(
            update(tracking_push_receipts).where(tracking_push_receipts.c.id == rec["id"])
            .values(status="applied", applied_at=now, shipment_id=sid)
        )  # fmt: skip
        summary.outcomes["applied"] += 1
    return summary


def subscribe_shipments(
    conn: Connection, client: Kuaidi100Client, policy: TrackingPolicy, now: datetime, *, limit: int = 1000
) -> Counter:
    """Ask Kuaidi100 to push updates for active shipments not subscribed yet."""
    ts = tracking_shipment_state
    frame = read_frame(
        conn,
        select(
            shipments.c.id.label("shipment_id"), shipments.c.carrier, shipments.c.waybill_no,
            orders.c.customer_phone.label("phone"), orders.c.ship_province, orders.c.ship_city, orders.c.ship_district,
        )
        .join(orders, orders.c.id == shipments.c.order_id)
        .outerjoin(ts, ts.c.shipment_id == shipments.c.id)
        .where(shipments.c.waybill_no.is_not(None), shipments.c.status.not_in(FINAL), ts.c.subscription_status.is_(None))
        .order_by(shipments.c.id)
        .limit(limit),
    )  # fmt: skip
    counts: Counter = Counter()
    rows = []
    for rec in frame_records(frame):
        phone = rec["phone"] if rec["carrier"] in PHONE_REQUIRED else None
        try:
            outcome = client.subscribe(rec["carrier"], rec["waybill_no"], policy.callback_url, phone=phone,
                                       to=_destination(rec))  # fmt: skip
            status = "active" if outcome.accepted else "refused"
        except Kuaidi100Error as exc:
            if exc.kind is ErrorKind.AUTH:
                counts["auth_failed"] += 1
                break
            status = None  # try again next cycle
        counts[status or "failed"] += 1
        if status:
            rows.append({"shipment_id": int(rec["shipment_id"]), "subscription_status": status, "subscribed_at": now,
                         "updated_at": now})  # fmt: skip
    if rows:
        insert_rows(
            conn, tracking_shipment_state, pd.DataFrame(rows), on_conflict=["shipment_id"],
            update_columns=["subscription_status", "subscribed_at", "updated_at"],
        )  # fmt: skip
    return counts


# --- reporting -------------------------------------------------------------------------------------------------

_PHONE_IN_TEXT = re.compile(r"(?<!\d)(1\d{10}|0\d{2,3}-?\d{7,8})(?!\d)")
_SIGNER_IN_TEXT = re.compile(r"((?:签收人|收件人|收货人)\s*[:：]\s*)([^\s,，。;；【】()（）:：]{1,6})")
_NOT_A_NAME = ("本人", "寄件人", "家人", "同事", "前台", "门卫", "快递柜", "驿站", "代收点")


def _mask_signer(match: re.Match) -> str:
    name = match.group(2)
    return match.group(0) if name.startswith(_NOT_A_NAME) else match.group(1) + mask_name(name)


def mask_text(text: str | None) -> str:
    """Phones and signers' names inside carrier text masked (checkpoints carry both)."""
    return _SIGNER_IN_TEXT.sub(_mask_signer, _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text or ""))


def exceptions_table(conn: Connection, incident_ids: Sequence[int]) -> list[dict]:
    """The run's incidents for the UI: no names, no addresses, phones masked."""
    if not incident_ids:
        return []
    frame = read_frame(
        conn,
        select(
            tracking_incidents.c.id, orders.c.order_no, tracking_incidents.c.incident_type, tracking_incidents.c.carrier,
            tracking_incidents.c.waybill_no, tracking_incidents.c.owner, tracking_incidents.c.due_at,
            tracking_incidents.c.evidence,
        )
        .join(orders, orders.c.id == tracking_incidents.c.order_id)
        .where(tracking_incidents.c.id.in_([int(i) for i in incident_ids][:2000]))
        .order_by(tracking_incidents.c.id),
    )  # fmt: skip
    return [
        {
            "incident": int(r["id"]),
            "order": r["order_no"],
            "type": r["incident_type"],
            "carrier": r["carrier"],
            "waybill": r["waybill_no"],
            "owner": r["owner"],
            "due (Asia/Shanghai)": r["due_at"].astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M"),
            "evidence": mask_text(r["evidence"])[:120],
        }
        for r in frame_records(frame)
    ]


def summary_markdown(summary: dict) -> str:
    lines = ["# Carrier polling", ""]
    lines.append(f"- as of: {summary.get('as_of')}")
    lines.append(f"- due shipments: {summary.get('due', 0)}; cycle seconds: {summary.get('seconds', 0):.1f}")
    if summary.get("breaker"):
        lines.append(f"- **polling stopped early**: {summary['breaker']}")
    lines += ["", "| outcome | waybills |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(summary.get("outcomes", {}).items())]
    lines += ["", "| canonical status (polled shipments) | shipments |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(summary.get("statuses", {}).items())]
    lines += ["", "| exceptions found | incidents |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(summary.get("exceptions", {}).items())] or ["| none | 0 |"]
    lines += ["", f"new checkpoints: {summary.get('new_events', 0)}; orders moved: {summary.get('orders_moved', {})}; "
              f"claims opened: {summary.get('claims', 0)}; notices queued: {summary.get('notices', 0)}; "
              f"carrier code changes: {summary.get('carrier_changes', 0)}"]  # fmt: skip
    return "\n".join(lines)


# --- one cycle without Prefect ---------------------------------------------------------------------------------


def split_batches(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[i : i + size].reset_index(drop=True) for i in range(0, len(frame), size)]


def poll_and_apply(
    engine: Engine,
    client: Kuaidi100Client,
    batch: pd.DataFrame,
    now: datetime,
    policy: TrackingPolicy,
    breaker: CircuitBreaker,
    *,
    actor: str | None = None,
) -> BatchSummary:
    outcomes = poll_frame(client, batch, breaker, workers=policy.http_workers)
    with engine.begin() as conn:
        summary = apply_outcomes(conn, batch, outcomes, now, policy, actor=actor)
    summary.breaker = breaker.reason
    return summary


def run_poll_cycle(
    engine: Engine,
    client: Kuaidi100Client,
    policy: TrackingPolicy,
    now: datetime | None = None,
    *,
    waybill: str | None = None,
    limit: int | None = None,
    actor: str | None = None,
) -> dict:
    """A whole polling cycle: due shipments in batches (several in flight), then time-based exceptions."""
    import time

    started = time.perf_counter()
    now = now or utc_now()
    actor = actor or current_actor()
    with engine.begin() as conn:
        pushes = apply_landed_pushes(conn, now, policy, actor=actor)
        due = due_shipments(conn, now, policy, waybill=waybill, limit=limit)
    breaker = CircuitBreaker(policy.circuit_breaker_failures)
    total = BatchSummary().merge(pushes) if pushes.outcomes else BatchSummary()
    batches = split_batches(due, policy.batch_size)
    with ThreadPoolExecutor(max_workers=policy.parallel_batches, thread_name_prefix="batch") as pool:
        for part in pool.map(
            lambda b: poll_and_apply(engine, client, b, now, policy, breaker, actor=actor), batches
        ):
            total.merge(part)
    with engine.begin() as conn:
        timed = detect_time_exceptions(conn, now, policy, actor=actor)
    return cycle_summary(total, timed, due=len(due), now=now, seconds=time.perf_counter() - started)


def cycle_summary(total: BatchSummary, timed: dict, *, due: int, now: datetime, seconds: float) -> dict:
    summary = total.as_dict()
    exceptions: Counter = Counter()
    summary["incident_ids"] = list(total.incidents) + list(timed.get("incident_ids", []))
    summary.update(
        as_of=now.isoformat(),
        due=due,
        seconds=seconds,
        time_based=timed,
        claims=total.claims + timed.get("claims", 0),
        notices=total.notices + timed.get("notices", 0),
        errors=total.errors,
    )
    summary["orders_moved"] = dict(Counter(total.orders_moved) + Counter(timed.get("orders_moved", {})))
    exceptions.update(total.incident_types)
    exceptions.update(timed.get("incidents_opened", {}))
    summary["exceptions_from_events"] = len(total.incidents)
    summary["exceptions"] = dict(exceptions)
    return summary
