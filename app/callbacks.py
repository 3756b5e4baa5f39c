"""The Kuaidi100 push receiver behind ``yidi tracking callbacks``: the connector's HTTP server
(``connectors.kuaidi100_push``: uvicorn + Starlette, signature check, limits and timeouts, answers in Kuaidi100's
format) wired to the tracking store (``tasks.tracking.pushes``: land each push in one short transaction, apply
what landed in batches afterwards).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial

from sqlalchemy import Engine

from connectors.kuaidi100_push import PushReceiver
from tasks.tracking.pushes import APPLY_BATCH, apply_landed_batch, receive_push
from yidi.bulk import utc_now
from yidi.tracking_policy import TrackingPolicy


def push_receiver(
    engine: Engine,
    policy: TrackingPolicy,
    salt: str,
    *,
    host: str | None = None,
    port: int | None = None,
    clock: Callable[[], datetime] = utc_now,
    apply_every: float = 1.0,
) -> PushReceiver:
    """The receiver on the policy's host, port and path (or those given), landing pushes in this store."""
    return PushReceiver(
        partial(receive_push, engine, policy),
        salt,
        host=host or policy.callback_host,
        port=policy.callback_port if port is None else port,
        path=policy.callback_path,
        clock=clock,
        apply=lambda: apply_landed_batch(engine, policy, clock()),
        apply_every=apply_every,
        apply_batch=APPLY_BATCH,  # a full batch waiting is applied without waiting for the burst to quiet
    )


def serve_until_stopped(receiver: PushReceiver) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM (service managers stop with SIGTERM): uvicorn finishes the
    requests under way, the receiver applies what landed, then the socket closes."""
    receiver.serve_forever()
