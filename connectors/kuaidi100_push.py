"""The Kuaidi100 push receiver's protocol: an HTTP server that verifies, hands over, and answers as published.

Kuaidi100 POSTs form fields ``param`` and ``sign`` (``md5(param + salt)``) to the callback URL given at
subscription and expects ``{"result":true,"returnCode":"200","message":"成功"}``; anything else makes it push
again later. So:

* an unsigned, wrongly signed or malformed push is refused (HTTP 400, ``result: false``), logged without its
  content (it may carry names and phones), and nothing of it is handed over;
* a verified push is handed to the injected ``land(push)`` and answered with success only after ``land``
  returned, so an accepted push is never lost; if ``land`` raises, the answer is "failed" (HTTP 500) and
  Kuaidi100 pushes again.

``land`` returns what became of the push: ``duplicate``, ``landed`` (kept, not applied yet) or ``applied``; the
server counts them (``/health`` shows the counts). What landing means (the tracking store) is the caller's:
this module imports no tasks.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from connectors.kuaidi100 import PUSH_OK, PushNotice, PushRejected, verify_push
from yidi.bulk import utc_now

log = logging.getLogger("yidi.callbacks")
MAX_BODY_BYTES = 2 * 1024 * 1024  # a push for one waybill is a few KB; anything huge is not Kuaidi100


@dataclass(frozen=True)
class Push:
    """A verified push: the ``param`` text as received, what it says, and when it arrived."""

    param: str
    notice: PushNotice
    received_at: datetime


Land = Callable[[Push], str]


def _answer(handler: BaseHTTPRequestHandler, status: int, body: dict) -> None:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json;charset=UTF-8")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:  # access logs would print waybills per request; we log outcomes
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/") == "/health":
            _answer(self, 200, {"ok": True, "counts": dict(self.server.counts)})
        else:
            _answer(self, 404, {"result": False, "returnCode": "404", "message": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        srv = self.server
        if self.path.split("?", 1)[0].rstrip("/") != srv.path.rstrip("/"):
            _answer(self, 404, {"result": False, "returnCode": "404", "message": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY_BYTES:
            self._reject(f"body length {length} out of range", status=413 if length > 0 else 400)
            return
        raw = self.rfile.read(length)
        try:
            form = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            self._reject("body is not UTF-8 form data")
            return
        param = (form.get("param") or [None])[0]
        sign = (form.get("sign") or [None])[0]
        try:
            notice = verify_push(param, sign, srv.salt)
        except PushRejected as exc:
            self._reject(str(exc))
            return
        try:
            became = srv.land(Push(param, notice, srv.clock()))
        except Exception:  # noqa: BLE001 - answer "failed" so Kuaidi100 pushes again
            log.exception("could not land a push for waybill %s", notice.num)
            srv.counts["store_failed"] += 1
            _answer(self, 500, {"result": False, "returnCode": "500", "message": "保存失败，请稍后重推"})
            return
        srv.counts["duplicate" if became == "duplicate" else "landed"] += 1
        if became == "applied":
            srv.counts["applied"] += 1
        _answer(self, 200, PUSH_OK)

    def _reject(self, reason: str, status: int = 400) -> None:
        self.server.counts["rejected"] += 1
        log.warning("rejected push from %s: %s", self.client_address[0], reason)
        _answer(self, status, {"result": False, "returnCode": str(status), "message": f"rejected: {reason}"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    land: Land
    salt: str
    path: str
    clock: Callable[[], datetime]
    counts: Counter


class PushReceiver:
    """``with PushReceiver(land, salt, host=…, port=…, path=…) as srv: srv.url`` — or ``serve_forever()``."""

    def __init__(
        self,
        land: Land,
        salt: str,
        *,
        host: str,
        port: int,
        path: str,
        clock: Callable[[], datetime] = utc_now,
    ):
        self.server = _Server((host, port), _Handler)
        self.server.land = land
        self.server.salt = salt
        self.server.path = path
        self.server.clock = clock
        self.server.counts = Counter()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{self.server.path}"

    @property
    def counts(self) -> Counter:
        return self.server.counts

    def start(self) -> PushReceiver:
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="kuaidi100-callbacks", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> PushReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
