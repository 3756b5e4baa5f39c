"""Tracking incidents (F6, K3): opened from checkpoint evidence or from time, one per shipment and type, with an
owner and a due date on the working-day calendar, a liability claim for loss, damage and delay, and a customer
notice; closed by the system when the shipment moves on, or by a person (``yidi tracking incident-resolve``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection

from tasks.tracking import store
from tasks.tracking.interception import intercepted_shipments
from tasks.tracking.notices import incident_notices, resolution_notice
from tasks.tracking.order_states import reconcile_orders
from tasks.tracking.rules import (
    AUTO_RESOLVE,
    CLAIM_TYPES,
    INCIDENT_LABELS_ZH,
    auto_resolvable,
    claim_rows,
    due_after_working_days,
    time_exceptions,
)
from tasks.tracking.status import TrackingStatus
from yidi.bulk import ids_for_keys, json_text, utc_now
from yidi.lifecycle import current_actor, record_events
from yidi.schema_tracking import tracking_incidents
from yidi.settings import get_settings
from yidi.tracking_policy import TrackingPolicy
from yidi.workdays import BUSINESS_TZ

OPENED_COLUMNS = ["id", "shipment_id", "order_id", "incident_type", "occurrences"]


def open_incidents(
    conn: Connection,
    candidates: pd.DataFrame,
    now: datetime,
    policy: TrackingPolicy,
    *,
    actor: str | None = None,
) -> pd.DataFrame:
    """Open (or reopen on newer evidence) one incident per shipment and type; returns those opened/reopened,
    with ``attrs`` ``claims`` and ``notices`` (how many of each this opened).

    ``candidates``: shipment_id, order_id, incident_type, carrier, waybill_no, evidence, detected_at.
    """
    if candidates.empty:
        return pd.DataFrame(columns=OPENED_COLUMNS)
    actor = actor or current_actor()
    cand = candidates.drop_duplicates(["shipment_id", "incident_type"]).copy()
    cand["shipment_id"] = cand["shipment_id"].astype(int)
    known = store.known_incidents(conn, cand["shipment_id"].unique().tolist())
    # A refusal is followed by the parcel's return: one incident (the refusal) covers both.
    refused = set(cand.loc[cand["incident_type"] == "refused", "shipment_id"]) | set(
        known.loc[known["incident_type"] == "refused", "shipment_id"]
    )
    # A parcel we asked the carrier to intercept (issue 18) comes back on purpose: its return is no incident.
    refused |= intercepted_shipments(conn, cand.loc[cand["incident_type"] == "returned", "shipment_id"].tolist())
    cand = cand[~((cand["incident_type"] == "returned") & cand["shipment_id"].isin(refused))]
    merged = cand.merge(known, on=["shipment_id", "incident_type"], how="left")
    fresh = merged[merged["id"].isna()]
    detected = pd.to_datetime(merged["detected_at"], utc=True)
    resolved = pd.to_datetime(merged["resolved_at"], utc=True)
    reopen = merged[(merged["status"] == "resolved") & (detected > resolved)]
    still_open = merged[merged["status"] == "open"]

    def due(incident_type: str) -> datetime:
        return due_after_working_days(now, policy.incident_due_working_days.get(incident_type, 1))

    if not still_open.empty:
        store.touch_incidents(conn, still_open["id"].astype(int).tolist(), now)
    if not fresh.empty:
        types = fresh["incident_type"].tolist()
        store.insert_incidents(
            conn,
            pd.DataFrame(
                {
                    "shipment_id": fresh["shipment_id"].astype(int), "order_id": fresh["order_id"].astype(int),
                    "incident_type": types, "carrier": fresh["carrier"], "waybill_no": fresh["waybill_no"],
                    "owner": [policy.incident_owners.get(t, "logistics-desk") for t in types], "status": "open",
                    "opened_at": now, "due_at": [due(t) for t in types], "evidence": fresh["evidence"],
                    "details": [json_text({"detected_at": str(d)}) for d in fresh["detected_at"]],
                    "occurrences": 1, "last_seen_at": now, "updated_at": now,
                }
            ),
        )  # fmt: skip
    if not reopen.empty:
        store.reopen_incidents(
            conn,
            [
                {"iid": int(i), "due": due(t), "ev": e}
                for i, t, e in zip(reopen["id"], reopen["incident_type"], reopen["evidence"], strict=True)
            ],
            now,
        )
    acted = pd.concat([fresh, reopen], ignore_index=True)
    if acted.empty:
        return pd.DataFrame(columns=OPENED_COLUMNS)
    keys = acted[["shipment_id", "incident_type"]].astype({"shipment_id": "int64"})
    details = store.incidents_by_id(
        conn, ids_for_keys(conn, tracking_incidents, keys)["id"].astype(int).tolist()
    )
    claimable = details[details["incident_type"].isin(list(CLAIM_TYPES))]
    claims = (
        0
        if claimable.empty
        else store.insert_claims(conn, claim_rows(store.claim_facts(conn, claimable), now, policy))
    )
    notices = incident_notices(conn, details, policy)
    _incident_timeline(conn, details, actor)
    out = details[OPENED_COLUMNS].copy()
    out.attrs["claims"] = claims
    out.attrs["notices"] = notices
    return out


def _incident_timeline(conn: Connection, incidents: pd.DataFrame, actor: str) -> None:
    reasons = [
        f"incident opened: {INCIDENT_LABELS_ZH.get(t, t)} ({t}); owner {o}; due {d.astimezone(BUSINESS_TZ):%Y-%m-%d %H:%M}"
        for t, o, d in zip(incidents["incident_type"], incidents["owner"], incidents["due_at"], strict=True)
    ]
    details = [
        {"incident_id": int(i), "shipment_id": int(s), "incident_type": t, "evidence": e}
        for i, s, t, e in zip(
            incidents["id"],
            incidents["shipment_id"],
            incidents["incident_type"],
            incidents["evidence"],
            strict=True,
        )
    ]
    record_events(
        conn,
        pd.DataFrame(
            {
                "order_id": incidents["order_id"].astype(int),
                "kind": "tracking",
                "reason": reasons,
                "details": details,
            }
        ),
        actor=actor,
    )


def auto_resolve(
    conn: Connection, now: datetime, *, shipment_ids: Sequence[int] | None = None, actor: str | None = None
) -> list[int]:
    """Close incidents the shipment has moved past (every shipment, or these); returns their ids."""
    if shipment_ids is not None and len(shipment_ids) == 0:
        return []
    found = store.open_auto_resolvable(conn, list(AUTO_RESOLVE), shipment_ids)
    if found.empty:
        return []
    chosen = found[auto_resolvable(found)]
    if chosen.empty:
        return []
    ids = chosen["id"].astype(int).tolist()
    actor = actor or current_actor()
    store.resolve_incidents(
        conn,
        [{"iid": i, "why": AUTO_RESOLVE[t]} for i, t in zip(ids, chosen["incident_type"], strict=True)],
        now,
        actor,
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
    row = store.incident(conn, incident_id)
    if row is None:
        raise IncidentNotFound(f"no incident {incident_id}")
    if row["status"] == "resolved":
        return row
    store.resolve_incidents(conn, [{"iid": incident_id, "why": resolution}], now, actor)
    if claim_status:
        store.set_claim_status(conn, incident_id, claim_status, now, settled_amount_fen)
    record_events(
        conn,
        pd.DataFrame(
            {"order_id": [int(row["order_id"])], "kind": "tracking",
             "reason": [f"incident resolved: {row['incident_type']} — {resolution}"],
             "details": [{"incident_id": int(incident_id), "claim_status": claim_status}]}
        ),
        actor=actor,
    )  # fmt: skip
    resolution_notice(conn, row, resolution, policy)
    reconcile_orders(conn, [int(row["order_id"])], policy, actor=actor)
    return store.incident(conn, incident_id)


def detect_time_exceptions(
    conn: Connection, now: datetime, policy: TrackingPolicy, *, actor: str | None = None
) -> dict:
    """Delay, stale, unknown waybill, expiry over every active shipment; auto-resolution of moved-on incidents."""
    actor = actor or current_actor()
    active = store.active_shipments(conn)
    candidates, expired_ids = time_exceptions(active, now, policy)
    if expired_ids:
        store.set_status(conn, expired_ids, TrackingStatus.EXPIRED.value, now)
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
    opened = open_incidents(conn, candidates, now, policy, actor=actor)
    resolved = auto_resolve(conn, now, actor=actor)
    order_ids = set(opened["order_id"].astype(int).tolist())
    if resolved:
        order_ids |= store.incident_orders(conn, resolved)
    if expired_ids:
        order_ids |= set(active.loc[active["shipment_id"].isin(expired_ids), "order_id"].astype(int).tolist())
    moved = reconcile_orders(conn, sorted(order_ids), policy, actor=actor)
    return {
        "incidents_opened": dict(Counter(opened["incident_type"].tolist())),
        "incident_ids": opened["id"].astype(int).tolist(),
        "claims": int(opened.attrs.get("claims", 0)),
        "notices": int(opened.attrs.get("notices", 0)),
        "auto_resolved": len(resolved),
        "expired": len(expired_ids),
        "orders_moved": dict(moved),
    }
