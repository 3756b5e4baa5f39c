"""The Kuaidi100 push receiver behind ``yidi tracking callbacks``: the connector's HTTP server
(``connectors.kuaidi100_push``: signature check, body limits, answers in Kuaidi100's format) wired to the
tracking store (``tasks.tracking.pushes.receive_push``: land the push, then apply it like a poll).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime
from functools import partial

from sqlalchemy import Engine

from connectors.kuaidi100_push import PushReceiver
from tasks.tracking.pushes import receive_push
from yidi.bulk import utc_now
from yidi.settings import TrackingPolicy


def push_receiver(
    engine: Engine,
    policy: TrackingPolicy,
    salt: str,
    *,
    host: str | None = None,
    port: int | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> PushReceiver:
    """The receiver on the policy's host, port and path (or those given), landing pushes in this store."""
    return PushReceiver(
        partial(receive_push, engine, policy),
        salt,
        host=host or policy.callback_host,
        port=policy.callback_port if port is None else port,
        path=policy.callback_path,
        clock=clock,
    )


def serve_until_stopped(receiver: PushReceiver) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM (service managers stop with SIGTERM: finish, close)."""

    def _stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        receiver.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.server.server_close()
