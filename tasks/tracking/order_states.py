"""Orders follow their shipments (F6): in transit once the carrier has the goods, delivered or returned when every
shipment is, exception while an incident of the policy's kinds is open. Moves go through the lifecycle's state
machine; an illegal move is skipped, never forced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import Connection

from tasks.tracking import store
from tasks.tracking.rules import TARGET_REASONS, order_targets
from yidi.lifecycle import OrderState, transition_orders
from yidi.tracking_policy import TrackingPolicy


def reconcile_orders(
    conn: Connection, order_ids: Sequence[int], policy: TrackingPolicy, *, actor: str | None = None
) -> Counter:
    """Move orders to the state their shipments and incidents imply; returns how many moved to each state."""
    moved: Counter = Counter()
    if not order_ids:
        return moved
    states, statuses, open_incident = store.order_tracking_facts(
        conn, order_ids, policy.order_exception_incidents
    )
    by_target: dict[OrderState, list[int]] = {}
    for oid, target in order_targets(states, statuses, open_incident).items():
        by_target.setdefault(target, []).append(oid)
    for target, oids in by_target.items():
        outcome = transition_orders(
            conn, oids, target, reason=TARGET_REASONS[target], actor=actor, skip_illegal=True
        )
        if outcome.moved:
            moved[target.value] += len(outcome.moved)
    return moved
