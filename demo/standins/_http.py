"""Shared plumbing for HTTP stand-ins: a threaded server on 127.0.0.1 with an ephemeral port, and faults on demand.

A stand-in is started with ``start()`` (or as a context manager), exposes ``.url`` and ``.stop()``, and can be told
to fail: ``server.faults.add("http500", times=1, match={"page_no": "2"})``. Fault kinds understood by every
stand-in: ``http500`` (HTTP 500), ``http503``, ``timeout`` (answer only after ``delay`` seconds), ``malformed``
(truncated JSON), ``throttle`` (the system's own throttling answer), ``reset`` (close the connection).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Fault:
    kind: str
    times: int = 1  # how many requests it hits; -1 = until cleared
    match: dict = field(default_factory=dict)  # request parameters that must match (string values)
    delay: float = 3.0  # for "timeout"


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.log: list[tuple[str, dict]] = []  # faults that fired: (kind, params)

    def add(self, kind: str, *, times: int = 1, match: dict | None = None, delay: float = 3.0) -> None:
        with self._lock:
            self._faults.append(Fault(kind, times, {k: str(v) for k, v in (match or {}).items()}, delay))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, params: dict) -> Fault | None:
        """The first fault matching this request (consumes one of its ``times``)."""
        with self._lock:
            for fault in self._faults:
                if all(str(params.get(k)) == v for k, v in fault.match.items()):
                    if fault.times > 0:
                        fault.times -= 1
                        if fault.times == 0:
                            self._faults.remove(fault)
                    self.log.append((fault.kind, dict(params)))
                    return fault
        return None


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "yidi-standin/1.0"
    # Headers and body go out in two writes; with keep-alive, Nagle + delayed ACK would hold the body ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def send_body(self, status: int, body: bytes, content_type: str = "application/json;charset=UTF-8",
                  headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def apply_fault(self, fault: Fault, throttle_body: bytes | None = None, throttle_status: int = 200) -> bool:
        """Answer with the fault; returns True when the request is done."""
        if fault.kind == "http500":
            self.send_body(500, b'{"code":"internal_server_error","message":"stand-in: injected 500"}')
        elif fault.kind == "http503":
            self.send_body(503, b"<html><body>503 Service Unavailable</body></html>", "text/html")
        elif fault.kind == "timeout":
            time.sleep(fault.delay)
            self.send_body(504, b"{}")
        elif fault.kind == "malformed":
            self.send_body(200, b'{"trades_sold_increment_get_response": {"total_results": 3, "trades": {"tr')
        elif fault.kind == "throttle":
            self.send_body(throttle_status, throttle_body or b'{"code":"too_many_requests"}',
                           headers={"Retry-After": "1"})
        elif fault.kind == "reset":
            self.close_connection = True
            self.connection.close()
        else:
            return False
        return True


class StandinServer:
    """Base: subclasses set ``handler_class`` (a QuietHandler subclass reading ``self.server.standin``)."""

    handler_class: type[QuietHandler] = QuietHandler

    def __init__(self) -> None:
        self.faults = Faults()
        self.requests = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("stand-in not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandinServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler_class)
        self._httpd.daemon_threads = True
        self._httpd.standin = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
