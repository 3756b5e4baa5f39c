"""A local stand-in for Kuaidi100: real HTTP on 127.0.0.1, the published query/subscribe/push formats.

What it does, so tests, the demo and the benchmark exercise the real protocol code:

* checks signatures (``upper(MD5(param + key + customer))``; subscription ``key``) and the phone that SF and ZTO
  require;
* advances each registered waybill along a realistic route (Chongqing hub -> destination hub -> station ->
  courier -> signed) on a **simulated clock** that tests control (``clock.advance(hours=…)``);
* scenarios: ``normal``, ``delayed`` (slow, keeps reporting), ``stale`` (days without a scan), ``problem`` (疑难),
  ``refused`` (拒签 then return), ``returned`` (sender recalls it), ``damaged`` (破损 in the text), ``lost``
  (遗失, nothing after);
* answers unknown waybills like Kuaidi100 (``returnCode 500 查询无结果，请隔段时间再查``);
* enforces a per-waybill minimum interval (simulated minutes, default 30) and a global request rate (token bucket
  in real time), and counts every request so a benchmark can prove the rate was never exceeded;
* changes a waybill's carrier code on demand (answers then carry ``comOld``/``comNew``);
* fails on demand: ``fail_next(n, mode)`` and ``down(for_=timedelta(hours=1))`` (simulated time);
* pushes updates to subscribers' callback URLs (``param`` + ``sign = md5(param + salt)``).

Run in-process with ``start()`` (a handle with ``.url``, ``.stop()``, usable as a context manager), or as its own
process with ``spawn()`` / ``python -m demo.standins.kuaidi100`` (control over ``/_standin/*``).
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import requests

SHANGHAI = ZoneInfo("Asia/Shanghai")
SCENARIOS = ("normal", "delayed", "stale", "problem", "refused", "returned", "damaged", "lost")
PHONE_CHECKED = frozenset({"shunfeng", "zhongtong"})
NO_RESULT = {"result": False, "returnCode": "500", "message": "查询无结果，请隔段时间再查"}

STATE_TEXT = {0: "在途", 1: "揽收", 2: "疑难", 3: "签收", 4: "退签", 5: "派件", 6: "退回", 14: "拒签"}


def _md5_upper(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class SimClock:
    """Simulated time (aware UTC), thread-safe. Still unless ``speed`` is given: then it runs at ``speed`` x real
    time (60: a real minute is a simulated hour), and ``advance``/``set`` still jump it."""

    def __init__(self, start: datetime | None = None, speed: float | None = None):
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._since = time.monotonic()
        self.speed = speed
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            if not self.speed:
                return self._now
            return self._now + timedelta(seconds=(time.monotonic() - self._since) * self.speed)

    def advance(self, delta: timedelta | None = None, **kwargs) -> datetime:
        with self._lock:
            self._now += delta or timedelta(**kwargs)
        return self.now()

    def set(self, when: datetime) -> datetime:
        with self._lock:
            self._now = when.astimezone(UTC)
            self._since = time.monotonic()
        return self.now()


# --- routes -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteEvent:
    at: datetime
    context: str
    state: int
    code: str
    area: str

    @property
    def row(self) -> dict:
        stamp = self.at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
        return {"time": stamp, "ftime": stamp, "context": self.context, "areaCode": None, "areaName": self.area,
                "status": STATE_TEXT.get(self.state, "在途"), "statusCode": self.code}  # fmt: skip


@dataclass
class Registration:
    com: str
    num: str
    shipped_at: datetime
    phone: str | None = None
    city: str = "北京市"
    district: str = "朝阳区"
    scenario: str = "normal"
    previous_coms: set[str] = field(default_factory=set)
    route: list[RouteEvent] = field(default_factory=list)


def build_route(reg: Registration, seed: int = 7) -> list[RouteEvent]:
    """The waybill's whole future, deterministic per (seed, waybill)."""
    rng = random.Random(f"{seed}:{reg.num}")
    t = reg.shipped_at.astimezone(UTC)
    city, district = reg.city or "北京市", reg.district or ""
    station = f"{city}{district}营业部"
    hub = f"{city}转运中心"
    events: list[RouteEvent] = []

    def step(hours_lo: float, hours_hi: float, context: str, state: int, code: str, area: str) -> None:
        nonlocal t
        t = t + timedelta(hours=rng.uniform(hours_lo, hours_hi))
        events.append(RouteEvent(t, context, state, code, area))

    courier = f"{rng.choice('王李张刘陈杨赵')}师傅"
    courier_phone = f"1{rng.randint(3, 9)}{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}"
    step(0.5, 2, "【重庆市沙坪坝区西永营业部】已揽收", 1, "103", "重庆,重庆市,沙坪坝区")
    step(2, 4, "快件已到达【重庆转运中心】", 0, "1002", "重庆,重庆市")
    if reg.scenario == "stale":
        t += timedelta(hours=96)  # four days without any scan
    step(1, 3, f"快件已从【重庆转运中心】发出，下一站【{hub}】", 0, "1002", "重庆,重庆市")
    if reg.scenario == "lost":
        step(48, 60, f"快件在运输途中遗失，已登记理赔，请联系寄件人【{station}】", 2, "2", city)
        return events
    if reg.scenario == "delayed":
        for _ in range(3):
            step(22, 26, f"快件在【{hub}】中转，因天气原因延误", 0, "1002", city)
    step(18, 40, f"快件已到达【{hub}】", 0, "1002", city)
    if reg.scenario == "damaged":
        step(1, 3, f"【{hub}】快件外包装破损，已重新加固包装后继续转运", 0, "1002", city)
    if reg.scenario == "returned":
        step(2, 6, "应寄件人要求，快件退回，正在返回【重庆转运中心】", 6, "6", city)
        step(30, 50, "退件已签收，签收人：寄件人【重庆市沙坪坝区西永营业部】", 4, "4", "重庆,重庆市,沙坪坝区")
        return events
    step(3, 6, f"快件已从【{hub}】发出，下一站【{station}】", 0, "1003", city)
    step(2, 5, f"快件已到达【{station}】", 0, "1001", f"{city},{district}")
    if reg.scenario == "problem":
        step(2, 4, f"收件地址不详，联系收件人未果，问题件处理中【{station}】", 2, "207", city)
        t += timedelta(hours=20)
    step(1, 2, f"【{station}】派件员：{courier} 电话：{courier_phone} 正在为您派件", 5, "5", city)
    if reg.scenario == "refused":
        step(1, 3, f"收件人拒收，快件将退回寄件人【{station}】", 14, "14", city)
        step(2, 4, "快件已退回，正在返回寄件人【重庆转运中心】", 6, "6", city)
        step(30, 50, "退件已签收，签收人：寄件人【重庆市沙坪坝区西永营业部】", 4, "4", "重庆,重庆市,沙坪坝区")
        return events
    step(1, 4, "快件已签收，签收人：本人签收。如有疑问请联系派件员", 3, "301", city)
    return events


# --- the carrier ----------------------------------------------------------------------------------------------


class TokenBucket:
    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


class CarrierState:
    """Everything the stand-in knows; thread-safe."""

    def __init__(
        self,
        *,
        customer: str,
        key: str,
        clock: SimClock,
        min_interval: timedelta = timedelta(minutes=30),
        rate_per_second: float | None = None,
        burst: float | None = None,
        seed: int = 7,
        auto_register: bool = False,
        scenario_weights: dict[str, float] | None = None,
    ):
        self.customer, self.key = customer, key
        self.clock = clock
        self.min_interval = min_interval
        self.seed = seed
        self.auto_register = auto_register
        self.scenario_weights = scenario_weights or {"normal": 1.0}
        self.bucket = (
            TokenBucket(rate_per_second, burst or max(1.0, rate_per_second / 10)) if rate_per_second else None
        )
        self.rate_per_second = rate_per_second
        self.lock = threading.Lock()
        self.waybills: dict[str, Registration] = {}
        self.last_query: dict[str, datetime] = {}
        self.subscriptions: dict[str, dict] = {}
        self.failures: deque[str] = deque()
        self.down_until: datetime | None = None
        self.down_mode = "http503"
        self.outcomes: Counter[str] = Counter()
        self.arrivals: list[float] = []  # monotonic times of every query request
        self.pushes: list[dict] = []
        self._rows: dict[RouteEvent, dict] = {}  # formatted checkpoints, built once

    # -- registration --

    def register(
        self,
        com: str,
        num: str,
        *,
        shipped_at: datetime,
        phone: str | None = None,
        city: str | None = None,
        district: str | None = None,
        scenario: str = "normal",
    ) -> Registration:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; choose from {SCENARIOS}")
        reg = Registration(
            com=com, num=num, shipped_at=shipped_at.astimezone(UTC), phone=phone,
            city=city or "北京市", district=district or "", scenario=scenario,
        )  # fmt: skip
        reg.route = build_route(reg, self.seed)
        with self.lock:
            self.waybills[num] = reg
        return reg

    def register_many(self, rows) -> int:
        for row in rows:
            shipped = row["shipped_at"]
            if isinstance(shipped, str):
                shipped = datetime.fromisoformat(shipped)
            self.register(
                row["com"], row["num"], shipped_at=shipped, phone=row.get("phone"), city=row.get("city"),
                district=row.get("district"), scenario=row.get("scenario") or "normal",
            )  # fmt: skip
        return len(self.waybills)

    def change_carrier(self, num: str, new_com: str) -> None:
        with self.lock:
            reg = self.waybills[num]
            reg.previous_coms.add(reg.com)
            reg.com = new_com

    def _auto_scenario(self, num: str) -> str:
        rng = random.Random(f"{self.seed}:scenario:{num}")
        names, weights = zip(*self.scenario_weights.items(), strict=True)
        return rng.choices(names, weights=weights)[0]

    # -- failures --

    def fail_next(self, n: int = 1, mode: str = "http500") -> None:
        """Next ``n`` requests fail: http500, http503, http429, busy, rate_limited, reset, garbage."""
        with self.lock:
            self.failures.extend([mode] * n)

    def down(
        self, for_: timedelta | None = None, *, until: datetime | None = None, mode: str = "http503"
    ) -> None:
        self.down_until = until or (self.clock.now() + (for_ or timedelta(hours=1)))
        self.down_mode = mode

    # -- answers --

    def visible(self, reg: Registration, now: datetime) -> list[RouteEvent]:
        return [e for e in reg.route if e.at <= now]

    def result_payload(
        self, reg: Registration, com_asked: str, events: list[RouteEvent], *, desc=True
    ) -> dict:
        newest = events[-1]
        rows = [self._rows.get(e) or self._rows.setdefault(e, e.row) for e in events]
        if desc:
            rows.reverse()
        payload = {
            "message": "ok",
            "nu": reg.num,
            "ischeck": "1" if newest.state in (3, 4) else "0",
            "condition": "00",
            "com": reg.com,
            "status": "200",
            "state": str(newest.state),
            "data": rows,
        }
        if com_asked != reg.com:
            payload["comOld"], payload["comNew"] = com_asked, reg.com
        return payload

    def answer_query(self, form: dict[str, str]) -> tuple[int, dict | str]:
        """(HTTP status, JSON body or raw text)."""
        self.arrivals.append(time.monotonic())
        now = self.clock.now()
        with self.lock:
            failure = self.failures.popleft() if self.failures else None
        if failure is None and self.down_until is not None and now < self.down_until:
            failure = self.down_mode
        if failure:
            self.outcomes[f"failed_{failure}"] += 1
            return _failure_answer(failure)
        if self.bucket is not None and not self.bucket.take():
            self.outcomes["rate_limited"] += 1
            return 200, {"result": False, "returnCode": "502", "message": "请求过于频繁，请稍后再试"}
        customer, sign, param = form.get("customer"), form.get("sign"), form.get("param")
        if not customer or not sign or not param:
            self.outcomes["incomplete"] += 1
            return 200, {
                "result": False,
                "returnCode": "400",
                "message": "提交的数据不完整，或者贵公司没授权",
            }
        if customer != self.customer or sign.upper() != _md5_upper(param + self.key + self.customer):
            self.outcomes["bad_sign"] += 1
            return 200, {"result": False, "returnCode": "503", "message": "验证签名失败"}
        try:
            query = json.loads(param)
            com, num = str(query["com"]), str(query["num"])
        except (ValueError, KeyError, TypeError):
            self.outcomes["incomplete"] += 1
            return 200, {"result": False, "returnCode": "400", "message": "提交的数据不完整"}
        with self.lock:
            last = self.last_query.get(num)
            if last is not None and now - last < self.min_interval:
                self.outcomes["too_frequent"] += 1
                minutes = int(self.min_interval.total_seconds() // 60)
                return 200, {
                    "result": False,
                    "returnCode": "500",
                    "message": f"查询过于频繁，请{minutes}分钟后再查",
                }
            self.last_query[num] = now
            reg = self.waybills.get(num)
        if reg is None and self.auto_register:
            reg = self.register(
                com, num, shipped_at=now - timedelta(hours=1), scenario=self._auto_scenario(num)
            )
        if reg is None or (com != reg.com and com not in reg.previous_coms):
            self.outcomes["unknown"] += 1
            return 200, NO_RESULT
        if com in PHONE_CHECKED and reg.phone:  # the queried carrier's rule applies
            given = str(query.get("phone") or "")
            if given[-4:] != reg.phone[-4:]:
                self.outcomes["phone_mismatch"] += 1
                return 200, {"result": False, "returnCode": "408", "message": "快递公司参数异常：验证码错误"}
        events = self.visible(reg, now)
        if not events:
            self.outcomes["no_scan_yet"] += 1
            return 200, NO_RESULT
        self.outcomes["ok"] += 1
        return 200, self.result_payload(reg, com, events, desc=query.get("order", "desc") != "asc")

    def answer_subscribe(self, form: dict[str, str]) -> dict:
        try:
            param = json.loads(form.get("param") or "")
            com, num = str(param["company"]), str(param["number"])
            callback = str(param["parameters"]["callbackurl"])
        except (ValueError, KeyError, TypeError):
            return {
                "result": False,
                "returnCode": "700",
                "message": "订阅方的订阅数据存在错误（如不支持的快递公司、单号为空等）",
            }
        if form.get("schema") != "json":
            return {"result": False, "returnCode": "700", "message": "schema 必须为 json"}
        if param.get("key") != self.key:
            return {"result": False, "returnCode": "600", "message": "您不是合法的订阅者（即授权Key出错）"}
        with self.lock:
            if num in self.subscriptions:
                return {"result": False, "returnCode": "501", "message": "重复订阅"}
            self.subscriptions[num] = {
                "com": com,
                "callbackurl": callback,
                "salt": param["parameters"].get("salt") or "",
                "pushed_upto": None,
                "done": False,
            }
        return {"result": True, "returnCode": "200", "message": "提交成功"}

    # -- pushes --

    def push_payload(self, num: str, status: str = "polling", message: str = "") -> tuple[str, str, str]:
        """(callback url, param, sign) for one subscribed waybill as it looks now."""
        sub = self.subscriptions[num]
        reg = self.waybills.get(num)
        events = self.visible(reg, self.clock.now()) if reg else []
        body: dict = {"status": status, "billstatus": "got", "message": message, "autoCheck": "0",
                      "comOld": "", "comNew": ""}  # fmt: skip
        if events:
            result = self.result_payload(reg, sub["com"], events)
            if "comNew" in result:
                body.update(autoCheck="1", comOld=result.pop("comOld"), comNew=result.pop("comNew"))
            if result["ischeck"] == "1":
                body["billstatus"] = "check"
            body["lastResult"] = result
        else:
            body["lastResult"] = {"message": message or "3天查询无记录", "nu": num, "ischeck": "0",
                                  "com": sub["com"], "status": "200", "state": "0", "data": []}  # fmt: skip
        param = _dumps(body)
        return sub["callbackurl"], param, _md5_upper(param + sub["salt"])

    def push_updates(self, timeout: float = 5.0) -> list[dict]:
        """Push every subscribed waybill whose newest checkpoint changed since its last accepted push."""
        sent = []
        now = self.clock.now()
        for num, sub in list(self.subscriptions.items()):
            reg = self.waybills.get(num)
            if sub["done"] or reg is None:
                continue
            events = self.visible(reg, now)
            if not events or sub["pushed_upto"] == events[-1].at:
                continue
            final = events[-1].state in (3, 4)
            sent.append(self.push(num, status="shutdown" if final else "polling", timeout=timeout))
            if sent[-1]["accepted"]:
                sub["pushed_upto"] = events[-1].at
                sub["done"] = final
        return sent

    def push(self, num: str, status: str = "polling", message: str = "", timeout: float = 5.0) -> dict:
        url, param, sign = self.push_payload(num, status, message)
        try:
            response = requests.post(url, data={"param": param, "sign": sign}, timeout=timeout)
            body = response.json()
            accepted = response.status_code == 200 and body.get("result") in (True, "true")
        except (requests.RequestException, ValueError):
            accepted, body = False, None
        record = {"num": num, "status": status, "accepted": accepted, "answer": body}
        self.pushes.append(record)
        return record

    # -- statistics --

    def max_in_any_second(self) -> int:
        """Most query requests that arrived within any one-second window (half-open)."""
        times = sorted(self.arrivals)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= 1.0:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def stats(self) -> dict:
        return {
            "requests": len(self.arrivals),
            "outcomes": dict(self.outcomes),
            "rate_limited": self.outcomes.get("rate_limited", 0),
            "too_frequent": self.outcomes.get("too_frequent", 0),
            "max_requests_in_any_second": self.max_in_any_second(),
            "rate_per_second": self.rate_per_second,
            "waybills": len(self.waybills),
            "subscriptions": len(self.subscriptions),
            "clock": self.clock.now().isoformat(),
        }

    def reset_stats(self) -> None:
        self.outcomes.clear()
        self.arrivals.clear()


def _failure_answer(mode: str) -> tuple[int, dict | str]:
    if mode == "http500":
        return 500, "<html><body>500 Internal Server Error</body></html>"
    if mode == "http503":
        return 503, "<html><body>503 Service Temporarily Unavailable</body></html>"
    if mode == "http429":
        return 429, "Too Many Requests"
    if mode == "busy":
        return 200, {"result": False, "returnCode": "502", "message": "服务器繁忙，请稍后再试"}
    if mode == "rate_limited":
        return 200, {"result": False, "returnCode": "502", "message": "请求过于频繁，请稍后再试"}
    if mode == "garbage":
        return 200, "<html>gateway</html>"
    if mode == "reset":
        return -1, ""
    raise ValueError(f"unknown failure mode {mode!r}")


# --- HTTP -----------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a polling cycle reuses connections
    disable_nagle_algorithm = True  # headers and body go out as separate writes; don't wait 40 ms for an ACK
    server: _Server

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: dict | str) -> None:
        if status < 0:  # simulate a dropped connection
            self.close_connection = True
            self.connection.shutdown(2)
            return
        data = (_dumps(body) if isinstance(body, dict | list) else body).encode("utf-8")
        self.send_response(status)
        ctype = "application/json;charset=UTF-8" if isinstance(body, dict | list) else "text/html"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _form(self) -> dict[str, str]:
        parsed = parse_qs(self._body().decode("utf-8"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}

    def do_POST(self) -> None:  # noqa: N802
        state = self.server.state
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/poll/query.do":
            self._send(*state.answer_query(self._form()))
        elif path == "/poll":
            self._send(200, state.answer_subscribe(self._form()))
        elif path.startswith("/_standin/"):
            self._send(200, self._control(path.removeprefix("/_standin/"), json.loads(self._body() or b"{}")))
        else:
            self._send(404, {"result": False, "returnCode": "404", "message": "not found"})

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/") == "/_standin/stats":
            self._send(200, self.server.state.stats())
        else:
            self._send(404, {"message": "not found"})

    def _control(self, command: str, body: dict) -> dict:
        state = self.server.state
        if command == "register":
            return {"waybills": state.register_many(body["rows"])}
        if command == "clock":
            if "set" in body:
                state.clock.set(datetime.fromisoformat(body["set"]))
            if "advance_minutes" in body:
                state.clock.advance(minutes=float(body["advance_minutes"]))
            return {"clock": state.clock.now().isoformat()}
        if command == "reset-stats":
            state.reset_stats()
            return {"ok": True}
        if command == "fail":
            state.fail_next(int(body.get("n", 1)), body.get("mode", "http500"))
            return {"ok": True}
        if command == "push-updates":
            return {"pushes": state.push_updates()}
        return {"error": f"unknown command {command}"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    state: CarrierState


class Kuaidi100Standin:
    """A running stand-in; ``with start() as carrier: …`` stops it on exit."""

    def __init__(self, state: CarrierState, host: str = "127.0.0.1", port: int = 0):
        self.state = state
        self.server = _Server((host, port), _Handler)
        self.server.state = state
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="kuaidi100-standin", daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def query_url(self) -> str:
        return f"{self.url}/poll/query.do"

    @property
    def subscribe_url(self) -> str:
        return f"{self.url}/poll"

    @property
    def clock(self) -> SimClock:
        return self.state.clock

    def __getattr__(self, name):  # register, change_carrier, fail_next, down, push_updates, stats…
        return getattr(self.state, name)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> Kuaidi100Standin:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(
    *,
    customer: str = "standin-customer",
    key: str = "standin-key",
    clock: SimClock | None = None,
    min_interval_minutes: float = 30,
    rate_per_second: float | None = None,
    burst: float | None = None,
    seed: int = 7,
    auto_register: bool = False,
    scenario_weights: dict[str, float] | None = None,
    port: int = 0,
) -> Kuaidi100Standin:
    state = CarrierState(
        customer=customer, key=key, clock=clock or SimClock(), min_interval=timedelta(minutes=min_interval_minutes),
        rate_per_second=rate_per_second, burst=burst, seed=seed, auto_register=auto_register,
        scenario_weights=scenario_weights,
    )  # fmt: skip
    return Kuaidi100Standin(state, port=port)


# --- as its own process (benchmarks: the carrier must not share our interpreter's GIL) --------------------------


class RemoteStandin:
    """A stand-in in a child process, controlled over ``/_standin/*``."""

    def __init__(self, process: subprocess.Popen, url: str):
        self.process, self.url = process, url
        self._owner = os.getpid()
        atexit.register(self._stop_if_owner)

    @property
    def query_url(self) -> str:
        return f"{self.url}/poll/query.do"

    def _control(self, command: str, body: dict | None = None) -> dict:
        return requests.post(f"{self.url}/_standin/{command}", json=body or {}, timeout=120).json()

    def register_many(self, rows: list[dict]) -> int:
        return self._control("register", {"rows": rows})["waybills"]

    def set_clock(self, when: datetime) -> None:
        self._control("clock", {"set": when.isoformat()})

    def reset_stats(self) -> None:
        self._control("reset-stats")

    def stats(self) -> dict:
        return requests.get(f"{self.url}/_standin/stats", timeout=60).json()

    def _stop_if_owner(self) -> None:
        if os.getpid() == self._owner:
            self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def spawn(**options) -> RemoteStandin:
    args = [sys.executable, "-m", "demo.standins.kuaidi100"]
    for name, value in options.items():
        if value is not None:
            args += [f"--{name.replace('_', '-')}", str(value)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline().strip()
    if not line.startswith("http://"):
        process.kill()
        raise RuntimeError(f"stand-in did not start: {line!r}")
    return RemoteStandin(process, line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--customer", default=os.environ.get("YIDI_KUAIDI100_CUSTOMER", "standin-customer"))
    parser.add_argument("--key", default=os.environ.get("YIDI_KUAIDI100_KEY", "standin-key"))
    parser.add_argument("--rate-per-second", type=float, default=None)
    parser.add_argument("--burst", type=float, default=None)
    parser.add_argument("--min-interval-minutes", type=float, default=30)
    parser.add_argument("--auto-register", action="store_true")
    parser.add_argument("--start", default=None, help="simulated start time (ISO 8601)")
    parser.add_argument(
        "--speed", type=float, default=None, help="simulated seconds per real second (clock runs)"
    )
    parser.add_argument("--serve-forever", action="store_true", help="keep serving after the parent exits")
    args = parser.parse_args(argv)
    clock = SimClock(datetime.fromisoformat(args.start) if args.start else None, speed=args.speed)
    carrier = start(
        customer=args.customer, key=args.key, clock=clock, min_interval_minutes=args.min_interval_minutes,
        rate_per_second=args.rate_per_second, burst=args.burst, auto_register=args.auto_register, port=args.port,
    )  # fmt: skip
    print(carrier.url, flush=True)
    parent = os.getppid()
    try:
        while args.serve_forever or os.getppid() == parent:  # an orphaned stand-in stops by itself
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        carrier.stop()


if __name__ == "__main__":
    main()
