"""The order lifecycle: one explicit state machine, and the append-only event log behind it (P3).

Every state change goes through ``transition_orders``, which refuses illegal moves with a clear error, moves a
whole batch with one conditional UPDATE per source state (so a concurrent change is detected, not overwritten),
and appends one event per order with time, actor, reason and details.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import pandas as pd
from sqlalchemy import Connection, select, update

from yidi.bulk import chunked, insert_rows, json_text, utc_now
from yidi.schema import order_events, orders


class OrderState(StrEnum):
    RECEIVED = "received"
    AUTO_REJECTED = "auto_rejected"
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    ALLOCATED = "allocated"
    BACKORDERED = "backordered"
    IN_PRODUCTION = "in_production"
    IN_PROCUREMENT = "in_procurement"
    SHIPPED = "shipped"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    SETTLED = "settled"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    AFTER_SALES = "after_sales"
    RETURNED = "returned"


S = OrderState

LEGAL_TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    S.RECEIVED: frozenset({S.AUTO_REJECTED, S.PENDING_REVIEW, S.CANCELLED}),
    # A corrected or replayed order is reviewed again; a rejected customer may fix the order.
    S.AUTO_REJECTED: frozenset({S.PENDING_REVIEW, S.CLOSED}),
    S.PENDING_REVIEW: frozenset({S.APPROVED, S.REJECTED, S.AUTO_REJECTED, S.CANCELLED}),
    S.REJECTED: frozenset({S.PENDING_REVIEW, S.CLOSED}),
    # An order changed at the source after review goes back to review (I3).
    # A service-only order (installation, repair; S2) has nothing to ship: done when its service jobs are.
    S.APPROVED: frozenset({S.ALLOCATED, S.BACKORDERED, S.PENDING_REVIEW, S.CANCELLED, S.DELIVERED}),
    S.BACKORDERED: frozenset({S.ALLOCATED, S.IN_PRODUCTION, S.IN_PROCUREMENT, S.PENDING_REVIEW, S.CANCELLED}),
    S.IN_PRODUCTION: frozenset({S.ALLOCATED, S.CANCELLED}),
    S.IN_PROCUREMENT: frozenset({S.ALLOCATED, S.CANCELLED}),
    S.ALLOCATED: frozenset({S.SHIPPED, S.BACKORDERED, S.PENDING_REVIEW, S.CANCELLED}),
    S.SHIPPED: frozenset({S.IN_TRANSIT, S.DELIVERED, S.EXCEPTION}),
    S.IN_TRANSIT: frozenset({S.DELIVERED, S.EXCEPTION}),
    S.EXCEPTION: frozenset({S.IN_TRANSIT, S.DELIVERED, S.RETURNED, S.CANCELLED}),
    S.DELIVERED: frozenset({S.SETTLED, S.AFTER_SALES, S.EXCEPTION}),
    S.SETTLED: frozenset({S.CLOSED, S.AFTER_SALES}),
    S.AFTER_SALES: frozenset({S.DELIVERED, S.SETTLED, S.RETURNED, S.CLOSED}),
    S.RETURNED: frozenset({S.SETTLED, S.CLOSED, S.AFTER_SALES}),
    # After-sales (repair, warranty) can open on a closed order.
    S.CLOSED: frozenset({S.AFTER_SALES}),
    S.CANCELLED: frozenset(),
}

TERMINAL_STATES = frozenset(state for state, targets in LEGAL_TRANSITIONS.items() if not targets)


class IllegalTransition(ValueError):
    """A requested state change that the lifecycle does not allow (or an unknown order)."""

    def __init__(self, to_state: str, offenders: Mapping[int, str]):
        self.to_state = to_state
        self.offenders = dict(offenders)
        shown = ", ".join(f"order {oid} is {state}" for oid, state in list(self.offenders.items())[:10])
        more = f" (+{len(self.offenders) - 10} more)" if len(self.offenders) > 10 else ""
        super().__init__(f"cannot move to {to_state}: {shown}{more}")


@dataclass
class TransitionOutcome:
    moved: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)  # order id -> why it did not move


def is_legal(from_state: str, to_state: str) -> bool:
    try:
        return OrderState(to_state) in LEGAL_TRANSITIONS[OrderState(from_state)]
    except ValueError:
        return False


def current_actor() -> str:
    """Who acts: the Prefect flow run when inside one, else the logged-in user."""
    try:
        if "prefect.context" not in sys.modules:  # Prefect not loaded: no flow run (and none imported for nothing)
            raise ImportError
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        if ctx is not None and ctx.flow_run is not None:
            return f"flow-run:{ctx.flow_run.id}:{ctx.flow.name if ctx.flow else ''}"
    except ImportError:  # pragma: no cover - prefect is a dependency
        pass
    try:
        login = getpass.getuser()
    except OSError:
        login = "unknown"
    return f"user:{login}"


def current_states(conn: Connection, order_ids: Sequence[int]) -> dict[int, str]:
    states: dict[int, str] = {}
    for chunk in chunked(list(order_ids)):
        rows = conn.execute(select(orders.c.id, orders.c.state).where(orders.c.id.in_(chunk)))
        states.update({row.id: row.state for row in rows})
    return states


def transition_orders(
    conn: Connection,
    order_ids: Sequence[int],
    to_state: str | OrderState,
    *,
    reason: str,
    actor: str | None = None,
    details: Mapping | Sequence[Mapping | None] | None = None,
    skip_illegal: bool = False,
) -> TransitionOutcome:
    """Move a batch of orders to ``to_state`` and log one 'state' event per moved order.

    Illegal moves raise ``IllegalTransition`` (nothing is changed) unless ``skip_illegal``, in which case they are
    reported in ``outcome.skipped``. ``details`` is one mapping for all orders or a list aligned with
    ``order_ids``.
    """
    to_state = OrderState(to_state)
    order_ids = [int(i) for i in order_ids]
    if isinstance(details, Sequence) and not isinstance(details, str | bytes):
        if len(details) != len(order_ids):
            raise ValueError("details must align with order_ids")
        details_by_id = dict(zip(order_ids, details, strict=True))
    else:
        details_by_id = dict.fromkeys(order_ids, details)
    states = current_states(conn, order_ids)
    outcome = TransitionOutcome()
    offenders = {oid: "unknown (no such order)" for oid in order_ids if oid not in states}
    offenders.update({oid: st for oid, st in states.items() if not is_legal(st, to_state)})
    if offenders and not skip_illegal:
        raise IllegalTransition(to_state, offenders)
    outcome.skipped.update({oid: f"illegal from {st}" for oid, st in offenders.items()})

    by_source: dict[str, list[int]] = {}
    for oid in order_ids:
        if oid not in offenders:
            by_source.setdefault(states[oid], []).append(oid)
    now = utc_now()
    moved_from: dict[int, str] = {}
    for from_state, ids in by_source.items():
        for chunk in chunked(ids):
            # Conditional: only rows still in the state this batch read move, and RETURNING says which did. (Seen
            # with two worker processes, issue 17: re-reading the state afterwards counted an order another worker
            # had just moved to the same state as moved here too, and both logged the move.)
            moved = set(conn.execute(
                update(orders)
                .where(orders.c.id.in_(chunk), orders.c.state == from_state)
                .values(state=to_state.value, updated_at=now, version=orders.c.version + 1)
                .returning(orders.c.id)
            ).scalars())  # fmt: skip
            after = current_states(conn, [oid for oid in chunk if oid not in moved]) if len(moved) < len(chunk) else {}
            for oid in chunk:
                if oid in moved and from_state != to_state:
                    moved_from[oid] = from_state
                else:
                    outcome.skipped[oid] = f"changed concurrently (now {after.get(oid, to_state.value)})"
    if moved_from:
        actor = actor or current_actor()
        events = pd.DataFrame(
            {
                "order_id": list(moved_from),
                "occurred_at": now,
                "actor": actor,
                "kind": "state",
                "from_state": list(moved_from.values()),
                "to_state": to_state.value,
                "reason": reason,
                "details": [json_text(details_by_id.get(oid)) for oid in moved_from],
            }
        )
        insert_rows(conn, order_events, events)
    outcome.moved = list(moved_from)
    return outcome


def record_events(conn: Connection, events: pd.DataFrame, *, actor: str | None = None) -> int:
    """Append non-state events (changes, notes, tracking, payments…) in one batch.

    Columns: ``order_id``, ``kind``, ``reason``, optional ``details`` (mapping or JSON text), ``actor``,
    ``occurred_at``.
    """
    if events.empty:
        return 0
    frame = events.copy()
    if "kind" in frame and (frame["kind"] == "state").any():
        raise ValueError("state changes go through transition_orders")
    if "actor" not in frame:
        frame["actor"] = actor or current_actor()
    if "occurred_at" not in frame:
        frame["occurred_at"] = utc_now()
    if "details" in frame:
        frame["details"] = [json_text(d) for d in frame["details"].tolist()]
    return insert_rows(conn, order_events, frame)


def timeline(conn: Connection, order_id: int) -> pd.DataFrame:
    """An order's full event history, oldest first by when it happened (a carrier checkpoint or a bank line can be
    recorded after later events; the id breaks ties in the order they were recorded)."""
    from yidi.bulk import read_frame

    stmt = (select(order_events).where(order_events.c.order_id == order_id)
            .order_by(order_events.c.occurred_at, order_events.c.id))  # fmt: skip
    return read_frame(conn, stmt)
