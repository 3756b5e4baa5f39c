"""Issue 16: the Kuaidi100 push receiver holds under load (300 concurrent valid pushes over real loopback HTTP:
300 acknowledged, none reset, all applied after the apply step, on SQLite and PostgreSQL), answers malformed
requests, cuts half-sent ones, and refuses checkpoints dated outside a plausible window."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.callbacks import push_receiver
from connectors.kuaidi100 import PUSH_OK
from connectors.kuaidi100_push import PushReceiver
from demo.standins.kuaidi100_pushes import push_all, signed_push
from demo.tracking import make_shipped_orders
from tasks.tracking.pushes import apply_landed_batch, receive_push, with_busy_retry
from yidi.schema_tracking import tracking_events, tracking_push_receipts
from yidi.settings import get_settings

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=30)
SALT = "load-salt"
N = 300


def policy():
    return get_settings().tracking.model_copy(update={"callback_port": 0})


def receipts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(tracking_push_receipts.c.status, func.count()).group_by(
            tracking_push_receipts.c.status)).all()
    return dict(rows)


def test_300_concurrent_valid_pushes_are_all_acknowledged_landed_and_applied(engine):
    with engine.begin() as conn:
        ships = make_shipped_orders(conn, N, shipped_at=T0, carriers=["yunda"])
    bodies = [signed_push(num, "yunda", T0 + timedelta(hours=2), SALT) for num in ships["waybill_no"]]
    receiver = push_receiver(engine, policy(), SALT, port=0, clock=lambda: NOW, apply_every=3600)
    with receiver:
        sent = push_all(receiver.url, bodies)
        assert [s.error for s in sent if s.error] == []  # no connection reset, none closed without an answer
        assert [s.status for s in sent] == [200] * N
        assert {json.loads(s.body)["returnCode"] for s in sent} == {PUSH_OK["returnCode"]}
        assert receipts(engine) == {"landed": N}  # every acknowledged push is in the store
        assert receiver.apply_pending() == N  # the apply step, in batches
    assert receipts(engine) == {"applied": N}
    with engine.connect() as conn:
        assert conn.execute(select(func.count(func.distinct(tracking_events.c.shipment_id)))).scalar() == N


def test_what_landed_is_applied_when_the_receiver_stops(sqlite_engine):
    with sqlite_engine.begin() as conn:
        ships = make_shipped_orders(conn, 5, shipped_at=T0, carriers=["yunda"])
    bodies = [signed_push(num, "yunda", T0 + timedelta(hours=2), SALT) for num in ships["waybill_no"]]
    with push_receiver(sqlite_engine, policy(), SALT, port=0, clock=lambda: NOW, apply_every=3600) as receiver:
        assert [s.status for s in push_all(receiver.url, bodies)] == [200] * 5
    assert receipts(sqlite_engine) == {"applied": 5}


def test_landing_retries_while_the_database_is_busy_then_answers():
    from sqlalchemy.exc import OperationalError

    calls, pauses = [], []

    def busy_twice():
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return 7

    assert with_busy_retry(busy_twice, pause=pauses.append) == 7
    assert len(calls) == 3 and len(pauses) == 2 and pauses[0] < pauses[1] * 2
    broken = OperationalError("INSERT", {}, Exception("no such table: tracking_push_receipts"))
    with pytest.raises(OperationalError):
        with_busy_retry(lambda: (_ for _ in ()).throw(broken), pause=pauses.append)  # not busy: no retry
    assert len(pauses) == 2


@pytest.fixture
def bare_receiver(sqlite_engine):
    landed = []

    def land(push):
        landed.append(push)
        return "landed"

    with PushReceiver(land, SALT, host="127.0.0.1", port=0, path="/kuaidi100/callback", clock=lambda: NOW,
                      header_timeout=0.3, body_timeout=0.3) as receiver:  # fmt: skip
        yield receiver, landed


def _raw(receiver, data: bytes, wait: float = 5.0) -> bytes:
    host, port = receiver.socket.getsockname()[:2]
    with socket.create_connection((host, port), timeout=wait) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_malformed_content_length_gets_a_400_answer(bare_receiver):
    receiver, landed = bare_receiver
    answer = _raw(receiver, b"POST /kuaidi100/callback HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nparam=1")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert landed == []


def test_a_half_sent_request_is_answered_408_and_closed(bare_receiver):
    receiver, _ = bare_receiver
    started = time.monotonic()
    answer = _raw(receiver, b"POST /kuaidi100/callback HTTP/1.1\r\nHost: x\r\n")  # headers never finish
    assert answer.startswith(b"HTTP/1.1 408 ")
    body_missing = _raw(receiver, b"POST /kuaidi100/callback HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nparam")
    assert b" 408 " in body_missing.split(b"\r\n", 1)[0]
    assert time.monotonic() - started < 4  # cut after the deadlines (0.3 s each here), not held


def test_300_half_sent_requests_do_not_stop_a_valid_push(sqlite_engine, bare_receiver):
    receiver, landed = bare_receiver
    host, port = receiver.socket.getsockname()[:2]
    stuck = [socket.create_connection((host, port)) for _ in range(300)]
    try:
        for conn in stuck:
            conn.sendall(b"POST /kuaidi100/callback HTTP/1.1\r\nHost: x\r\n")
        body = signed_push("YD1", "yunda", T0, SALT)
        [sent] = push_all(receiver.url, [body])
        assert sent.status == 200 and len(landed) == 1
    finally:
        for conn in stuck:
            conn.close()


def test_an_oversized_body_is_refused_413(bare_receiver):
    receiver, landed = bare_receiver
    answer = _raw(receiver, b"POST /kuaidi100/callback HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert landed == []


@pytest.mark.parametrize("when", [datetime(1970, 1, 1, tzinfo=UTC), NOW + timedelta(days=3),
                                  NOW - timedelta(days=800)], ids=["1970", "three-days-ahead", "two-years-old"])
def test_a_checkpoint_outside_the_plausible_window_is_refused_and_not_stored(engine, when):
    with engine.begin() as conn:
        ships = make_shipped_orders(conn, 1, shipped_at=T0, carriers=["yunda"])
    with push_receiver(engine, policy(), SALT, port=0, clock=lambda: NOW, apply_every=3600) as receiver:
        [sent] = push_all(receiver.url, [signed_push(ships["waybill_no"][0], "yunda", when, SALT)])
        assert sent.status == 400 and b"outside the plausible window" in sent.body
        [fine] = push_all(receiver.url, [signed_push(ships["waybill_no"][0], "yunda", NOW - timedelta(days=2),
                                                     SALT)])  # fmt: skip
        assert fine.status == 200
    assert receipts(engine) == {"applied": 1}


def test_receive_push_only_lands_and_a_batch_applies(sqlite_engine):
    """Landing is one short transaction; applying is a separate batch step (so a slow apply never delays an
    answer to Kuaidi100, and a failing one never loses a push)."""
    from connectors.kuaidi100 import verify_push
    from connectors.kuaidi100_push import Push

    with sqlite_engine.begin() as conn:
        ships = make_shipped_orders(conn, 3, shipped_at=T0, carriers=["yunda"])
    from urllib.parse import parse_qs

    for num in ships["waybill_no"]:
        form = parse_qs(signed_push(num, "yunda", T0, SALT).decode())
        push = Push(form["param"][0], verify_push(form["param"][0], form["sign"][0], SALT), NOW)
        assert receive_push(sqlite_engine, policy(), push) == "landed"
        assert receive_push(sqlite_engine, policy(), push) == "duplicate"
    assert receipts(sqlite_engine) == {"landed": 3}
    assert apply_landed_batch(sqlite_engine, policy(), NOW, limit=2) == 2
    assert apply_landed_batch(sqlite_engine, policy(), NOW, limit=2) == 1
    assert apply_landed_batch(sqlite_engine, policy(), NOW, limit=2) == 0
    assert receipts(sqlite_engine) == {"applied": 3}
