"""Simulated time and the parcels' journeys that the Kuaidi100 stand-in (``demo.standins.kuaidi100``) reports.

Each registered waybill gets its whole route up front, deterministic per (seed, waybill): Chongqing hub ->
destination hub -> station -> courier -> signed, bent by its scenario (``normal``, ``delayed``, ``stale``,
``problem``, ``refused``, ``returned``, ``damaged``, ``lost``). The carrier shows the part of the route that lies
before the simulated clock's "now".
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
SCENARIOS = ("normal", "delayed", "stale", "problem", "refused", "returned", "damaged", "lost")
STATE_TEXT = {0: "在途", 1: "揽收", 2: "疑难", 3: "签收", 4: "退签", 5: "派件", 6: "退回", 14: "拒签"}


class SimClock:
    """Simulated time (aware UTC), thread-safe. Still unless ``speed`` is given: then it runs at ``speed`` x real
    time (60: a real minute is a simulated hour), and ``advance``/``set`` still jump it."""

    def __init__(self, start: datetime | None = None, speed: float | None = None, monotonic=time.monotonic):
        self._monotonic = monotonic  # tests pass their own to move real time by hand
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._since = monotonic()
        self.speed = speed
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            if not self.speed:
                return self._now
            return self._now + timedelta(seconds=(self._monotonic() - self._since) * self.speed)

    def advance(self, delta: timedelta | None = None, **kwargs) -> datetime:
        with self._lock:
            self._now += delta or timedelta(**kwargs)
        return self.now()

    def set(self, when: datetime) -> datetime:
        with self._lock:
            self._now = when.astimezone(UTC)
            self._since = self._monotonic()
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
    intercepted_at: datetime | None = None  # the sender asked the carrier to stop it (interceptOrder)


def build_route(reg: Registration, seed: int = 7, scale: float = 1.0) -> list[RouteEvent]:
    """The waybill's whole future, deterministic per (seed, waybill). ``scale`` shrinks every interval (the live
    sandbox: 1/288 puts a two-day journey into ten real minutes, its scans at real times, none in the future)."""
    rng = random.Random(f"{seed}:{reg.num}")
    t = reg.shipped_at.astimezone(UTC)
    city, district = reg.city or "北京市", reg.district or ""
    station = f"{city}{district}营业部"
    hub = f"{city}转运中心"
    events: list[RouteEvent] = []

    def step(hours_lo: float, hours_hi: float, context: str, state: int, code: str, area: str) -> None:
        nonlocal t
        t = t + timedelta(hours=rng.uniform(hours_lo, hours_hi) * scale)
        events.append(RouteEvent(t, context, state, code, area))

    courier = f"{rng.choice('王李张刘陈杨赵')}师傅"
    courier_phone = f"1{rng.randint(3, 9)}{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}"
    step(0.5, 2, "【重庆市沙坪坝区西永营业部】已揽收", 1, "103", "重庆,重庆市,沙坪坝区")
    step(2, 4, "快件已到达【重庆转运中心】", 0, "1002", "重庆,重庆市")
    if reg.scenario == "stale":
        t += timedelta(hours=96 * scale)  # four days without any scan
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
        t += timedelta(hours=20 * scale)
    step(1, 2, f"【{station}】派件员：{courier} 电话：{courier_phone} 正在为您派件", 5, "5", city)
    if reg.scenario == "refused":
        step(1, 3, f"收件人拒收，快件将退回寄件人【{station}】", 14, "14", city)
        step(2, 4, "快件已退回，正在返回寄件人【重庆转运中心】", 6, "6", city)
        step(30, 50, "退件已签收，签收人：寄件人【重庆市沙坪坝区西永营业部】", 4, "4", "重庆,重庆市,沙坪坝区")
        return events
    step(1, 4, "快件已签收，签收人：本人签收。如有疑问请联系派件员", 3, "301", city)
    return events


def intercepted_route(reg: Registration, at: datetime, seed: int = 7, scale: float = 1.0) -> list[RouteEvent]:
    """The route after an interception accepted at ``at``: what was scanned stays, then the parcel turns back
    (退回, state 6) and is signed for by the sender at the sending warehouse (退签, state 4)."""
    rng = random.Random(f"{seed}:{reg.num}:intercept")
    kept = [e for e in reg.route if e.at <= at]
    where = (kept[-1].area if kept else "重庆,重庆市").split(",")[-1]
    back = at + timedelta(hours=rng.uniform(1, 3) * scale)
    home = back + timedelta(hours=rng.uniform(20, 40) * scale)
    return kept + [
        RouteEvent(back, f"应寄件人要求，快件已拦截，正在退回寄件人【{where}】", 6, "6", where),
        RouteEvent(home, "退件已签收，签收人：寄件人【重庆市沙坪坝区西永营业部】", 4, "4", "重庆,重庆市,沙坪坝区"),
    ]
