"""The Kuaidi100 push receiver's protocol: an HTTP server that verifies, lands, answers as published, and applies
what landed in batches afterwards.

Kuaidi100 POSTs form fields ``param`` and ``sign`` (``md5(param + salt)``) to the callback URL given at
subscription and expects ``{"result":true,"returnCode":"200","message":"成功"}``; anything else makes it push
again later. So:

* an unsigned, wrongly signed or malformed push, or one with a checkpoint dated outside a plausible window (a
  checkpoint "from 1970"), is refused (HTTP 400, ``result: false``), logged without its content (it may carry
  names and phones), and nothing of it is kept;
* a verified push is handed to the injected ``land(push)`` (one short transaction; it retries on a busy
  database) and answered with success only after ``land`` returned, so an acknowledged push is never lost; if
  ``land`` raises, the answer is "failed" (HTTP 500) and Kuaidi100 pushes again;
* what landed is applied afterwards, in batches, by the injected ``apply()`` (every ``apply_every`` seconds
  while pushes arrive, and once more when the server stops; ``poll-carriers`` applies anything left too).

The server is uvicorn (asyncio, one event loop: a connection costs a socket, not a thread) with Starlette routing.
Landing runs in a bounded thread pool. Limits: a listen backlog, a body limit (413), a deadline for the request
line and headers of each request and one for its body (408), an idle keep-alive timeout; a malformed request
(``Content-Length: abc``) gets uvicorn's 400. What landing and applying mean (the tracking store) is the caller's:
this module imports no tasks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.http_receiver import (
    HEADER_TIMEOUT_SECONDS,
    HeaderDeadlineH11,
    ThreadedReceiver,
    TooLarge,
    read_body,
)
from connectors.kuaidi100 import PUSH_OK, PushNotice, PushRejected, verify_push
from yidi.bulk import utc_now

log = logging.getLogger("yidi.callbacks")
MAX_BODY_BYTES = 2 * 1024 * 1024  # a push for one waybill is a few KB; anything huge is not Kuaidi100
BODY_TIMEOUT_SECONDS = 10.0  # and the body within this after them
BACKLOG = 1024  # connections the kernel queues before we accept them (Kuaidi100 pushes in bursts)
LAND_THREADS = 12  # landings at once (each holds a database connection for one short transaction)
# A checkpoint older than this before now (or later than the future limit) is not a real carrier event.
PLAUSIBLE_PAST = timedelta(days=400)
PLAUSIBLE_FUTURE = timedelta(days=1)


@dataclass(frozen=True)
class Push:
    """A verified push: the ``param`` text as received, what it says, and when it arrived."""

    param: str
    notice: PushNotice
    received_at: datetime


Land = Callable[[Push], str]  # -> "landed" | "duplicate"
Apply = Callable[[], int]  # applies a batch of landed pushes -> how many


def implausible_checkpoint(notice: PushNotice, now: datetime) -> str | None:
    """Why a checkpoint's time cannot be a carrier event received ``now`` (None when all are plausible)."""
    for checkpoint in notice.result.checkpoints if notice.result else ():
        when = checkpoint.time
        if when.tzinfo is None:
            when = when.replace(tzinfo=now.tzinfo)
        if not now - PLAUSIBLE_PAST <= when <= now + PLAUSIBLE_FUTURE:
            return (f"checkpoint time {checkpoint.time_text!r} outside the plausible window "
                    f"({PLAUSIBLE_PAST.days} days back to {PLAUSIBLE_FUTURE.days} day ahead)")  # fmt: skip
    return None


def _answer(status: int, body: dict) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type="application/json;charset=UTF-8")


class PushReceiver(ThreadedReceiver):
    """``with PushReceiver(land, salt, host=…, port=…, path=…, apply=…) as srv: srv.url`` — or
    ``serve_forever()`` in the foreground (Ctrl-C or SIGTERM stop it gracefully)."""

    thread_name = "kuaidi100-callbacks"
    stop_timeout = 60.0

    def __init__(
        self,
        land: Land,
        salt: str,
        *,
        host: str,
        port: int,
        path: str,
        clock: Callable[[], datetime] = utc_now,
        apply: Apply | None = None,
        apply_every: float = 1.0,
        apply_batch: int = 500,
        backlog: int = BACKLOG,
        land_threads: int = LAND_THREADS,
        header_timeout: float = HEADER_TIMEOUT_SECONDS,
        body_timeout: float = BODY_TIMEOUT_SECONDS,
    ):
        self.land, self.apply, self.salt, self.path, self.clock = land, apply, salt, path, clock
        self.apply_every, self.land_threads, self.body_timeout = apply_every, land_threads, body_timeout
        self.counts: Counter = Counter()
        self._apply_lock = threading.Lock()
        self._landed_since_apply = 0
        self.apply_batch = apply_batch
        self._first_pending = self._last_landed = 0.0  # monotonic times of the burst being landed
        protocol = type("DeadlineH11", (HeaderDeadlineH11,), {"header_timeout": header_timeout})
        self._serve(self._app(), host=host, port=port, backlog=backlog, protocol=protocol, lifespan="on")

    # --- the application ------------------------------------------------------------------------------------

    def _app(self) -> Starlette:
        async def receive(request: Request) -> JSONResponse:
            return await self._receive(request)

        async def health(_request: Request) -> JSONResponse:
            return _answer(200, {"ok": True, "counts": dict(self.counts)})

        async def not_found(_request: Request, _exc) -> JSONResponse:
            return _answer(404, {"result": False, "returnCode": "404", "message": "not found"})

        async def not_allowed(_request: Request, _exc) -> JSONResponse:
            return _answer(405, {"result": False, "returnCode": "405", "message": "method not allowed"})

        routes = [Route(self.path.rstrip("/") or "/", receive, methods=["POST"]), Route("/health", health)]
        if self.path.rstrip("/"):
            routes.append(Route(self.path.rstrip("/") + "/", receive, methods=["POST"]))
        return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed},
                         lifespan=self._lifespan)  # fmt: skip

    def _lifespan(self, _app):
        receiver = self

        class _Lifespan:
            async def __aenter__(self):
                receiver._land_limiter = anyio.CapacityLimiter(receiver.land_threads)
                receiver._applier = asyncio.create_task(receiver._apply_loop()) if receiver.apply else None

            async def __aexit__(self, *exc):
                if receiver._applier is not None:
                    receiver._applier.cancel()
                if receiver.apply:
                    await anyio.to_thread.run_sync(receiver.apply_pending)  # what landed last is applied too

        return _Lifespan()

    async def _receive(self, request: Request) -> JSONResponse:
        try:
            raw = await asyncio.wait_for(read_body(request, MAX_BODY_BYTES), self.body_timeout)
        except TooLarge:
            return self._reject(request, f"body over {MAX_BODY_BYTES} bytes", status=413)
        except TimeoutError:
            return self._reject(request, "body not received in time", status=408)
        if not raw:
            return self._reject(request, "empty body")
        try:
            form = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return self._reject(request, "body is not UTF-8 form data")
        param = (form.get("param") or [None])[0]
        sign = (form.get("sign") or [None])[0]
        try:
            notice = verify_push(param, sign, self.salt)
        except PushRejected as exc:
            return self._reject(request, str(exc))
        now = self.clock()
        why = implausible_checkpoint(notice, now)
        if why:
            return self._reject(request, why)
        try:
            became = await anyio.to_thread.run_sync(self.land, Push(param, notice, now), limiter=self._land_limiter)
        except Exception:  # noqa: BLE001 - answer "failed" so Kuaidi100 pushes again
            log.exception("could not land a push for waybill %s", notice.num)
            self.counts["store_failed"] += 1
            return _answer(500, {"result": False, "returnCode": "500", "message": "保存失败，请稍后重推"})
        self.counts["duplicate" if became == "duplicate" else "landed"] += 1
        if became != "duplicate":
            self._last_landed = time.monotonic()
            if not self._landed_since_apply:
                self._first_pending = self._last_landed
            self._landed_since_apply += 1
        return _answer(200, PUSH_OK)

    def _reject(self, request: Request, reason: str, status: int = 400) -> JSONResponse:
        self.counts["rejected"] += 1
        client = request.client.host if request.client else "?"
        log.warning("rejected push from %s: %s", client, reason)
        return _answer(status, {"result": False, "returnCode": str(status), "message": f"rejected: {reason}"})

    # --- applying -------------------------------------------------------------------------------------------

    def _time_to_apply(self, now: float) -> bool:
        """Apply when the burst has quieted (nothing landed for ``apply_every`` s) or a full batch is waiting,
        so applying does not compete with landing for the database (PostgreSQL row locks, SQLite's one writer);
        a steady trickle that never quiets is applied after 10 × ``apply_every`` at the latest."""
        pending = self._landed_since_apply
        return pending > 0 and (now - self._last_landed >= self.apply_every or pending >= self.apply_batch
                                or now - self._first_pending >= 10 * self.apply_every)

    async def _apply_loop(self) -> None:
        tick = min(self.apply_every, 0.1)
        while True:
            await asyncio.sleep(tick)
            if self._time_to_apply(time.monotonic()):
                self._landed_since_apply = 0
                try:
                    await anyio.to_thread.run_sync(self.apply_pending)
                except Exception:  # noqa: BLE001 - landed pushes stay landed; the next round (or a poll) applies
                    log.exception("applying landed pushes failed; they stay landed")

    def apply_pending(self) -> int:
        """Apply every landed push now, in batches (also what the background loop calls); returns how many."""
        if self.apply is None:
            return 0
        total = 0
        with self._apply_lock:
            while applied := self.apply():
                total += applied
        self.counts["applied"] += total
        return total

    # --- running --------------------------------------------------------------------------------------------

    def _after_serving(self) -> None:
        self.apply_pending()  # the server's own last round may have been cut short: nothing stays landed
