"""A local SMS gateway speaking the format in ``connectors/sms_gateway.py``, for the demo and tests.

``handle = start()`` serves ``POST /sms/send`` on 127.0.0.1 (ephemeral port; ``handle.url`` is the full send URL)
and keeps what it accepted in ``handle.messages``. It checks the token when given one, refuses numbers that are not
mainland mobiles, answers a repeated ``client_ref`` as a duplicate without sending again, and fails on demand:
``handle.faults.add("http503", times=2)`` (also ``http500``, ``timeout``, ``reset``, ``throttle``), or
``handle.fail_all(True)`` until told otherwise.
"""

from __future__ import annotations

import json
import re
import threading
import uuid

from demo.standins._http import QuietHandler, StandinServer

MOBILE = re.compile(r"^1[3-9]\d{9}$")
PATH = "/sms/send"


class _SmsHandler(QuietHandler):
    # One request per connection: a stopped gateway must look stopped to clients holding a kept-alive socket.
    protocol_version = "HTTP/1.0"

    def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        self.send_body(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), headers=headers)

    def do_POST(self):  # noqa: N802 - stdlib hook name
        gateway: SmsGatewayStandIn = self.server.standin  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        gateway.requests += 1
        if self.path.split("?", 1)[0] != PATH:
            return self._json(404, {"code": 40400, "message": "not found"})
        if gateway.failing:
            return self._json(503, {"code": 50300, "message": "gateway unavailable (stand-in told to fail)"})
        fault = gateway.faults.take({})
        if fault is not None and self.apply_fault(
            fault, json.dumps({"code": 42901, "message": "rate limited"}).encode(), throttle_status=429
        ):
            return None
        if gateway.token and self.headers.get("Authorization") != f"Bearer {gateway.token}":
            return self._json(401, {"code": 40101, "message": "bad token"})
        try:
            body = json.loads(raw.decode("utf-8"))
            to, text, ref = str(body["to"]), str(body["text"]), str(body["client_ref"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return self._json(400, {"code": 40000, "message": "body must be JSON with to, text, client_ref"})
        if not MOBILE.match(to):
            return self._json(400, {"code": 40001, "message": "invalid mobile number"})
        if not text.strip() or len(text) > 500 or not ref or len(ref) > 200:
            return self._json(400, {"code": 40002, "message": "text empty or too long, or bad client_ref"})
        with gateway.lock:
            known = gateway.by_ref.get(ref)
            if known is None:
                known = f"SM{uuid.uuid4().hex[:16]}"
                gateway.by_ref[ref] = known
                gateway.messages.append({"to": to, "text": text, "client_ref": ref, "message_id": known})
                duplicate = False
            else:
                duplicate = True
        return self._json(200, {"code": 0, "message": "ok", "message_id": known, "duplicate": duplicate})


class SmsGatewayStandIn(StandinServer):
    handler_class = _SmsHandler

    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        self.token = token
        self.failing = False
        self.lock = threading.Lock()
        self.messages: list[dict] = []
        self.by_ref: dict[str, str] = {}

    @property
    def url(self) -> str:
        return super().url + PATH

    def fail_all(self, on: bool = True) -> None:
        """Answer every request with 503 until ``fail_all(False)``."""
        self.failing = on


def start(token: str | None = None) -> SmsGatewayStandIn:
    return SmsGatewayStandIn(token=token).start()
