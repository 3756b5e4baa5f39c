"""A reviewer's decision on a pending order (V6), from the Prefect UI form or the CLI: one function for both.

Approve or reject (a rejection needs a reason and a proposed solution, both told to the customer). The first
reviewer wins: a decision row is unique per order version, and the state change only applies to an order still
pending; a decision that loses (or meets an order changed since it was shown) is reported, not applied. The
decision, the state change, the event and the customer notices are one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine

from tasks.review.rules import (
    InvalidDecision,
    already_decided,
    customer_contacts,
    order_context,
    validate_decision,
)
from tasks.review.store import latest_decision, order_by_ref
from yidi.bulk import insert_rows, utc_now
from yidi.lifecycle import OrderState, record_events, transition_orders
from yidi.outbox import enqueue
from yidi.schema_review import review_decisions
from yidi.settings import Settings, get_settings
from yidi.staff import Actor, NotPermitted, act_as, check_separation, keyed_by


@dataclass
class DecisionResult:
    order_no: str
    applied: bool
    state: str
    message: str


def apply_decision(engine: Engine, ref: str | int, decision: str, reviewer: str, *, reason: str | None = None,
                   proposed_solution: str | None = None, source: str = "cli", seen_version: int | None = None,
                   flow_run_id: str | None = None, settings: Settings | None = None) -> DecisionResult:
    """Approve or reject a pending order. Raises ``InvalidDecision`` for bad input; a decision that loses to
    another reviewer (or meets a changed order) comes back with ``applied=False`` and a clear message."""
    settings = settings or get_settings()
    validate_decision(decision, reviewer, reason, proposed_solution)
    try:  # a listed person with the reviewer role (issue 20); the log records that person, never the typed text
        actor = act_as(settings.staff, "review", reviewer)
    except NotPermitted as exc:
        raise InvalidDecision(str(exc)) from None
    try:
        return _apply_decision(engine, ref, decision, actor, reason, proposed_solution, source, seen_version,
                               flow_run_id, settings)  # fmt: skip
    except _LostRace as lost:
        # Another writer moved the order between our read and our update: report what happened to it.
        with engine.connect() as conn:
            current = order_by_ref(conn, lost.order_id)
            return DecisionResult(current["order_no"], False, current["state"],
                                  already_decided(current, latest_decision(conn, lost.order_id)))


class _LostRace(Exception):
    def __init__(self, order_id: int):
        super().__init__(order_id)
        self.order_id = order_id


def _apply_decision(engine, ref, decision, actor: Actor, reason, proposed_solution, source, seen_version, flow_run_id,
                    settings) -> DecisionResult:
    with engine.begin() as conn:
        order = order_by_ref(conn, ref)
        if order is None:
            raise InvalidDecision(f"no order {ref!r}")
        reviewer = actor.name
        try:
            if decision == "approve":
                check_separation(settings.staff, "key_and_approve", actor, keyed_by(conn, order["id"]),
                                 f"keyed in order {order['order_no']} and may not approve it")
        except NotPermitted as exc:
            raise InvalidDecision(str(exc)) from None
        if order["state"] != OrderState.PENDING_REVIEW.value:
            return DecisionResult(order["order_no"], False, order["state"],
                                  already_decided(order, latest_decision(conn, order["id"])))
        if seen_version is not None and int(seen_version) != int(order["version"]):
            return DecisionResult(order["order_no"], False, order["state"],
                                  f"order {order['order_no']} changed since it was shown to you (version "
                                  f"{seen_version} → {order['version']}); look at it again")  # fmt: skip
        now = utc_now()
        inserted = insert_rows(conn, review_decisions, pd.DataFrame([{
            "order_id": order["id"], "order_version": int(order["version"]), "decision": decision,
            "reviewer": reviewer[:100], "reason": (reason or "").strip() or None,
            "proposed_solution": (proposed_solution or "").strip() or None, "source": source,
            "flow_run_id": flow_run_id, "decided_at": now,
        }]), on_conflict=["order_id", "order_version"])  # fmt: skip
        if not inserted:
            winner = latest_decision(conn, order["id"])
            return DecisionResult(order["order_no"], False, order["state"], already_decided(order, winner))
        target = OrderState.APPROVED if decision == "approve" else OrderState.REJECTED
        moved = transition_orders(
            conn, [order["id"]], target, actor=actor.text, skip_illegal=True,
            reason=("人工审核通过 / approved by reviewer" if decision == "approve"
                    else f"人工审核驳回 / rejected by reviewer: {reason.strip()}"),
            details={"reviewer": reviewer, **actor.details(), "source": source, "reason": reason, "proposed_solution": proposed_solution,
                     "order_version": int(order["version"]), "flow_run_id": flow_run_id},
        ).moved  # fmt: skip
        if not moved:
            raise _LostRace(order["id"])  # rolls the decision row back with the transaction
        contacts = customer_contacts(pd.DataFrame([dict(order)]), settings)
        template = "order_review_rejected" if decision == "reject" else "order_approved"
        if decision == "reject" or settings.notifications.notify_on_approval:
            context = {**order_context(order), "reason": (reason or "").strip(),
                       "proposed_solution": (proposed_solution or "").strip()}  # fmt: skip
            enqueue(conn, pd.DataFrame([{
                "order_id": int(order["id"]), "medium": c.medium, "recipient": c.recipient, "template": template,
                "context": context, "dedupe_key": f"review:{decision}:{order['id']}:{order['version']}:{c.medium}",
            } for c in contacts.itertuples(index=False)], columns=["order_id", "medium", "recipient", "template",
                                                                   "context", "dedupe_key"]))  # fmt: skip
        if decision == "reject" and contacts.empty:
            record_events(conn, pd.DataFrame({"order_id": [int(order["id"])], "kind": ["notification"],
                                              "reason": ["客户无可用联系方式，请人工告知驳回原因和解决方案"]}))  # fmt: skip
    verb = "approved" if decision == "approve" else "rejected"
    return DecisionResult(order["order_no"], True, target.value, f"order {order['order_no']} {verb} by {reviewer}")
