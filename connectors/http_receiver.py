"""What our inbound HTTP receivers share (the Kuaidi100 push receiver, the service inbox): uvicorn serving one
Starlette app on a socket we bind ourselves, either in a background thread (``with Receiver(...) as srv``) or in
the foreground (``serve_forever()``, which stops gracefully on Ctrl-C and SIGTERM, what service managers send);
a deadline on each request's line and headers; a body read with a size limit.

A receiver subclass builds its app and calls ``_serve(app, ...)`` in its constructor; ``_after_serving()`` runs
once the server has stopped (the push receiver applies what landed there).
"""

from __future__ import annotations

import socket
import threading

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_SECONDS = 10.0  # request line and headers must arrive within this (half-sent requests are cut)
KEEP_ALIVE_SECONDS = 5  # an idle kept-alive connection is closed after this


class TooLarge(Exception):
    """The body is over the receiver's limit (answer 413)."""


class HeaderDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's line and headers: a client that sends half a
    request (or nothing) is answered 408 and closed, instead of holding the connection forever."""

    header_timeout = HEADER_TIMEOUT_SECONDS

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(None)

    def _arm(self, scope) -> None:
        self._deadline_scope = scope
        self._deadline = self.loop.call_later(self.header_timeout, self._check_deadline)

    def _check_deadline(self) -> None:
        if self.transport.is_closing():
            return
        busy = self.cycle is not None and not self.cycle.response_complete
        if busy or self.scope is not self._deadline_scope:
            self._arm(self.scope)  # a request arrived (or is being answered) since: watch the next one
            return
        try:
            body = b'{"result":false,"returnCode":"408","message":"request timeout"}'
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
                                 + body)  # fmt: skip
        finally:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
        super().connection_lost(exc)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or ``TooLarge`` as soon as it (or its declared length) passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class ThreadedReceiver:
    """uvicorn on our own socket, in a thread or in the foreground; see the module's text."""

    thread_name = "receiver"
    path = ""  # what ``url`` ends with
    stop_timeout = 30.0  # seconds ``stop()`` waits for the requests under way

    def _serve(self, app: Starlette, *, host: str, port: int, backlog: int = 256,
               protocol: type[H11Protocol] = HeaderDeadlineH11, lifespan: str = "off") -> None:  # fmt: skip
        self.socket = socket.create_server((host, port), backlog=backlog, reuse_port=False)
        self.config = uvicorn.Config(
            app, http=protocol, lifespan=lifespan, loop="asyncio", log_level="warning", access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS, timeout_graceful_shutdown=5, backlog=backlog,
        )  # fmt: skip
        self.server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None

    def _after_serving(self) -> None:
        """Runs once the server has stopped, in the foreground or the background."""

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://{host}:{port}{self.path}"

    def start(self):
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                        name=self.thread_name, daemon=True)  # fmt: skip
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the {self.thread_name} receiver did not start")
            self._thread.join(0.01)
        return self

    def serve_forever(self) -> None:
        """In the foreground: uvicorn stops gracefully on Ctrl-C and SIGTERM (what service managers send)."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()
        self._after_serving()

    def stop(self) -> None:
        """Stop accepting, finish the requests under way, then ``_after_serving()``."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self.stop_timeout)
        self.socket.close()
        self._after_serving()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
