"""SMS over a simple HTTP JSON gateway (the format yidi defines; domestic SMS providers' APIs map onto it).

Request::

    POST <notifications.sms_gateway_url>
    Content-Type: application/json; charset=utf-8
    Authorization: Bearer <token>          (token from the env var named by notifications.sms_token_env; optional)

    {"to": "13812348000",                  mainland mobile number, 11 digits, no +86
     "text": "【重庆示例实业】您的订单…",   signature in 【】 first, then the body (UTF-8, ≤ 500 characters)
     "client_ref": "review:auto_rejected:…"}  the sender's unique reference for this message (≤ 200 characters)

Answer (always JSON)::

    200 {"code": 0, "message": "ok", "message_id": "…", "duplicate": false}
    400 {"code": 40001, "message": "invalid mobile number"}      permanent: the message will never be accepted
    400 {"code": 40002, "message": "text empty or too long"}     permanent
    401 {"code": 40101, "message": "bad token"}                  configuration: retried after the operator fixes it
    429 {"code": 42901, "message": "rate limited"} + Retry-After  transient
    5xx                                                          transient

``client_ref`` makes sending idempotent: the gateway answers a repeated reference with the first message's id and
``"duplicate": true`` instead of sending again, so a sender that crashed after sending but before recording can
safely send again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import requests

MAX_TEXT_CHARS = 500


class SmsSendError(Exception):
    """Not accepted. ``transient``: retry later; ``connection``: the gateway is unreachable or refuses us."""

    def __init__(self, message: str, *, transient: bool, connection: bool = False):
        super().__init__(message)
        self.transient = transient
        self.connection = connection


@dataclass(frozen=True)
class SmsResult:
    message_id: str
    duplicate: bool


def sms_text(sign: str, body: str) -> str:
    text = f"【{sign}】{body.strip()}" if sign else body.strip()
    return text[:MAX_TEXT_CHARS]


class SmsGateway:
    def __init__(self, url: str, *, token: str | None = None, sign: str = "", timeout: float = 10.0,
                 session: requests.Session | None = None):
        self.url, self.token, self.sign, self.timeout = url, token, sign, timeout
        self.session = session or requests.Session()

    @classmethod
    def from_settings(cls, settings=None) -> SmsGateway:
        from yidi.settings import get_settings

        policy = (settings or get_settings()).notifications
        return cls(
            policy.sms_gateway_url,
            token=os.environ.get(policy.sms_token_env) or None,
            sign=policy.sms_sign,
            timeout=policy.sms_timeout_seconds,
        )

    def send(self, to: str, body: str, client_ref: str) -> SmsResult:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = {"to": to, "text": sms_text(self.sign, body), "client_ref": client_ref}
        try:
            response = self.session.post(self.url, json=payload, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise SmsSendError(f"SMS gateway unreachable: {type(exc).__name__}", transient=True,
                               connection=True) from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        message = str(answer.get("message") or response.reason or "")[:200]
        if response.status_code == 200 and answer.get("code") == 0 and answer.get("message_id"):
            return SmsResult(str(answer["message_id"]), bool(answer.get("duplicate")))
        if response.status_code == 200:
            raise SmsSendError(f"SMS gateway: unexpected answer {str(answer)[:200]}", transient=True)
        if response.status_code in (401, 403):
            raise SmsSendError(f"SMS gateway refused our credentials ({response.status_code}: {message})",
                               transient=True, connection=True)
        if response.status_code == 429 or response.status_code >= 500:
            raise SmsSendError(f"SMS gateway busy ({response.status_code}: {message})", transient=True,
                               connection=response.status_code >= 500)
        raise SmsSendError(f"SMS refused ({response.status_code} {answer.get('code')}: {message})", transient=False)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> SmsGateway:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
