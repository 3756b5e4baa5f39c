"""Kuaidi100 parcel interception (订单拦截, ``interceptOrder``): asking the carrier to stop a parcel in transit and
send it back (issue 18, item 5).

Published request (https://api.kuaidi100.com/document/dianzimiandanlanjie, the .NET SDK's
``InterceptOrderParam``; sample in ``tests/data/formats/kuaidi100/intercept-order.json``):
``POST https://api.kuaidi100.com/label/order`` as a form with ``method=interceptOrder``, ``key``, ``t`` (ms),
``sign = upper(MD5(param + t + key + secret))`` and ``param`` JSON: ``kuaidicom`` (lower-case carrier code),
``kuaidinum`` (waybill), ``interceptType`` (``RETURN_SEND_ADDR`` back to the sender's address,
``RETURN_SEND_STATION`` back to the sending station, ``MODIFY_ADDR`` new address), ``partnerId`` (the e-waybill
account), ``reason``, ``orderid``.

Answer, as the label/order family publishes it: ``{"result": true, "returnCode": "200", "message": "提交成功",
"data": {...}}`` (accepted; ``data.taskId`` when given), else ``result: false`` with a code: 400 bad request, 500
server error, 501 duplicate submission (重复提交: already asked — counted as accepted), 503 bad signature, 600/601
key refused or expired. Kuaidi100 gives the final result (intercepted, failed) by callback; yidi reads the
outcome from the parcel's route instead (state 6 退回, 4 退签, 3 签收), which polling already fetches. **Assumption**
(no published sample found): a request the carrier can no longer act on (parcel delivered, or out for
delivery) is refused with ``returnCode`` 500 and a message saying so (已签收 / 派件 / 无法拦截); it is read as
"too late" by those words, kept in one function (``too_late``).

The secret and key come from environment variables named in the policy; they never appear in errors or reprs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import urllib3

METHOD = "interceptOrder"
ACCEPTED_CODES = frozenset({"200", "501"})  # 501 重复提交: the carrier has our request already
REFUSED_CODES = frozenset({"400", "503", "600", "601"})  # our request is wrong or our account refused: a person
TOO_LATE_WORDS = ("已签收", "签收", "派件", "派送", "无法拦截", "不可拦截")
_FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}


class MissingInterceptCredentials(RuntimeError):
    """The Kuaidi100 key or secret is not set: interception is not configured here."""


@dataclass(frozen=True)
class InterceptCredentials:
    key: str = field(repr=False)
    secret: str = field(repr=False)
    partner_id: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, key_env: str, secret_env: str, partner_id_env: str) -> InterceptCredentials:
        missing = [name for name in (key_env, secret_env) if not os.environ.get(name)]
        if missing:
            raise MissingInterceptCredentials(f"set the environment variable(s) {', '.join(missing)} (Kuaidi100)")
        return cls(os.environ[key_env], os.environ[secret_env], os.environ.get(partner_id_env, ""))


@dataclass(frozen=True)
class InterceptAnswer:
    status: str  # accepted | too_late | refused | failed (transient: ask again next run)
    code: str | None = None
    message: str = ""
    task_id: str | None = None
    answer: dict | None = None


def sign(param: str, t: str, key: str, secret: str) -> str:
    return hashlib.md5((param + t + key + secret).encode("utf-8")).hexdigest().upper()


def too_late(message: str) -> bool:
    """The carrier can no longer stop the parcel (see the module docstring: an assumption on the wording)."""
    return any(word in (message or "") for word in TOO_LATE_WORDS)


def read_answer(payload: dict) -> InterceptAnswer:
    """The carrier's answer to one interception request (pure; see the module docstring)."""
    code = str(payload.get("returnCode") or "").strip() or None
    message = str(payload.get("message") or "")
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    task = data.get("taskId") or data.get("taskid")
    if payload.get("result") in (True, "true") or code in ACCEPTED_CODES:
        return InterceptAnswer("accepted", code, message, str(task) if task else None, payload)
    if too_late(message):
        return InterceptAnswer("too_late", code, message, None, payload)
    if code in REFUSED_CODES:
        return InterceptAnswer("refused", code, message, None, payload)
    return InterceptAnswer("failed", code, message, None, payload)


class InterceptClient:
    def __init__(self, url: str, credentials: InterceptCredentials, *, timeout: float = 10.0,
                 clock=time.time):  # fmt: skip
        self.url, self.credentials, self.clock = url, credentials, clock
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False)

    def __repr__(self) -> str:
        return f"InterceptClient({self.url!r})"

    def request(self, carrier: str, waybill_no: str, *, intercept_type: str = "RETURN_SEND_ADDR",
                reason: str = "", order_ref: str = "") -> InterceptAnswer:  # fmt: skip
        """Ask for one parcel to be stopped; never raises for the carrier's or the network's trouble."""
        param = {"kuaidicom": carrier.lower(), "kuaidinum": waybill_no, "interceptType": intercept_type,
                 "partnerId": self.credentials.partner_id, "reason": reason[:100], "orderid": order_ref}  # fmt: skip
        text = json.dumps(param, ensure_ascii=False, separators=(",", ":"))
        t = str(int(self.clock() * 1000))
        form = {"method": METHOD, "key": self.credentials.key, "t": t,
                "sign": sign(text, t, self.credentials.key, self.credentials.secret), "param": text}  # fmt: skip
        try:
            response = self.http.request("POST", self.url, body=urlencode(form), headers=_FORM_HEADERS)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return InterceptAnswer("failed", message=f"connection failed: {type(exc).__name__}")
        if response.status >= 500 or response.status == 429:
            return InterceptAnswer("failed", str(response.status), f"HTTP {response.status}")
        try:
            payload = json.loads(response.data)
        except ValueError:
            return InterceptAnswer("failed", str(response.status), "answer is not JSON")
        if not isinstance(payload, dict):
            return InterceptAnswer("failed", str(response.status), "answer is not a JSON object")
        return read_answer(payload)

    def close(self) -> None:
        self.http.clear()

    def __enter__(self) -> InterceptClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
