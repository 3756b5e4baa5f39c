"""Request pacing for rate-limited external APIs: a local pacer under a shared Prefect rate limit.

Two layers, each doing what it is good at:

* The **Prefect global concurrency limit** (``prefect gcl create NAME --limit L --slot-decay-per-second R``) is the
  budget shared by every process and flow run that talks to the API. Slots are taken in chunks (one server
  round trip per ``chunk`` requests), so the Prefect server is not asked once per request.
* The **local pacer** spaces this process's requests evenly at ``rate × pace_fraction`` per second. A token
  bucket alone allows a burst of ``L`` plus ``R`` in the same second; spacing keeps any one-second window at or
  under R, with room for network jitter.

A pacer never "catches up" after falling behind: that would be a burst.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

log = logging.getLogger(__name__)


class RatePacer:
    def __init__(
        self,
        rate_per_second: float,
        *,
        limit_name: str | None = None,
        chunk: int | None = None,
        pace_fraction: float = 0.95,
        acquire_timeout_seconds: float | None = 300,
        clock=time.monotonic,
        sleep=time.sleep,
    ):
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        self.rate = float(rate_per_second)
        self.interval = 1.0 / (self.rate * pace_fraction)
        self.limit_name = limit_name
        # A quarter second's worth per Prefect round trip: few calls, and small enough to share fairly.
        self.chunk = max(1, int(chunk or self.rate / 4))
        self.acquire_timeout = acquire_timeout_seconds
        self._clock, self._sleep = clock, sleep  # a simulated clock in tests: pacing without waiting
        self._lock = threading.Lock()
        self._next_at = 0.0
        self._reservoir = 0
        self._window_max = max(1, int(self.rate * pace_fraction))
        self._recent: deque[float] = deque()  # send times in the trailing second
        self.sent = 0
        self.limit_acquisitions = 0

    def __call__(self) -> None:
        self.acquire()

    def acquire(self) -> None:
        """Block until this process may send one request."""
        with self._lock:
            if self.limit_name and self._reservoir <= 0:
                self._take_from_shared_limit()
            self._reservoir -= 1
            now = self._clock()
            slot = max(self._next_at, now)
            # Never more than the allowed count in any trailing second, whatever the spacing did.
            while len(self._recent) >= self._window_max:
                slot = max(slot, self._recent[0] + 1.0)
                self._recent.popleft()
            self._recent.append(slot)
            self._next_at = slot + self.interval
            self.sent += 1
        wait = slot - self._clock()
        if wait > 0:
            self._sleep(wait)

    def _take_from_shared_limit(self) -> None:
        from prefect.concurrency.sync import rate_limit

        rate_limit(self.limit_name, occupy=self.chunk, timeout_seconds=self.acquire_timeout, strict=False)
        self._reservoir = self.chunk
        self.limit_acquisitions += 1
