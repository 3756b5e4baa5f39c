"""Kuaidi100 (快递100): real-time tracking query, push subscription, and push verification.

Published protocol (EXTERNAL-SYSTEMS.md, "Carriers"):

* Query: ``POST …/poll/query.do`` form ``customer``, ``sign``, ``param``; ``sign = upper(MD5(param + key +
  customer))``; ``param`` JSON ``com``, ``num``, ``phone`` (required for SF and ZTO), ``from``, ``to``,
  ``resultv2``, ``show``, ``order``. Answer: ``message``, ``nu``, ``ischeck``, ``com``, ``state``, ``data[]``
  (``time``, ``ftime``, ``context``, ``areaCode``, ``areaName``, ``status``, ``statusCode``); errors as
  ``{"result": false, "returnCode": "...", "message": "..."}``. Codes and strings both occur for numbers.
* Subscription: ``POST …/poll`` with ``schema=json`` and ``param`` = ``company``, ``number``, ``key``,
  ``parameters.callbackurl``, ``parameters.salt``.
* Push: form fields ``param`` (``status`` polling/shutdown/abort/updateall, ``lastResult`` shaped like a query
  answer, and ``autoCheck``/``comOld``/``comNew`` when Kuaidi100 corrected the carrier code) and
  ``sign = md5(param + salt)``; the receiver answers ``{"result":true,"returnCode":"200","message":"成功"}``.

Error codes as published for the query API: 400 incomplete data / unknown company, 408 phone check failed,
500 no result (unknown waybill, or nothing scanned yet: "查询无结果，请隔段时间再查"), 501 server error, 502 server
busy, 503 signature check failed, 601 key expired or no balance. Kuaidi100 does not publish distinct codes for
"this waybill was queried too often" or for a global throttle; we recognise them by message ("频繁"), which is
an assumption, kept in one function (``classify_error``).

Secrets (``customer``, ``key``, ``salt``) come from environment variables named in the policy file; they never
appear in logs, reprs or exceptions. Retries happen here, per attempt through the caller's rate pacer, so a retry
is counted against the global request rate like any other request (urllib3's Retry would resend below it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import urlencode
from urllib.request import getproxies_environment, proxy_bypass_environment
from zoneinfo import ZoneInfo

import urllib3

log = logging.getLogger(__name__)

CARRIER_TZ = ZoneInfo("Asia/Shanghai")  # checkpoint times are Beijing time without a zone

CARRIER_NAMES = {
    "shunfeng": "顺丰速运",
    "zhongtong": "中通快递",
    "yuantong": "圆通速递",
    "yunda": "韵达快递",
    "shentong": "申通快递",
    "jd": "京东物流",
    "ems": "EMS",
    "youzhengguonei": "邮政快递包裹",
    "debangwuliu": "德邦物流",
    "jtexpress": "极兔速递",
}
PHONE_REQUIRED = frozenset({"shunfeng", "zhongtong"})

_FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}


def _environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (HTTPS_PROXY/HTTP_PROXY, honouring NO_PROXY), read once."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if proxy_bypass_environment(parts.hostname or ""):
        return None
    return getproxies_environment().get(parts.scheme)


PUSH_STATUSES = frozenset({"polling", "shutdown", "abort", "updateall"})
PUSH_OK = {"result": True, "returnCode": "200", "message": "成功"}


# --- secrets -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    customer: str = field(repr=False)
    key: str = field(repr=False)
    salt: str = field(default="", repr=False)

    @classmethod
    def from_env(
        cls,
        customer_env: str = "YIDI_KUAIDI100_CUSTOMER",
        key_env: str = "YIDI_KUAIDI100_KEY",
        salt_env: str = "YIDI_KUAIDI100_SALT",
    ) -> Credentials:
        missing = [name for name in (customer_env, key_env) if not os.environ.get(name)]
        if missing:
            raise MissingCredentials(
                f"set the environment variable(s) {', '.join(missing)} (Kuaidi100 account)"
            )
        return cls(os.environ[customer_env], os.environ[key_env], os.environ.get(salt_env, ""))

    def __repr__(self) -> str:  # never print secrets, even by accident
        return "Credentials(customer=***, key=***, salt=***)"


class MissingCredentials(RuntimeError):
    pass


def query_sign(param: str, key: str, customer: str) -> str:
    return hashlib.md5((param + key + customer).encode("utf-8")).hexdigest().upper()


def push_sign(param: str, salt: str) -> str:
    return hashlib.md5((param + salt).encode("utf-8")).hexdigest().upper()


def dumps(value) -> str:
    """JSON exactly as signed and sent (compact, UTF-8 kept)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- results ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    time: datetime  # aware UTC
    time_text: str  # as the carrier wrote it (Beijing time)
    context: str
    area_code: str | None = None
    area_name: str | None = None
    status_text: str | None = None
    status_code: str | None = None


@dataclass
class TrackingResult:
    com: str
    num: str
    state: int | None
    ischeck: bool
    checkpoints: list[Checkpoint]
    condition: str | None = None
    message: str | None = None
    com_old: str | None = None
    com_new: str | None = None

    @property
    def carrier_changed(self) -> bool:
        return bool(self.com_new) and self.com_new != self.com_old

    def newest(self) -> Checkpoint | None:
        return max(self.checkpoints, key=lambda c: c.time) if self.checkpoints else None


class ErrorKind(StrEnum):
    NO_RESULT = "no_result"  # unknown waybill, or nothing scanned yet
    TOO_FREQUENT = "too_frequent"  # this waybill was queried inside the minimum interval
    RATE_LIMITED = "rate_limited"  # the account's global request rate was exceeded
    UNAVAILABLE = "unavailable"  # server error, busy, down, timeout, connection refused
    REJECTED = "rejected"  # bad request for this waybill (company code, phone check)
    AUTH = "auth"  # signature or key problem: every request will fail the same way
    MALFORMED = "malformed"  # an answer we cannot read


TRANSIENT_KINDS = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.UNAVAILABLE})


class Kuaidi100Error(Exception):
    def __init__(
        self, kind: ErrorKind, message: str, return_code: str | None = None, http_status: int | None = None
    ):
        self.kind = ErrorKind(kind)
        self.return_code = return_code
        self.http_status = http_status
        self.message = message
        super().__init__(f"{self.kind}: {message}" + (f" (returnCode {return_code})" if return_code else ""))

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT_KINDS


def classify_error(return_code, message: str | None) -> ErrorKind:
    code = str(return_code or "").strip()
    text = message or ""
    if "频繁" in text or "too frequent" in text.lower():
        return ErrorKind.TOO_FREQUENT if code == "500" else ErrorKind.RATE_LIMITED
    if code == "500":
        return ErrorKind.NO_RESULT
    if code in {"501", "502"}:
        return ErrorKind.UNAVAILABLE
    if code in {"503", "601", "600"}:
        return ErrorKind.AUTH
    return ErrorKind.REJECTED


def _text(value) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _carrier_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip().replace("/", "-"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=CARRIER_TZ)
    return parsed.astimezone(UTC)


def _int_or_none(value) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def parse_result(payload: dict, *, com_old: str | None = None, com_new: str | None = None) -> TrackingResult:
    """A query answer (or a push's ``lastResult``) -> ``TrackingResult``; error answers raise ``Kuaidi100Error``."""
    if not isinstance(payload, dict):
        raise Kuaidi100Error(ErrorKind.MALFORMED, f"expected a JSON object, got {type(payload).__name__}")
    if (
        payload.get("result") is False
        or payload.get("result") == "false"
        or (payload.get("returnCode") and "data" not in payload)
    ):
        code = _text(payload.get("returnCode"))
        message = _text(payload.get("message")) or "error without message"
        raise Kuaidi100Error(classify_error(code, message), message, code)
    data = payload.get("data")
    num = _text(payload.get("nu"))
    if not isinstance(data, list) or num is None:
        raise Kuaidi100Error(ErrorKind.MALFORMED, "answer lacks nu or data[]")
    checkpoints = []
    for item in data:
        if not isinstance(item, dict):
            raise Kuaidi100Error(ErrorKind.MALFORMED, "data[] holds a non-object")
        stamp = _text(item.get("ftime")) or _text(item.get("time"))
        if stamp is None:
            raise Kuaidi100Error(ErrorKind.MALFORMED, "checkpoint without time")
        try:
            when = _carrier_time(stamp)
        except ValueError:
            raise Kuaidi100Error(ErrorKind.MALFORMED, f"unreadable checkpoint time {stamp!r}") from None
        checkpoints.append(
            Checkpoint(
                time=when,
                time_text=stamp,
                context=str(item.get("context") or "").strip(),
                area_code=_text(item.get("areaCode")),
                area_name=_text(item.get("areaName")),
                status_text=_text(item.get("status")),
                status_code=_text(item.get("statusCode")),
            )
        )
    return TrackingResult(
        com=_text(payload.get("com")) or "",
        num=num,
        state=_int_or_none(payload.get("state")),
        ischeck=str(payload.get("ischeck", "0")).strip() == "1",
        checkpoints=checkpoints,
        condition=_text(payload.get("condition")),
        message=_text(payload.get("message")),
        com_old=_text(payload.get("comOld")) or com_old,
        com_new=_text(payload.get("comNew")) or com_new,
    )


# --- push ---------------------------------------------------------------------------------------------------


class PushRejected(ValueError):
    """A push that is unsigned, wrongly signed or malformed; nothing from it may be stored."""


@dataclass
class PushNotice:
    status: str  # polling | shutdown | abort | updateall
    message: str | None
    bill_status: str | None
    auto_check: bool
    result: TrackingResult | None  # None when Kuaidi100 aborted without a result
    com: str | None
    num: str | None


def verify_push(param: str | None, sign: str | None, salt: str) -> PushNotice:
    """Check a push's signature and shape; raise ``PushRejected`` (reason without personal data) otherwise."""
    if not salt:
        raise PushRejected("no salt configured: cannot verify pushes")
    if not param:
        raise PushRejected("missing param")
    if not sign:
        raise PushRejected("unsigned push (no sign)")
    if not hmac.compare_digest(push_sign(param, salt), sign.strip().upper()):
        raise PushRejected("signature mismatch")
    try:
        body = json.loads(param)
    except ValueError:
        raise PushRejected("param is not JSON") from None
    if not isinstance(body, dict):
        raise PushRejected("param is not a JSON object")
    status = _text(body.get("status"))
    if status not in PUSH_STATUSES:
        raise PushRejected(f"unknown push status {status!r}")
    last = body.get("lastResult")
    com_old, com_new = _text(body.get("comOld")), _text(body.get("comNew"))
    result = None
    if last is not None:
        try:
            result = parse_result(last, com_old=com_old, com_new=com_new)
        except Kuaidi100Error as exc:
            if not (status == "abort" and exc.kind is ErrorKind.MALFORMED and isinstance(last, dict)):
                raise PushRejected(f"lastResult unreadable: {exc.kind}") from None
    elif status != "abort":
        raise PushRejected("lastResult missing")
    num = result.num if result else _text((last or {}).get("nu"))
    com = result.com if result else _text((last or {}).get("com"))
    if not num:
        raise PushRejected("no waybill number in push")
    return PushNotice(
        status=status,
        message=_text(body.get("message")),
        bill_status=_text(body.get("billstatus")),
        auto_check=str(body.get("autoCheck", "0")) == "1",
        result=result,
        com=com_new or com,
        num=num,
    )


# --- client -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, transient errors only."""

    max_attempts: int = 4
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 30.0
    rate_limited_backoff_seconds: float = 2.0

    def delay(self, attempt: int, kind: ErrorKind, rng: random.Random) -> float:
        base = self.rate_limited_backoff_seconds if kind is ErrorKind.RATE_LIMITED else self.backoff_seconds
        ceiling = min(self.backoff_max_seconds, base * (2 ** (attempt - 1)))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass
class SubscribeOutcome:
    accepted: bool
    return_code: str | None
    message: str | None


class Kuaidi100Client:
    """Signed requests to Kuaidi100. ``before_request`` is called right before every attempt goes on the wire.

    Transport: urllib3 (the library under requests), called directly. A polling cycle sends thousands of small
    POSTs from one interpreter; requests' per-call bookkeeping costs about three times urllib3's CPU per request
    here, which is the difference between holding the carrier's rate and not. urllib3 does no retries of its own:
    every attempt must pass the pacer.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        query_url: str = "https://poll.kuaidi100.com/poll/query.do",
        subscribe_url: str = "https://poll.kuaidi100.com/poll",
        timeout_seconds: float = 10.0,
        retry: RetryPolicy | None = None,
        before_request: Callable[[], None] | None = None,
        pool_size: int = 32,
    ):
        self.credentials = credentials
        self.query_url = query_url
        self.subscribe_url = subscribe_url
        self.timeout = timeout_seconds
        self.retry = retry or RetryPolicy()
        self.before_request = before_request
        self._rng = random.Random()
        options = {"num_pools": 4, "maxsize": pool_size, "retries": False,
                   "timeout": urllib3.Timeout(total=timeout_seconds)}  # fmt: skip
        proxy = _environment_proxy(query_url)
        self.http = urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)

    def close(self) -> None:
        self.http.clear()

    def __enter__(self) -> Kuaidi100Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- query --

    def query_param(
        self,
        com: str,
        num: str,
        phone: str | None = None,
        *,
        origin: str | None = None,
        to: str | None = None,
    ) -> str:
        param = {"com": com, "num": num}
        if phone:
            param["phone"] = phone
        if origin:
            param["from"] = origin
        if to:
            param["to"] = to
        param.update({"resultv2": "1", "show": "0", "order": "desc"})
        return dumps(param)

    def query_once(self, com: str, num: str, phone: str | None = None, **where) -> TrackingResult:
        if com in PHONE_REQUIRED and not phone:
            raise Kuaidi100Error(ErrorKind.REJECTED, f"{com} needs the recipient's or sender's phone")
        param = self.query_param(com, num, phone, **where)
        form = {
            "customer": self.credentials.customer,
            "sign": query_sign(param, self.credentials.key, self.credentials.customer),
            "param": param,
        }
        payload = self._post(self.query_url, form)
        return parse_result(payload)

    def query(self, com: str, num: str, phone: str | None = None, **where) -> TrackingResult:
        """Query with retries on transient errors (server errors, throttling); others raise at once."""
        return self._with_retries(lambda: self.query_once(com, num, phone, **where))

    # -- subscription --

    def subscribe(
        self, com: str, num: str, callback_url: str, *, phone: str | None = None, to: str | None = None
    ) -> SubscribeOutcome:
        return self._with_retries(lambda: self._subscribe_once(com, num, callback_url, phone=phone, to=to))

    def _subscribe_once(self, com, num, callback_url, *, phone=None, to=None) -> SubscribeOutcome:
        parameters = {"callbackurl": callback_url, "resultv2": "1"}
        if self.credentials.salt:
            parameters["salt"] = self.credentials.salt
        if phone:
            parameters["phone"] = phone
        param = {"company": com, "number": num, "key": self.credentials.key, "parameters": parameters}
        if to:
            param["to"] = to
        payload = self._post(self.subscribe_url, {"schema": "json", "param": dumps(param)})
        code = _text(payload.get("returnCode"))
        message = _text(payload.get("message"))
        # 501 "重复订阅": already subscribed, which is what we wanted.
        accepted = payload.get("result") in (True, "true") or code in {"200", "501"}
        if not accepted:
            kind = classify_error(code, message)
            if code == "500" or kind in TRANSIENT_KINDS:
                raise Kuaidi100Error(ErrorKind.UNAVAILABLE if code == "500" else kind, message or "", code)
            if code in {"600", "601"}:
                raise Kuaidi100Error(ErrorKind.AUTH, message or "", code)
        return SubscribeOutcome(accepted, code, message)

    # -- plumbing --

    def _post(self, url: str, form: dict) -> dict:
        body = urlencode(form)
        if self.before_request is not None:
            self.before_request()
        try:
            response = self.http.request("POST", url, body=body, headers=_FORM_HEADERS)
        except urllib3.exceptions.TimeoutError:
            raise Kuaidi100Error(ErrorKind.UNAVAILABLE, "timeout") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Kuaidi100Error(ErrorKind.UNAVAILABLE, f"connection failed: {type(exc).__name__}") from None
        status = response.status
        if status == 429:
            raise Kuaidi100Error(ErrorKind.RATE_LIMITED, "HTTP 429", http_status=status)
        if status >= 500:
            raise Kuaidi100Error(ErrorKind.UNAVAILABLE, f"HTTP {status}", http_status=status)
        if status >= 400:
            raise Kuaidi100Error(ErrorKind.REJECTED, f"HTTP {status}", http_status=status)
        try:
            return json.loads(response.data)
        except ValueError:
            raise Kuaidi100Error(ErrorKind.MALFORMED, "answer is not JSON", http_status=status) from None

    def _with_retries(self, attempt_fn):
        attempt = 1
        while True:
            try:
                return attempt_fn()
            except Kuaidi100Error as exc:
                if not exc.transient or attempt >= self.retry.max_attempts:
                    raise
                pause = self.retry.delay(attempt, exc.kind, self._rng)
                log.debug("Kuaidi100 %s; retry %d in %.2fs", exc.kind, attempt, pause)
                time.sleep(pause)
                attempt += 1
