"""Kuaidi100 connector against the stand-in over loopback: signing, parsing, errors, retries, pushes."""

import hashlib
import json
import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests

from connectors.kuaidi100 import (
    Credentials,
    ErrorKind,
    Kuaidi100Client,
    Kuaidi100Error,
    PushRejected,
    RetryPolicy,
    parse_result,
    push_sign,
    query_sign,
    verify_push,
)
from connectors.pacing import RatePacer
from demo.standins.kuaidi100 import start
from demo.standins.parcel_routes import SimClock

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
CREDS = Credentials("standin-customer", "standin-key", "salty")
FAST = RetryPolicy(max_attempts=4, backoff_seconds=0.01, rate_limited_backoff_seconds=0.01)


@pytest.fixture
def carrier():
    clock = SimClock(T0)
    with start(clock=clock) as server:
        server.register("yuantong", "YT1", shipped_at=T0, city="成都市", district="武侯区")
        server.register("shunfeng", "SF1", shipped_at=T0, phone="13812348000")
        clock.advance(days=5)
        yield server


def client_for(carrier, credentials=CREDS, retry=FAST, **kw) -> Kuaidi100Client:
    return Kuaidi100Client(credentials, query_url=carrier.query_url, subscribe_url=carrier.subscribe_url,
                           retry=retry, **kw)  # fmt: skip


def test_sign_is_upper_md5_of_param_key_customer():
    param = '{"com":"yuantong","num":"YT1"}'
    expected = hashlib.md5((param + "k" + "c").encode()).hexdigest().upper()
    assert query_sign(param, "k", "c") == expected
    assert push_sign(param, "s") == hashlib.md5((param + "s").encode()).hexdigest().upper()


def test_query_parses_state_checkpoints_and_times(carrier):
    with client_for(carrier) as client:
        result = client.query("yuantong", "YT1")
    assert result.num == "YT1" and result.com == "yuantong"
    assert result.state == 3 and result.ischeck
    times = [c.time for c in result.checkpoints]
    assert all(t.tzinfo is not None for t in times)
    assert min(times) >= T0  # carrier's Beijing time converted to UTC, not taken as UTC
    assert result.newest().context.startswith("快件已签收")
    # every checkpoint's statusCode as the stand-in published it, newest first: signed (301) back to collected (103)
    assert [c.status_code for c in result.checkpoints] == ["301", "5", "1001", "1003", "1002", "1002", "1002", "103"]


def test_wrong_key_is_an_auth_error_and_not_retried(carrier):
    with client_for(carrier, Credentials("standin-customer", "wrong-key")) as client:
        with pytest.raises(Kuaidi100Error) as err:
            client.query("yuantong", "YT1")
    assert err.value.kind is ErrorKind.AUTH and err.value.return_code == "503"
    assert carrier.stats()["requests"] == 1


def test_unknown_waybill_answers_no_result_without_retries(carrier):
    with client_for(carrier) as client:
        with pytest.raises(Kuaidi100Error) as err:
            client.query("yuantong", "NOPE123")
    assert err.value.kind is ErrorKind.NO_RESULT and err.value.return_code == "500"
    assert carrier.stats()["requests"] == 1


def test_phone_required_for_shunfeng(carrier):
    with client_for(carrier) as client:
        with pytest.raises(Kuaidi100Error) as err:
            client.query("shunfeng", "SF1")
        assert err.value.kind is ErrorKind.REJECTED
        assert carrier.stats()["requests"] == 0  # refused locally, nothing sent
        with pytest.raises(Kuaidi100Error) as err:
            client.query("shunfeng", "SF1", "13900000000")
        assert err.value.return_code == "408"
        carrier.clock.advance(minutes=31)
        assert client.query("shunfeng", "SF1", "13812348000").state == 3


def test_per_waybill_minimum_interval_is_enforced(carrier):
    with client_for(carrier) as client:
        client.query("yuantong", "YT1")
        with pytest.raises(Kuaidi100Error) as err:
            client.query("yuantong", "YT1")
        assert err.value.kind is ErrorKind.TOO_FREQUENT
        carrier.clock.advance(minutes=29)
        with pytest.raises(Kuaidi100Error):
            client.query("yuantong", "YT1")
        carrier.clock.advance(minutes=2)
        assert client.query("yuantong", "YT1").num == "YT1"


@pytest.mark.parametrize("mode", ["http500", "http503", "http429", "busy", "rate_limited", "reset"])
def test_transient_errors_are_retried(carrier, mode):
    carrier.fail_next(2, mode)
    with client_for(carrier) as client:
        assert client.query("yuantong", "YT1").state == 3
    assert carrier.stats()["requests"] == 3


def test_retries_stop_after_max_attempts(carrier):
    carrier.fail_next(10, "http503")
    with client_for(carrier, retry=RetryPolicy(max_attempts=3, backoff_seconds=0.01)) as client:
        with pytest.raises(Kuaidi100Error) as err:
            client.query("yuantong", "YT1")
    assert err.value.kind is ErrorKind.UNAVAILABLE
    assert carrier.stats()["requests"] == 3


def test_garbage_answer_is_malformed_not_retried(carrier):
    carrier.fail_next(1, "garbage")
    with client_for(carrier) as client:
        with pytest.raises(Kuaidi100Error) as err:
            client.query("yuantong", "YT1")
    assert err.value.kind is ErrorKind.MALFORMED


def test_carrier_code_change_answers_with_com_old_and_new(carrier):
    carrier.change_carrier("YT1", "zhongtong")
    carrier.state.waybills["YT1"].phone = None
    with client_for(carrier) as client:
        result = client.query("yuantong", "YT1")
    assert (result.com, result.com_old, result.com_new) == ("zhongtong", "yuantong", "zhongtong")
    assert result.carrier_changed


class SimMonotonic:
    """A stand-in for time.monotonic shared by the pacer and the carrier's token bucket: sleeping moves it, nothing
    else does, so pacing and refills happen in simulated seconds and the counts are exact on any machine."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_stand_in_enforces_global_rate_and_pacer_keeps_under_it():
    clock, seconds = SimClock(T0), SimMonotonic()
    with start(clock=clock, rate_per_second=50, burst=5, monotonic=seconds) as carrier:
        for i in range(120):
            carrier.register("yuantong", f"R{i}", shipped_at=T0)
        clock.advance(days=1)
        # Unpaced, in no time at all: the bucket's 5 go through, the other 25 get the throttling answer.
        client = client_for(carrier, retry=RetryPolicy(max_attempts=1))
        kinds = []
        for i in range(30):
            try:
                client.query("yuantong", f"R{i}")
                kinds.append("ok")
            except Kuaidi100Error as exc:
                kinds.append(exc.kind)
        assert kinds == ["ok"] * 5 + [ErrorKind.RATE_LIMITED] * 25
        carrier.reset_stats()  # and a full bucket: the paced part starts from rest
        # Paced at the same rate: never refused, at most 95% of 50 (47) in any second, and no slower than that pace.
        pacer = RatePacer(50, clock=seconds, sleep=seconds.sleep)
        paced = client_for(carrier, retry=RetryPolicy(max_attempts=1), before_request=pacer)
        started = seconds.now
        for n in range(30, 120):
            paced.query("yuantong", f"R{n}")
        stats = carrier.stats()
        assert (stats["requests"], stats["rate_limited"], stats["max_requests_in_any_second"]) == (90, 0, 47)
        # 47 sends 1/47.5 s apart fill the first second; the 48th waits until the first leaves the trailing second
        # (1.0 s), and the other 42 follow at the pace.
        assert seconds.now - started == pytest.approx(1.0 + 42 / 47.5)


def test_the_pacer_gives_threads_slots_that_never_crowd_a_second():
    """Six threads drawing 90 slots from one pacer get 90 distinct slots, 1/47.5 s apart, at most 47 in any second."""
    slots, lock = [], threading.Lock()

    def record(wait: float) -> None:  # the clock stays at 0: each thread's wait is its slot
        with lock:
            slots.append(wait)

    pacer = RatePacer(50, clock=lambda: 0.0, sleep=record)
    threads = [threading.Thread(target=lambda: [pacer.acquire() for _ in range(15)]) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    slots = sorted([0.0] * (90 - len(slots)) + slots)  # the very first slot is now: no wait, nothing recorded
    assert len(slots) == 90 and pacer.sent == 90
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert min(gaps) == pytest.approx(1 / 47.5)
    assert max(sum(1 for t in slots if s <= t < s + 1.0) for s in slots) == 47


def test_subscription_and_signed_push(carrier):
    received = []

    class Catch(__import__("http.server").server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            received.append(__import__("urllib.parse").parse.parse_qs(body))
            data = b'{"result":true,"returnCode":"200","message":"ok"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = __import__("http.server").server.HTTPServer(("127.0.0.1", 0), Catch)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cb"
        with client_for(carrier) as client:
            assert client.subscribe("yuantong", "YT1", url).accepted
            again = client.subscribe("yuantong", "YT1", url)
            assert again.accepted and again.return_code == "501"  # already subscribed
            bad = Kuaidi100Client(Credentials("c", "bad"), subscribe_url=carrier.subscribe_url, retry=FAST)
            with pytest.raises(Kuaidi100Error) as err:
                bad.subscribe("yuantong", "YT1", url)
            assert err.value.kind is ErrorKind.AUTH
        pushed = carrier.push_updates()
        assert [p["accepted"] for p in pushed] == [True]
        assert carrier.push_updates() == []  # nothing new since
        form = received[0]
        notice = verify_push(form["param"][0], form["sign"][0], "salty")
        assert notice.status == "shutdown" and notice.num == "YT1" and notice.result.state == 3
    finally:
        server.shutdown()
        server.server_close()


def test_push_verification_rejects_bad_input():
    param = json.dumps(
        {"status": "polling", "lastResult": {"nu": "A1", "com": "yunda", "state": "0", "data": []}}
    )
    good = push_sign(param, "salt")
    assert verify_push(param, good, "salt").num == "A1"
    assert verify_push(param, good.lower(), "salt").num == "A1"
    for bad_param, bad_sign, why in [
        (param, None, "unsigned"),
        (param, "0" * 32, "signature"),
        (None, good, "missing param"),
        ("{not json", push_sign("{not json", "salt"), "not JSON"),
        (json.dumps({"status": "weird", "lastResult": {}}), None, "unsigned"),
    ]:
        with pytest.raises(PushRejected, match=why):
            verify_push(bad_param, bad_sign, "salt")
    weird = json.dumps({"status": "weird", "lastResult": {"nu": "A1", "data": []}})
    with pytest.raises(PushRejected, match="unknown push status"):
        verify_push(weird, push_sign(weird, "salt"), "salt")
    no_result = json.dumps({"status": "polling"})
    with pytest.raises(PushRejected, match="lastResult missing"):
        verify_push(no_result, push_sign(no_result, "salt"), "salt")
    with pytest.raises(PushRejected, match="no salt"):
        verify_push(param, good, "")


def test_error_shapes_and_string_numbers():
    with pytest.raises(Kuaidi100Error) as err:
        parse_result({"result": False, "returnCode": "601", "message": "POLL:KEY已过期"})
    assert err.value.kind is ErrorKind.AUTH
    result = parse_result({"nu": "X", "com": "ems", "state": "5", "ischeck": "0",
                           "data": [{"time": "2026-03-02 10:00:00", "context": "派件中"}]})  # fmt: skip
    assert result.state == 5 and not result.ischeck
    assert result.checkpoints[0].time == datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    with pytest.raises(Kuaidi100Error) as err:
        parse_result({"nu": "X", "data": [{"time": "yesterday", "context": "?"}]})
    assert err.value.kind is ErrorKind.MALFORMED


def test_secrets_never_in_repr_or_logs(carrier, caplog):
    secret = Credentials("cust-SECRET", "key-SECRET", "salt-SECRET")
    assert "SECRET" not in repr(secret)
    caplog.set_level(logging.DEBUG)
    carrier.fail_next(1, "http500")
    with client_for(carrier, secret) as client:
        with pytest.raises(Kuaidi100Error) as err:
            client.query("yuantong", "YT1")
    assert "SECRET" not in str(err.value)
    assert "SECRET" not in caplog.text


def test_standin_down_for_a_simulated_hour(carrier):
    carrier.down(timedelta(hours=1))
    with client_for(carrier, retry=RetryPolicy(max_attempts=2, backoff_seconds=0.01)) as client:
        with pytest.raises(Kuaidi100Error):
            client.query("yuantong", "YT1")
        carrier.clock.advance(minutes=59)
        with pytest.raises(Kuaidi100Error):
            client.query("yuantong", "YT1")
        carrier.clock.advance(minutes=2)
        assert client.query("yuantong", "YT1").state == 3
    assert requests.get(f"{carrier.url}/_standin/stats", timeout=5).json()["outcomes"]["ok"] == 1


def test_clock_can_follow_real_time_at_a_speed_up():
    real = [100.0]  # a stand-in for time.monotonic that the test moves by hand
    clock = SimClock(T0, speed=3600, monotonic=lambda: real[0])
    real[0] += 0.2
    assert (clock.now() - T0).total_seconds() == pytest.approx(720)  # 0.2 real seconds = 12 simulated minutes
    clock.advance(hours=1)
    assert (clock.now() - T0).total_seconds() == pytest.approx(3600 + 720)
    real[0] += 1.0
    assert (clock.now() - T0).total_seconds() == pytest.approx(3600 + 720 + 3600)
