"""Issue 16 follow-up (both databases): landed Kuaidi100 pushes are applied with one shipment lookup per batch,
and a push that keeps failing to apply is marked failed after ``APPLY_ATTEMPTS`` tries without blocking the
pushes landed after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from sqlalchemy import event, insert, select

import tasks.tracking.pushes as pushes
from connectors.kuaidi100 import verify_push
from connectors.kuaidi100_push import Push
from demo.standins.kuaidi100_pushes import signed_push
from demo.tracking import make_shipped_orders
from tasks.tracking.pushes import APPLY_ATTEMPTS, apply_landed_batch, receive_push
from yidi.schema_tracking import tracking_push_receipts
from yidi.settings import get_settings

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=30)
SALT = "apply-salt"


def land(engine, waybills) -> None:
    policy = get_settings().tracking
    for num in waybills:
        form = parse_qs(signed_push(num, "yunda", T0 + timedelta(hours=2), SALT).decode())
        assert receive_push(engine, policy, Push(form["param"][0], verify_push(form["param"][0], form["sign"][0],
                                                                              SALT), NOW)) == "landed"


def statements_while(engine, work) -> list[str]:
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        work()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return seen


def receipts(engine) -> list[tuple]:
    t = tracking_push_receipts
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(t.c.waybill_no, t.c.status, t.c.attempts).order_by(t.c.id))]


def test_a_batch_of_200_looks_its_shipments_up_in_one_query(engine):
    with engine.begin() as conn:
        ships = make_shipped_orders(conn, 220, shipped_at=T0, carriers=["yunda"])
    policy = get_settings().tracking
    counts = {}
    for batch in (list(ships["waybill_no"][:20]), list(ships["waybill_no"][20:])):
        land(engine, batch)
        handled = []
        seen = statements_while(engine, lambda handled=handled: handled.append(apply_landed_batch(engine, policy, NOW)))
        assert handled == [len(batch)]
        lookups = [s for s in seen if "FROM shipments" in s and "shipments.waybill_no IN" in s]
        assert len(lookups) == 1, lookups
        counts[len(batch)] = len(seen)
    assert {status for _, status, _ in receipts(engine)} == {"applied"}
    assert counts[20] == counts[200], counts  # the statements of a batch do not grow with its pushes


def poison(engine, content: str) -> None:
    with engine.begin() as conn:
        conn.execute(insert(tracking_push_receipts).values(
            received_at=T0, carrier="yunda", waybill_no="POISON", push_status="polling", content=content,
            content_hash="poison-" + str(len(content)), status="landed"))


def test_an_unreadable_push_does_not_block_the_next_and_is_failed_after_its_attempts(engine):
    poison(engine, '{"status": "no-such-status", "lastResult": {}}')  # the oldest landed push
    with engine.begin() as conn:
        ships = make_shipped_orders(conn, 3, shipped_at=T0, carriers=["yunda"])
    land(engine, ships["waybill_no"])
    policy = get_settings().tracking
    assert apply_landed_batch(engine, policy, NOW) == 3  # the three after it are applied at once
    assert receipts(engine) == [("POISON", "landed", 1)] + [(w, "applied", 0) for w in ships["waybill_no"]]
    for _ in range(APPLY_ATTEMPTS - 1):
        apply_landed_batch(engine, policy, NOW)
    assert receipts(engine)[0] == ("POISON", "failed", APPLY_ATTEMPTS)
    assert apply_landed_batch(engine, policy, NOW) == 0  # no longer tried
    with engine.connect() as conn:
        failed = pushes.store.failed_pushes(conn)
    assert failed["waybill_no"].tolist() == ["POISON"]
    assert failed["error"][0] == "unreadable push: KeyError: 'no-such-status'"


def test_a_push_whose_apply_fails_does_not_block_the_next(engine, monkeypatch):
    with engine.begin() as conn:
        ships = make_shipped_orders(conn, 4, shipped_at=T0, carriers=["yunda"])
    waybills = list(ships["waybill_no"])
    land(engine, waybills)
    real = pushes.apply_outcomes

    def failing(conn, frame, outcomes, *args, **kwargs):
        if waybills[0] in set(frame["waybill_no"]):
            raise RuntimeError("carrier text the store refuses")
        return real(conn, frame, outcomes, *args, **kwargs)

    monkeypatch.setattr(pushes, "apply_outcomes", failing)
    policy = get_settings().tracking
    assert apply_landed_batch(engine, policy, NOW) == 3
    assert receipts(engine) == [(waybills[0], "landed", 1)] + [(w, "applied", 0) for w in waybills[1:]]
    for _ in range(APPLY_ATTEMPTS - 1):
        apply_landed_batch(engine, policy, NOW)
    assert receipts(engine)[0] == (waybills[0], "failed", APPLY_ATTEMPTS)
    with engine.connect() as conn:
        failed = pushes.store.failed_pushes(conn)
    assert failed["error"].tolist() == ["RuntimeError: carrier text the store refuses"]


def test_the_receiver_applies_when_the_burst_quiets_or_a_full_batch_waits():
    """Applying in the background waits for a quiet moment (``apply_every`` s without a landing) or a full batch,
    so it does not compete with landing; a steady trickle is applied after 10 × ``apply_every`` at the latest.
    Times are the receiver's monotonic readings, set here (no clock, no sleep)."""
    from connectors.kuaidi100_push import PushReceiver

    receiver = PushReceiver(lambda push: "landed", SALT, host="127.0.0.1", port=0, path="/p", apply=lambda: 0,
                            apply_every=1.0, apply_batch=500)
    try:
        assert not receiver._time_to_apply(100.0)  # nothing landed
        receiver._first_pending, receiver._last_landed, receiver._landed_since_apply = 100.0, 100.5, 40
        assert not receiver._time_to_apply(101.0)  # pushes still arriving: landing has the database
        assert receiver._time_to_apply(101.5)  # quiet for apply_every
        receiver._landed_since_apply = 500
        assert receiver._time_to_apply(100.6)  # a full batch waits
        receiver._landed_since_apply, receiver._last_landed = 40, 109.9
        assert not receiver._time_to_apply(109.95)
        assert receiver._time_to_apply(110.0)  # never quiet: applied after 10 × apply_every
    finally:
        receiver.socket.close()
