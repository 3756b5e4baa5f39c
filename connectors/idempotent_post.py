"""POSTing a create request exactly once: the same ``Idempotency-Key`` on every try, retries only where a retry
is safe and useful.

Retried: connection errors (including a connection dropped before the answer: the provider may have created the
resource, and the replay with the same key returns it), timeouts, 429 (honouring ``Retry-After``) and 5xx.
Not retried: other 4xx, which say the request itself is wrong. Backoff is exponential with jitter.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass

import requests


class ProviderRejected(RuntimeError):
    """The provider refused the request (4xx other than 429): retrying the same request cannot help."""

    def __init__(self, status: int, code: str, message: str):
        self.status, self.code = status, code
        super().__init__(f"HTTP {status} {code}: {message}")


class ProviderUnavailable(RuntimeError):
    """Every try failed transiently (5xx, 429, timeout, connection lost); safe to try again later, same key."""


@dataclass(frozen=True)
class PostResult:
    status: int
    body: dict
    attempts: int
    replayed: bool  # the provider answered from its idempotency store (the resource existed already)


def post_idempotent(
    session: requests.Session,
    url: str,
    payload: dict,
    *,
    idempotency_key: str,
    token: str | None,
    timeout: float,
    attempts: int,
    backoff_seconds: float = 0.5,
    max_backoff_seconds: float = 10.0,
) -> PostResult:
    headers = {"Idempotency-Key": idempotency_key, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    last_problem = "no attempt made"
    for attempt in range(1, attempts + 1):
        retry_after: float | None = None
        try:
            response = session.post(url, json=payload, headers=headers, timeout=timeout)
        except requests.Timeout:
            last_problem = f"timed out after {timeout:g}s"
        except requests.ConnectionError as exc:
            last_problem = f"connection failed or dropped before the answer ({type(exc).__name__})"
        else:
            if response.status_code < 300:
                try:
                    body = response.json()
                except ValueError:
                    last_problem = f"HTTP {response.status_code} with a body that is not JSON"
                else:
                    replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
                    return PostResult(response.status_code, body, attempt, replayed)
            elif response.status_code == 429 or response.status_code >= 500:
                last_problem = f"HTTP {response.status_code}"
                if response.status_code == 429:
                    try:
                        retry_after = float(response.headers.get("Retry-After", ""))
                    except ValueError:
                        retry_after = None
            else:
                try:
                    body = response.json()
                except ValueError:
                    body = {}
                raise ProviderRejected(
                    response.status_code,
                    str(body.get("error") or "rejected"),
                    str(body.get("message") or response.text[:200]),
                )
        if attempt < attempts:
            pause = retry_after if retry_after is not None else backoff_seconds * 2 ** (attempt - 1)
            time.sleep(min(pause, max_backoff_seconds) * (1 + random.random() * 0.25))
    raise ProviderUnavailable(f"{url}: {attempts} tries failed; last: {last_problem}")


class IdempotentJsonClient:
    """What every idempotent JSON gateway client shares: base URL, bearer token from an environment variable,
    retry settings, and one connection pool per thread (calls may run in a thread pool)."""

    token_env: str = ""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
    ):
        self.base_url = base_url.rstrip("/")
        self.token = token if token is not None else os.environ.get(self.token_env)
        self.timeout, self.attempts, self.backoff_seconds = timeout, attempts, backoff_seconds
        self._local = threading.local()
        self._sessions: list[requests.Session] = []

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            self._sessions.append(session)
        return session

    def close(self) -> None:
        for session in self._sessions:
            session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
