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
                legal = target in LEGAL_TRANSITIONS[source]
                assert (order_id in outcome.moved) == legal, (source, target)
                assert (order_id in outcome.skipped) == (not legal), (source, target)
            events = read_frame(conn, select(order_events.c.order_id).where(order_events.c.order_id.in_(ids)))
            assert sorted(events["order_id"]) == sorted(outcome.moved)


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_single_transition_raises_exactly_when_illegal(shared_sqlite, source, target):
    with shared_sqlite.begin() as conn:
        (order_id,) = make_orders(conn, [source.value])
        if target in LEGAL_TRANSITIONS[source]:
            outcome = transition_orders(conn, [order_id], target, reason="r", actor="tester")
            assert outcome.moved == [order_id]
            state = conn.execute(select(orders.c.state).where(orders.c.id == order_id)).scalar_one()
            assert state == target.value
        else:
            with pytest.raises(IllegalTransition, match=f"order {order_id} is {source.value}"):
                transition_orders(conn, [order_id], target, reason="r", actor="tester")
            assert timeline(conn, order_id).empty
            state = conn.execute(select(orders.c.state).where(orders.c.id == order_id)).scalar_one()
            assert state == source.value


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
