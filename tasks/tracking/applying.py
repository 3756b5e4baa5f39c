"""Applying what the carrier said (F6, T1, P3): one batch of poll answers (or one push) in one transaction.

Checkpoints are stored once each by their natural key; the shipment's status is taken from its newest stored
checkpoint (so out-of-order data never moves it backwards); carrier-code changes are applied; new checkpoints go
to the order timeline; incidents open from the checkpoint evidence (with claims and notices); customers hear of
progress; order states follow.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection

from tasks.tracking import store
from tasks.tracking.incidents import auto_resolve, open_incidents
from tasks.tracking.notices import progress_notices
from tasks.tracking.order_states import reconcile_orders
from tasks.tracking.polling import PollOutcome
from tasks.tracking.rules import (
    changes_polling_state,
    event_incidents,
    keywords_of,
    polling_state_row,
    result_digest,
    result_events,
)
from tasks.tracking.status import STATUS_LABELS_ZH, TrackingStatus
from yidi.bulk import frame_records
from yidi.lifecycle import current_actor, record_events
from yidi.tracking_policy import TrackingPolicy


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
        if (
            source == "poll"
            and outcome.outcome != "skipped"
            and changes_polling_state(outcome.outcome, outcome.result, ship)
        ):
            state_rows.append(
                polling_state_row(
                    outcome.shipment_id, outcome.outcome, outcome.result, outcome.error, ship, now
                )
            )
        result = outcome.result
        if result is None:
            continue
        if result.com_new and result.com_new != ship["carrier"]:
            changes.append({"ship": ship, "old": ship["carrier"], "new": result.com_new})
        if ship.get("events_digest") and ship["events_digest"] == result_digest(result):
            continue  # the carrier's history is exactly what we stored: nothing to classify or insert
        event_rows += result_events(result, ship, keywords, source=source, now=now, batch=batch)
    if source == "poll":
        store.mark_polled(
            conn, [o.shipment_id for o in outcomes if o.outcome not in ("failed", "skipped")], now
        )
        store.release_unpolled(conn, frame, [o.shipment_id for o in outcomes if o.outcome in ("failed", "skipped")],
                               now)  # fmt: skip
        if state_rows:
            state = pd.DataFrame(state_rows).astype(
                {"carrier_state": "Int64", "consecutive_failures": "int64"}
            )
            store.upsert_shipment_state(conn, state)
    if changes:
        store.change_carriers(conn, changes, now)
        _carrier_change_timeline(conn, changes, now, actor)
        summary.carrier_changes = len(changes)

    new_events = store.store_events(conn, event_rows, batch)
    summary.new_events = len(new_events)
    touched = sorted(new_events["shipment_id"].unique().tolist()) if not new_events.empty else []
    status_changes = store.refresh_shipments(conn, touched, now)
    if not new_events.empty:
        _timeline(conn, new_events, actor)
    candidates = event_incidents(new_events)
    if not candidates.empty:
        opened = open_incidents(conn, candidates, now, policy, actor=actor)
        summary.incidents = opened["id"].astype(int).tolist()
        summary.incident_types.update(opened["incident_type"].tolist())
        summary.claims = int(opened.attrs.get("claims", 0))
        summary.notices += int(opened.attrs.get("notices", 0))
    auto_resolve(conn, now, shipment_ids=touched, actor=actor)
    summary.notices += progress_notices(conn, status_changes, policy)
    order_ids = sorted({int(ships[s]["order_id"]) for s in touched}) if touched else []
    summary.orders_moved = reconcile_orders(conn, order_ids, policy, actor=actor)
    summary.statuses = store.status_counts(conn, [o.shipment_id for o in outcomes])
    return summary


def _carrier_change_timeline(conn: Connection, changes: list[dict], now: datetime, actor: str) -> None:
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
