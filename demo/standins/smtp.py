"""A local SMTP server (``aiosmtpd``) on 127.0.0.1 that keeps every message it receives, for the demo and tests.

``SmtpStandIn().start()`` binds an ephemeral port (``.host``/``.port``); ``stop()`` takes it down and ``start()``
brings it back on the same port, so a sender configured for it sees a relay outage and its recovery. Received
messages survive restarts in ``.messages`` (parsed ``email.message.EmailMessage`` objects).
"""

from __future__ import annotations

import threading
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller


class _KeepMessages:
    def __init__(self, sink: list, lock: threading.Lock):
        self.sink, self.lock = sink, lock

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd hook name
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        with self.lock:
            self.sink.append(message)
        return "250 Message accepted for delivery"


class _EphemeralPortController(Controller):
    """aiosmtpd's Controller, but port 0 means "pick a free port" and the chosen port is kept for restarts."""

    def _create_server(self):
        async def create():
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context,
                reuse_address=True,
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return create()


class SmtpStandIn:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.messages: list = []
        self._lock = threading.Lock()
        self._controller: _EphemeralPortController | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> SmtpStandIn:
        if self._controller is None:
            # A controller's event loop is closed when it stops, so each start gets a fresh one.
            controller = _EphemeralPortController(
                _KeepMessages(self.messages, self._lock), hostname=self.host, port=self.port, ready_timeout=10
            )
            controller.start()
            self.port = controller.port
            self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list:
        with self._lock:
            return list(self.messages)

    def __enter__(self) -> SmtpStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def start(port: int = 0) -> SmtpStandIn:
    return SmtpStandIn(port=port).start()
