"""The Kuaidi100 push receiver behind ``yidi callbacks``: verify, land, apply, answer in the published format.

Kuaidi100 POSTs form fields ``param`` and ``sign`` (``md5(param + salt)``) to the callback URL given at
subscription and expects ``{"result":true,"returnCode":"200","message":"成功"}``; anything else makes it push
again later. So:

* an unsigned, wrongly signed or malformed push is refused (HTTP 400, ``result: false``), logged without its
  content (it may carry names and phones), and nothing of it is stored;
* a verified push is **landed** first (``tracking_push_receipts``, once per identical payload) and only then
  answered with success, so an accepted push is never lost;
* it is applied at once through the same code as polling (checkpoints stored once, incidents, order states);
  if applying fails, the receipt stays ``landed`` and the next ``poll-carriers`` run applies it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from sqlalchemy import Engine

from connectors.kuaidi100 import PUSH_OK, PushRejected, verify_push
from tasks.tracking.steps import apply_landed_pushes, land_push
from yidi.bulk import utc_now
from yidi.settings import TrackingPolicy

log = logging.getLogger("yidi.callbacks")
MAX_BODY_BYTES = 2 * 1024 * 1024  # a push for one waybill is a few KB; anything huge is not Kuaidi100


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
        now = srv.clock()
        try:
            with srv.engine.begin() as conn:
                receipt = land_push(conn, param, notice, now)
        except Exception:  # noqa: BLE001 - answer "failed" so Kuaidi100 pushes again
            log.exception("could not land a push for waybill %s", notice.num)
            srv.counts["store_failed"] += 1
            _answer(self, 500, {"result": False, "returnCode": "500", "message": "保存失败，请稍后重推"})
            return
        srv.counts["landed" if receipt else "duplicate"] += 1
        if receipt is not None:
            try:
                with srv.engine.begin() as conn:
                    apply_landed_pushes(conn, now, srv.policy, receipt_ids=[receipt])
                srv.counts["applied"] += 1
            except Exception:  # noqa: BLE001 - landed; the next polling run applies it
                log.exception("push receipt %s landed but not applied yet", receipt)
        _answer(self, 200, PUSH_OK)

    def _reject(self, reason: str, status: int = 400) -> None:
        self.server.counts["rejected"] += 1
        log.warning("rejected push from %s: %s", self.client_address[0], reason)
        _answer(self, status, {"result": False, "returnCode": str(status), "message": f"rejected: {reason}"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    engine: Engine
    policy: TrackingPolicy
    salt: str
    path: str
    clock: Callable[[], datetime]
    counts: Counter


class CallbackServer:
    """``with CallbackServer(engine, policy, salt) as srv: srv.url`` — or ``serve_forever()`` for the CLI."""

    def __init__(
        self,
        engine: Engine,
        policy: TrackingPolicy,
        salt: str,
        *,
        host: str | None = None,
        port: int | None = None,
        clock: Callable[[], datetime] = utc_now,
    ):
        self.server = _Server(
            (host or policy.callback_host, policy.callback_port if port is None else port), _Handler
        )
        self.server.engine = engine
        self.server.policy = policy
        self.server.salt = salt
        self.server.path = policy.callback_path
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

    def start(self) -> CallbackServer:
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

    def __enter__(self) -> CallbackServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
