"""The order state machine: every legal and illegal transition, and the event log behind it."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.exc import DatabaseError

from yidi.bulk import insert_rows, read_frame
from yidi.db import init_db, make_engine
from yidi.lifecycle import (
    LEGAL_TRANSITIONS,
    IllegalTransition,
    OrderState,
    record_events,
    timeline,
    transition_orders,
)
from yidi.schema import order_events, orders

ALL_PAIRS = [(a, b) for a in OrderState for b in OrderState]

# The order's life as the measures describe it (REQUIREMENTS.md), written as journeys and independently of
# LEGAL_TRANSITIONS: every move in a journey must be legal and every legal move must appear in some journey, so a
# wrong or missing entry in the table fails a test here instead of being copied into the expectation.
EXPECTED_JOURNEYS: dict[str, list[str]] = {
    # V5, V6, F3, F5, F6, A1: reviewed, approved, shipped from stock, tracked, delivered, paid, closed.
    "in-stock order end to end": [
        "received", "pending_review", "approved", "allocated", "shipped", "in_transit", "delivered",
        "settled", "closed",
    ],
    # V5: an obvious error is rejected automatically; the customer fixes it and it is reviewed again (I4 replay).
    "automatic rejection fixed by the customer": ["received", "auto_rejected", "pending_review", "approved"],
    "automatic rejection never fixed": ["received", "auto_rejected", "closed"],
    # A changed order re-checked while pending review fails the automated rules this time.
    "pending order fails the re-run automated review": ["received", "pending_review", "auto_rejected"],
    # V6: rejected with a reason and a proposed solution; the customer may take it or not.
    "manual rejection, customer accepts the proposal": ["pending_review", "rejected", "pending_review"],
    "manual rejection, customer walks away": ["pending_review", "rejected", "closed"],
    # F3, F1, F2: short stock is backordered, then produced or bought, then allocated.
    "backordered then restocked": ["approved", "backordered", "allocated"],
    "produced to order": ["approved", "backordered", "in_production", "allocated"],
    "bought from a supplier": ["approved", "backordered", "in_procurement", "allocated"],
    # F3: a stocktake finds the allocated goods missing.
    "allocation lost to a stocktake correction": ["allocated", "backordered"],
    # I3: a source order changed after review goes back to review, at any point before shipment.
    "changed after approval": ["approved", "pending_review"],
    "changed while backordered": ["backordered", "pending_review"],
    "changed after allocation": ["allocated", "pending_review"],
    # Cancelled by the customer or the source at any point before the goods leave.
    "cancelled on arrival": ["received", "cancelled"],
    "cancelled in review": ["pending_review", "cancelled"],
    "cancelled after approval": ["approved", "cancelled"],
    "cancelled while backordered": ["backordered", "cancelled"],
    "cancelled in production": ["in_production", "cancelled"],
    "cancelled in procurement": ["in_procurement", "cancelled"],
    "cancelled after allocation": ["allocated", "cancelled"],
    # F6: a carrier that reports delivery without a transit scan; exceptions and how they end.
    "delivered without a transit scan": ["shipped", "delivered"],
    "exception at the first scan": ["shipped", "exception"],
    "delay resolved in transit": ["in_transit", "exception", "in_transit"],
    "exception resolved by delivery": ["exception", "delivered"],
    "refused and returned": ["exception", "returned"],
    "lost and cancelled": ["exception", "cancelled"],
    "damage found at delivery": ["delivered", "exception"],
    # S2: a service-only order (installation, repair) is done when the technician reports its jobs done.
    "service-only order done on site": ["approved", "delivered"],
    # A3: after-sales from delivery, after payment, and after closing (warranty repair).
    "repaired before payment": ["delivered", "after_sales", "delivered"],
    "after-sales then paid": ["after_sales", "settled"],
    "returned through after-sales and refunded": ["settled", "after_sales", "returned", "settled"],
    "after-sales closed": ["after_sales", "closed"],
    "returned goods closed": ["returned", "closed"],
    "returned goods with a follow-up claim": ["returned", "after_sales"],
    "warranty repair on a closed order": ["closed", "after_sales"],
}

# Moves the measures forbid outright, checked by name so that a journey edited by mistake is caught too.
FORBIDDEN_MOVES = [
    ("received", "approved"),  # V5/V6: nothing is approved without the automated first pass
    ("received", "shipped"),
    ("pending_review", "allocated"),  # V6: only approved orders go to processing
    ("approved", "shipped"),  # F3: goods are allocated before they ship
    ("shipped", "cancelled"),  # once the goods left, the order ends through an exception or after-sales
    ("delivered", "received"),
    ("settled", "pending_review"),
]


def expected_legal_moves() -> set[tuple[OrderState, OrderState]]:
    return {
        (OrderState(a), OrderState(b))
        for path in EXPECTED_JOURNEYS.values()
        for a, b in itertools.pairwise(path)
    }


def table_disagreements(table) -> list[str]:
    """Every pair on which the table and the journeys disagree, in words."""
    expected = expected_legal_moves()
    wrong = []
    for source, target in ALL_PAIRS:
        in_table = target in table[source]
        if in_table != ((source, target) in expected):
            wrong.append(f"{source}->{target}: table says {'legal' if in_table else 'illegal'}")
    return wrong


def test_journeys_never_use_a_forbidden_move():
    used = {(a.value, b.value) for a, b in expected_legal_moves()}
    assert [move for move in FORBIDDEN_MOVES if move in used] == []


def test_transition_table_is_exactly_the_journeys():
    assert table_disagreements(LEGAL_TRANSITIONS) == []


def test_a_wrong_table_entry_is_caught():
    """The check above can fail: one extra and one missing entry are both reported."""
    broken = dict(LEGAL_TRANSITIONS)
    broken[OrderState.RECEIVED] = broken[OrderState.RECEIVED] | {OrderState.SHIPPED}
    broken[OrderState.SHIPPED] = broken[OrderState.SHIPPED] - {OrderState.IN_TRANSIT}
    assert table_disagreements(broken) == [
        "received->shipped: table says legal",
        "shipped->in_transit: table says illegal",
    ]
_serial = itertools.count()


@pytest.fixture(scope="module")
def shared_sqlite(tmp_path_factory):
    """One store for the many small transition cases (each case makes its own orders)."""
    eng = make_engine(f"sqlite:///{tmp_path_factory.mktemp('lifecycle') / 'yidi.db'}")
    init_db(eng)
    yield eng
    eng.dispose()


def make_orders(conn, states: list[str]) -> list[int]:
    serials = [next(_serial) for _ in states]
    frame = pd.DataFrame(
        {
            "order_no": [f"YD-T-{i:06d}" for i in serials],
            "channel": "test",
            "channel_order_id": [f"T{i}" for i in serials],
            "state": states,
            "order_time": datetime(2026, 11, 2, 8, 0, tzinfo=UTC),
            "order_total_fen": 12_345,
        }
    )
    insert_rows(conn, orders, frame)
    ids = read_frame(
        conn, select(orders.c.id, orders.c.order_no).where(orders.c.order_no.in_(frame["order_no"]))
    )
    return ids.set_index("order_no").loc[frame["order_no"], "id"].tolist()


def test_every_pair_is_legal_or_refused_in_one_batch(shared_sqlite):
    """Per target, one batch from every state: legal ones move and log, illegal ones are reported."""
    with shared_sqlite.begin() as conn:
        for target in OrderState:
            sources = list(OrderState)
            ids = make_orders(conn, [s.value for s in sources])
            outcome = transition_orders(conn, ids, target, reason="matrix", actor="test", skip_illegal=True)
            for order_id, source in zip(ids, sources, strict=True):
                legal = (source, target) in expected_legal_moves()
                assert (order_id in outcome.moved) == legal, (source, target)
                assert (order_id in outcome.skipped) == (not legal), (source, target)
            events = read_frame(conn, select(order_events.c.order_id).where(order_events.c.order_id.in_(ids)))
            assert sorted(events["order_id"]) == sorted(outcome.moved)


def enforcement_disagreements(engine, pairs) -> list[str]:
    """Each (source, target) moved alone through ``transition_orders``; every pair that moves (or not), changes the
    state or logs events other than the journeys say, in words."""
    expected = expected_legal_moves()
    wrong = []
    for source, target in pairs:
        with engine.begin() as conn:
            (order_id,) = make_orders(conn, [source.value])
            try:
                outcome = transition_orders(conn, [order_id], target, reason="r", actor="tester")
                moved = outcome.moved == [order_id]
            except IllegalTransition as exc:
                moved = False
                if f"order {order_id} is {source.value}" not in str(exc):
                    wrong.append(f"{source}->{target}: refusal does not name the order: {exc}")
            state = conn.execute(select(orders.c.state).where(orders.c.id == order_id)).scalar_one()
            events = len(timeline(conn, order_id))
        should_move = (source, target) in expected
        if moved != should_move or state != (target if should_move else source).value:
            wrong.append(f"{source}->{target}: moved={moved}, state={state}")
        if events != (1 if should_move else 0):
            wrong.append(f"{source}->{target}: {events} events")
    return wrong


def test_single_transitions_raise_exactly_when_the_journeys_forbid(shared_sqlite):
    """All 324 pairs, one order each, moved alone; every pair that behaves wrongly is reported at once."""
    assert enforcement_disagreements(shared_sqlite, ALL_PAIRS) == []


def test_a_wrong_table_entry_makes_the_enforcement_check_fail(shared_sqlite, monkeypatch):
    """The enforcement check above can fail: with one wrong entry in the table the code enforces (received may
    ship; shipped may no longer go in transit), ``transition_orders`` obeys it and the journeys catch both pairs."""
    from yidi import lifecycle

    monkeypatch.setitem(lifecycle.LEGAL_TRANSITIONS, OrderState.RECEIVED,
                        lifecycle.LEGAL_TRANSITIONS[OrderState.RECEIVED] | {OrderState.SHIPPED})  # fmt: skip
    monkeypatch.setitem(lifecycle.LEGAL_TRANSITIONS, OrderState.SHIPPED,
                        lifecycle.LEGAL_TRANSITIONS[OrderState.SHIPPED] - {OrderState.IN_TRANSIT})  # fmt: skip
    pairs = [(OrderState.RECEIVED, OrderState.SHIPPED), (OrderState.SHIPPED, OrderState.IN_TRANSIT),
             (OrderState.RECEIVED, OrderState.PENDING_REVIEW)]  # fmt: skip
    assert enforcement_disagreements(shared_sqlite, pairs) == [
        "received->shipped: moved=True, state=shipped",
        "received->shipped: 1 events",
        "shipped->in_transit: moved=False, state=shipped",
        "shipped->in_transit: 0 events",
    ]
    assert table_disagreements(lifecycle.LEGAL_TRANSITIONS) == [
        "received->shipped: table says legal",
        "shipped->in_transit: table says illegal",
    ]


def test_terminal_and_reachable_states():
    assert LEGAL_TRANSITIONS[OrderState.CANCELLED] == frozenset()
    reachable = {OrderState.RECEIVED}
    frontier = [OrderState.RECEIVED]
    while frontier:
        for nxt in LEGAL_TRANSITIONS[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(OrderState), "every state is reachable from received"


def test_events_record_who_when_what_why_and_are_append_only(engine):
    with engine.begin() as conn:
        ids = make_orders(conn, ["received", "received"])
        transition_orders(
            conn,
            ids,
            OrderState.PENDING_REVIEW,
            reason="automated review passed",
            actor="flow-run:abc:auto_review",
            details=[{"findings": ["PHONE_LANDLINE"]}, None],
        )
        transition_orders(conn, ids[:1], OrderState.APPROVED, reason="looks fine", actor="user:li")
        record_events(
            conn,
            pd.DataFrame(
                {"order_id": [ids[0]], "kind": ["change"], "reason": ["address"], "details": [{"a": 1}]}
            ),
            actor="system",
        )
    with engine.connect() as conn:
        history = timeline(conn, ids[0])
    assert history["kind"].tolist() == ["state", "state", "change"]
    assert history["from_state"].tolist()[:2] == ["received", "pending_review"]
    assert history["to_state"].tolist()[:2] == ["pending_review", "approved"]
    assert history["actor"].tolist() == ["flow-run:abc:auto_review", "user:li", "system"]
    assert json.loads(history["details"].iloc[0]) == {"findings": ["PHONE_LANDLINE"]}
    assert all(t.tzinfo is not None for t in history["occurred_at"])
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(order_events.update().values(reason="rewritten"))
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(order_events.delete())


def test_unknown_order_is_an_illegal_transition(sqlite_engine):
    with sqlite_engine.begin() as conn, pytest.raises(IllegalTransition, match="no such order"):
        transition_orders(conn, [987654], OrderState.APPROVED, reason="r", actor="t")


def test_a_concurrent_change_is_not_overwritten(engine):
    """Two writers move the same order: the second sees it already moved and skips it (no double event)."""
    with engine.begin() as conn:
        (order_id,) = make_orders(conn, ["pending_review"])
    with engine.begin() as conn:
        first = transition_orders(conn, [order_id], OrderState.APPROVED, reason="a", actor="user:a")
    with engine.begin() as conn:
        second = transition_orders(
            conn, [order_id], OrderState.APPROVED, reason="b", actor="user:b", skip_illegal=True
        )
    assert first.moved == [order_id]
    assert second.moved == [] and "illegal from approved" in second.skipped[order_id]
    with engine.connect() as conn:
        assert len(timeline(conn, order_id)) == 1


def test_record_events_refuses_state_kind(sqlite_engine):
    with sqlite_engine.begin() as conn, pytest.raises(ValueError, match="transition_orders"):
        record_events(conn, pd.DataFrame({"order_id": [1], "kind": ["state"], "reason": ["x"]}))
