"""Tracking rules (F6, T1, K3, P1): frames and values in, frames and values out; no database, no network.

What a checkpoint becomes (rows for ``tracking_events``), which checkpoints and silences are incidents, what we
claim from a carrier, when an incident is due, which incidents close themselves, how a poll answer changes a
shipment's polling state, and which state an order follows from its shipments. The canonical status mapping
itself is ``tasks.tracking.status``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import pandas as pd

from connectors.kuaidi100 import TrackingResult
from tasks.tracking.status import FINAL_STATUSES, Keywords, Reason, TrackingStatus, classify_checkpoint
from yidi.bulk import frame_records
from yidi.lifecycle import OrderState
from yidi.tracking_policy import TrackingPolicy
from yidi.workdays import BUSINESS_TZ, CalendarOutOfRange, add_working_days, working_days_between

T = TrackingStatus

FINAL = sorted(s.value for s in FINAL_STATUSES)
MOVING = frozenset(
    {T.PICKED_UP, T.IN_TRANSIT, T.OUT_FOR_DELIVERY, T.DELIVERY_FAILED, T.RETURNING, T.DELIVERED, T.RETURNED}
)
OUTCOMES = ("ok", "no_result", "too_frequent", "rejected", "failed", "skipped")

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
CANDIDATE_COLUMNS = [
    "shipment_id",
    "order_id",
    "incident_type",
    "carrier",
    "waybill_no",
    "evidence",
    "detected_at",
]


def keywords_of(policy: TrackingPolicy) -> Keywords:
    return Keywords.from_mapping(policy.keywords.model_dump())


# --- checkpoints -----------------------------------------------------------------------------------------------


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
    """One ``tracking_events`` row per checkpoint, classified into the canonical status set."""
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


def event_incidents(new_events: pd.DataFrame) -> pd.DataFrame:
    """Incident candidates from checkpoint evidence: the earliest evidence per shipment and incident type."""
    with_reason = new_events[new_events["reason"].notna()] if not new_events.empty else new_events
    if with_reason.empty:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS)
    cand = with_reason.assign(
        incident_type=with_reason["reason"].map(lambda r: REASON_INCIDENT.get(Reason(r)))
    )
    cand = cand[cand["incident_type"].notna()].sort_values("occurred_at")
    cand = cand.drop_duplicates(["shipment_id", "incident_type"])
    return pd.DataFrame(
        {
            "shipment_id": cand["shipment_id"],
            "order_id": cand["order_id"],
            "incident_type": cand["incident_type"],
            "carrier": cand["carrier"],
            "waybill_no": cand["waybill_no"],
            "evidence": cand["context"],
            "detected_at": cand["occurred_at"],
        }
    )


# --- polling state ---------------------------------------------------------------------------------------------


def stored_time(value) -> datetime | None:
    """A stored time, or None (read frames give NaT for NULL, and NaT is a datetime)."""
    return value if isinstance(value, datetime) and not pd.isna(value) else None


def changes_polling_state(outcome: str, result: TrackingResult | None, ship: dict) -> bool:
    """Whether this answer changes the shipment's polling state (a routine good answer does not)."""
    if outcome != "ok" or ship.get("last_outcome") != "ok":
        return True
    if int(ship.get("consecutive_failures") or 0) or stored_time(ship.get("no_result_since")) is not None:
        return True
    previous = ship.get("carrier_state")
    previous = None if previous is None or previous != previous else int(previous)
    return result is not None and result.state != previous


def polling_state_row(
    shipment_id: int,
    outcome: str,
    result: TrackingResult | None,
    error: str | None,
    ship: dict,
    now: datetime,
) -> dict:
    """The shipment's ``tracking_shipment_state`` after this answer: failures in a row, "no result" since when."""
    ok = outcome == "ok"
    failures = 0 if outcome != "failed" else int(ship.get("consecutive_failures") or 0) + 1
    no_result_since = None
    if outcome == "no_result":
        no_result_since = stored_time(ship.get("no_result_since")) or now
    elif not ok:
        no_result_since = stored_time(ship.get("no_result_since"))
    return {
        "shipment_id": shipment_id,
        "last_attempt_at": now,
        "last_outcome": outcome,
        "last_error": (error or None) if not ok else None,
        "consecutive_failures": failures,
        "no_result_since": no_result_since,
        "carrier_state": result.state if result else None,
        "ischeck": bool(result.ischeck) if result else False,
        "updated_at": now,
    }


# --- incidents and claims --------------------------------------------------------------------------------------


def due_after_working_days(start: datetime, days: int) -> datetime:
    """``start`` plus working days; past the installed holiday calendar, Monday-Friday (never a crash)."""
    try:
        return add_working_days(start, days)
    except CalendarOutOfRange:
        moved, left = start, days
        while left > 0:
            moved += timedelta(days=1)
            if moved.astimezone(BUSINESS_TZ).weekday() < 5:
                left -= 1
        return moved


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


def claim_rows(incidents: pd.DataFrame, now: datetime, policy: TrackingPolicy) -> pd.DataFrame:
    """``liability_claims`` rows for claimable incidents (joined with their shipments' value, insurance, fee)."""
    rows = []
    for rec in frame_records(incidents[incidents["incident_type"].isin(list(CLAIM_TYPES))]):
        claim_type = CLAIM_TYPES[rec["incident_type"]]
        multiple = policy.uninsured_freight_multiple.get(
            rec["carrier"], policy.uninsured_freight_multiple.get("default", 3.0)
        )
        insured = bool(rec["insured"])
        declared, freight = int(rec["declared_value_fen"] or 0), int(rec["freight_fen"] or 0)
        amount, basis = claim_amount_fen(
            insured=insured, declared_value_fen=declared, freight_fen=freight, multiple=multiple,
            claim_type=claim_type,
        )  # fmt: skip
        rows.append(
            {
                "incident_id": int(rec["id"]), "shipment_id": int(rec["shipment_id"]),
                "order_id": int(rec["order_id"]), "carrier": rec["carrier"], "waybill_no": rec["waybill_no"],
                "claim_type": claim_type, "insured": insured, "declared_value_fen": declared,
                "insured_value_fen": declared if insured else 0, "freight_fen": freight,
                "claim_amount_fen": amount, "basis": basis, "status": "open", "opened_at": now,
                "due_at": due_after_working_days(now, policy.claim_due_working_days), "updated_at": now,
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def auto_resolvable(found: pd.DataFrame) -> pd.Series:
    """Which open incidents the shipment has moved past (``found``: incident_type, status, last_event_at,
    opened_at)."""
    done = found["status"].isin([T.DELIVERED.value, T.RETURNED.value])
    heard_again = pd.to_datetime(found["last_event_at"], utc=True) > pd.to_datetime(
        found["opened_at"], utc=True
    )
    kind = found["incident_type"]
    return (
        ((kind == "delay") & done)
        | ((kind == "problem") & done)
        | ((kind == "stale") & (heard_again | done))
        | ((kind == "unknown_waybill") & found["last_event_at"].notna())
    )


# --- time-based exceptions -------------------------------------------------------------------------------------


def late_working_days(expected: date, today: date) -> int:
    try:
        return working_days_between(expected, today)
    except CalendarOutOfRange:
        return int(sum(1 for d in pd.bdate_range(expected + timedelta(days=1), today)))


def _candidates(frame: pd.DataFrame, incident_type: str, evidence, now: datetime) -> list[dict]:
    return [
        {"shipment_id": int(rec["shipment_id"]), "order_id": int(rec["order_id"]), "incident_type": incident_type,
         "carrier": rec["carrier"], "waybill_no": rec["waybill_no"],
         "evidence": evidence(rec) if callable(evidence) else evidence, "detected_at": now}
        for rec in frame_records(frame)
    ]  # fmt: skip


def time_exceptions(
    active: pd.DataFrame, now: datetime, policy: TrackingPolicy
) -> tuple[pd.DataFrame, list[int]]:
    """Incident candidates from time alone, and the shipments that expire (``active``: the active shipments with
    their last event, last poll, last push, expected date, "no result" since).

    Delay counts working days on the holiday calendar; stale needs a poll or push after the silence (so our own
    outage never blames the carrier); unknown waybill is "no result" long after shipping; expiry is no update
    for the policy's days.
    """
    if active.empty:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS), []
    now_ts = pd.Timestamp(now)
    today = now.astimezone(BUSINESS_TZ).date()
    last_event = pd.to_datetime(active["last_event_at"], utc=True)
    reference = last_event.fillna(pd.to_datetime(active["shipped_at"], utc=True))
    heard = pd.concat(
        [
            pd.to_datetime(active["last_polled_at"], utc=True),
            pd.to_datetime(active["last_push_at"], utc=True),
        ],
        axis=1,
    ).max(axis=1)
    stale_after = pd.Timedelta(hours=policy.stale_after_hours)
    in_motion = ~active["status"].isin([T.RETURNING.value])

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
    silent = reference.notna() & ((now_ts - reference) > stale_after) & (heard > reference + stale_after)
    no_result = pd.to_datetime(active["no_result_since"], utc=True)
    unknown = (
        last_event.isna()
        & no_result.notna()
        & ((now_ts - no_result) >= pd.Timedelta(hours=policy.unknown_waybill_after_hours))
    )
    candidates = (
        _candidates(
            active[late], "delay", lambda r: f"预计送达 {r['expected_delivery_date']} 已过（工作日计）", now
        )
        + _candidates(
            active[silent & in_motion], "stale", f"承运商超过 {policy.stale_after_hours} 小时无更新", now
        )
        + _candidates(active[unknown], "unknown_waybill", "承运商查询无结果（运单未被识别）", now)
    )
    expired = reference.notna() & ((now_ts - reference) > pd.Timedelta(days=policy.expire_after_days))
    expired_ids = active.loc[expired, "shipment_id"].astype(int).tolist()
    return pd.DataFrame(candidates, columns=CANDIDATE_COLUMNS), expired_ids


# --- orders ----------------------------------------------------------------------------------------------------

ORDER_STATES_FOLLOWING_TRACKING = frozenset(
    {OrderState.SHIPPED, OrderState.IN_TRANSIT, OrderState.EXCEPTION, OrderState.DELIVERED}
)
TARGET_REASONS = {
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
