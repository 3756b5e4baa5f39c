"""A small threaded JSON-over-HTTP server on 127.0.0.1 for stand-ins of APIs that create things once per
``Idempotency-Key`` (carrier e-waybills, supplier purchase orders), with faults on demand.

Faults (``handle.fail_next(kind, times=1, delay=...)``), applied to the next matching POSTs in order:

- ``"5xx"``: answer 503 without creating anything;
- ``"429"``: answer 429 with ``Retry-After: 0`` without creating anything;
- ``"timeout"``: wait ``delay`` seconds (longer than the client's timeout), then answer 503 without creating;
- ``"lost"``: create the resource, then drop the connection without answering (the response is lost after the
  provider created it: a retry with the same key must get the same resource back).

Replays: a POST with a key already seen and the same body gets the stored response again (200 and
``Idempotent-Replayed: true``); the same key with a different body gets 409 ``idempotency_key_reused``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULT_KINDS = ("5xx", "429", "timeout", "lost")


@dataclass
class Fault:
    kind: str
    delay: float = 0.0


@dataclass
class StandinState:
    """What the stand-in holds: created resources by key, the request log, pending faults."""

    token: str | None = None
    created: dict[str, dict] = field(default_factory=dict)  # idempotency key -> stored response body
    bodies: dict[str, str] = field(default_factory=dict)  # idempotency key -> canonical request body
    requests: list[dict] = field(default_factory=list)  # every POST seen: key, path, outcome
    faults: deque[Fault] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler sleeping through a "timeout" fault must not hold up stop()
    allow_reuse_address = True


@dataclass
class StandinHandle:
    """A running stand-in: ``url``, ``stop()``, ``fail_next(...)``, and what it created."""

    url: str
    state: StandinState
    _server: _Server
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def fail_next(self, kind: str, times: int = 1, delay: float = 2.0) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        with self.state.lock:
            for _ in range(times):
                self.state.faults.append(Fault(kind, delay))

    @property
    def created(self) -> dict[str, dict]:
        with self.state.lock:
            return dict(self.state.created)

    @property
    def requests(self) -> list[dict]:
        with self.state.lock:
            return list(self.state.requests)

    def __enter__(self) -> StandinHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


Creator = Callable[[dict, StandinState], tuple[int, dict]]
Getter = Callable[[str, StandinState], tuple[int, dict]]


def start_standin(
    create_path: str,
    creator: Creator,
    *,
    token: str | None = None,
    getter: Getter | None = None,
    name: str = "standin",
) -> StandinHandle:
    """Serve ``POST create_path`` with ``creator(body, state) -> (status, response)`` on an ephemeral port.

    ``creator`` validates the body and returns 4xx for a bad request (nothing stored) or 201 with the created
    resource; the server stores 2xx responses under the idempotency key.
    """
    state = StandinState(token=token)

    class Handler(BaseHTTPRequestHandler):
        server_version = f"yidi-{name}/1.0"
        protocol_version = "HTTP/1.1"  # keep-alive: a run of thousands of requests reuses its connection
        disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart (delayed ACK)

        def log_message(self, *args) -> None:  # quiet: tests and demo read the state, not stderr
            pass

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            if state.token is None:
                return True
            return self.headers.get("Authorization") == f"Bearer {state.token}"

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if not self._authorised():
                self._send(401, {"error": "unauthorized", "message": "missing or wrong bearer token"})
                return
            if getter is None:
                self._send(404, {"error": "not_found", "message": self.path})
                return
            with state.lock:
                status, payload = getter(self.path, state)
            self._send(status, payload)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            key = self.headers.get("Idempotency-Key")
            if self.path.split("?")[0] != create_path:
                self._send(404, {"error": "not_found", "message": self.path})
                return
            if not self._authorised():
                self._send(401, {"error": "unauthorized", "message": "missing or wrong bearer token"})
                return
            if not key or len(key) > 100:
                self._send(400, {"error": "invalid_request", "message": "Idempotency-Key header (≤100) required"})
                return
            try:
                body = json.loads(raw.decode("utf-8"))
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
            except (UnicodeDecodeError, ValueError) as exc:
                self._send(400, {"error": "invalid_request", "message": f"body is not JSON: {exc}"})
                return
            canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
            with state.lock:
                fault = state.faults.popleft() if state.faults else None
                if fault is not None and fault.kind != "lost":
                    status, payload, outcome = 0, {}, fault.kind  # refused before anything is created
                elif key in state.created:
                    if state.bodies[key] == canonical:
                        status, payload, outcome = 200, state.created[key], "replay"
                    else:
                        status, outcome = 409, "409"
                        payload = {"error": "idempotency_key_reused", "message": "key used with another body"}
                else:
                    status, payload = creator(body, state)
                    if 200 <= status < 300:
                        state.created[key] = payload
                        state.bodies[key] = canonical
                    outcome = str(status)
                if fault is not None and fault.kind == "lost":
                    outcome = f"lost after {outcome}"
                state.requests.append({"key": key, "path": self.path, "outcome": outcome})
            if fault is None:
                self._send(status, payload, {"Idempotent-Replayed": "true"} if outcome == "replay" else None)
            elif fault.kind == "5xx":
                self._send(503, {"error": "unavailable", "message": "system busy, try again"})
            elif fault.kind == "429":
                self._send(429, {"error": "rate_limited", "message": "slow down"}, {"Retry-After": "0"})
            elif fault.kind == "timeout":
                time.sleep(fault.delay)
                try:
                    self._send(503, {"error": "timeout", "message": "upstream timed out"})
                except OSError:
                    pass
            else:  # "lost": the resource exists now; the client never hears about it
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name=f"{name}-standin", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    return StandinHandle(url=f"http://{host}:{port}", state=state, _server=server, _thread=thread)
