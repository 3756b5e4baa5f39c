"""The Kuaidi100 stand-in's carrier: what it knows and how it answers (``demo.standins.kuaidi100`` serves it over
HTTP). Signature and phone checks, the per-waybill minimum interval and the global token bucket, failures on
demand, carrier-code changes, subscriptions and signed pushes; every request counted.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter, deque
from datetime import UTC, datetime, timedelta

import requests

from demo.standins.parcel_routes import (
    SCENARIOS,
    Registration,
    RouteEvent,
    SimClock,
    build_route,
    intercepted_route,
)

PHONE_CHECKED = frozenset({"shunfeng", "zhongtong"})
NO_RESULT = {"result": False, "returnCode": "500", "message": "查询无结果，请隔段时间再查"}


def _md5_upper(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def compact_json(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- the carrier ----------------------------------------------------------------------------------------------


class TokenBucket:
    def __init__(self, rate: float, burst: float, monotonic=time.monotonic):
        self.rate, self.burst = rate, burst
        self.monotonic = monotonic  # a simulated one in tests: the bucket refills only when the test moves it
        self.tokens = burst
        self.at = monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = self.monotonic()
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
        monotonic=time.monotonic,
        secret: str = "standin-secret",
        route_scale: float = 1.0,
    ):
        self.route_scale = route_scale  # every route's intervals times this (the sandbox: a compressed journey)
        self.customer, self.key, self.secret = customer, key, secret
        self.monotonic = monotonic  # real seconds for the rate limit and the arrival counts (simulated in tests)
        self.interceptions: list[dict] = []  # every interceptOrder request accepted, as received
        self.clock = clock
        self.min_interval = min_interval
        self.seed = seed
        self.auto_register = auto_register
        self.scenario_weights = scenario_weights or {"normal": 1.0}
        self.bucket = (
            TokenBucket(rate_per_second, burst or max(1.0, rate_per_second / 10), monotonic) if rate_per_second else None
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
        reg.route = build_route(reg, self.seed, self.route_scale)
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
        self.arrivals.append(self.monotonic())
        now = self.clock.now()
        with self.lock:
            failure = self.failures.popleft() if self.failures else None
        if failure is None and self.down_until is not None and now < self.down_until:
            failure = self.down_mode
        if failure:
            self.outcomes[f"failed_{failure}"] += 1
            return failure_answer(failure)
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
                com, num, shipped_at=now - timedelta(hours=self.route_scale), scenario=self._auto_scenario(num)
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

    def answer_intercept(self, form: dict[str, str]) -> dict:
        """Kuaidi100 ``label/order`` ``method=interceptOrder`` (``tests/data/formats/kuaidi100/intercept-order.json``):
        a parcel not yet out for delivery is stopped — its route turns back to the sender (退回, then 退签 at the
        sending warehouse); one out for delivery or signed for is too late; a second request is 重复提交."""
        param, t, key, signature = form.get("param"), form.get("t"), form.get("key"), form.get("sign")
        if form.get("method") != "interceptOrder" or not param or not t or not key or not signature:
            return {"result": False, "returnCode": "400", "message": "提交的数据不完整"}
        if key != self.key or signature.upper() != _md5_upper(param + t + self.key + self.secret):
            return {"result": False, "returnCode": "503", "message": "验证签名失败"}
        try:
            request = json.loads(param)
            com, num = str(request["kuaidicom"]), str(request["kuaidinum"])
            kind = str(request["interceptType"])
        except (ValueError, KeyError, TypeError):
            return {"result": False, "returnCode": "400", "message": "提交的数据不完整"}
        if kind not in ("RETURN_SEND_ADDR", "RETURN_SEND_STATION", "MODIFY_ADDR"):
            return {"result": False, "returnCode": "400", "message": "拦截类型错误"}
        now = self.clock.now()
        with self.lock:
            reg = self.waybills.get(num)
            if reg is None or com != reg.com:
                return {"result": False, "returnCode": "400", "message": "快递单号不存在"}
            if reg.intercepted_at is not None:
                return {"result": False, "returnCode": "501", "message": "重复提交"}
            seen = self.visible(reg, now)
            if seen and seen[-1].state in (3, 4, 5, 14):  # out for delivery, refused, signed: it cannot be stopped
                return {"result": False, "returnCode": "500", "message": "快件已派件或已签收，无法拦截"}
            reg.intercepted_at = now
            reg.route = intercepted_route(reg, now, self.seed, self.route_scale)
            task = hashlib.md5(f"{num}:{now.isoformat()}".encode()).hexdigest()[:16].upper()
            self.interceptions.append(request | {"taskId": task})
        return {"result": True, "returnCode": "200", "message": "提交成功", "data": {"taskId": task}}

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
        if self.auto_register and num not in self.waybills:  # a waybill subscribed before its first query
            self.register(com, num, shipped_at=self.clock.now(), scenario=self._auto_scenario(num))
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
        param = compact_json(body)
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
        """Forget what was counted and refill the bucket: a fresh start for the next measured part."""
        self.outcomes.clear()
        self.arrivals.clear()
        if self.bucket is not None:
            self.bucket = TokenBucket(self.bucket.rate, self.bucket.burst, self.monotonic)


def failure_answer(mode: str) -> tuple[int, dict | str]:
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
