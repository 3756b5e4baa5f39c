"""Kuaidi100 pushing at once, as it does after a busy sorting centre scans: many signed pushes over real loopback
HTTP, each on its own connection, sent together (asyncio, one thread). For the receiver's load test and the
``callbacks`` benchmark. The push body is the published form (``param`` JSON + ``sign`` = md5(param + salt)).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode, urlsplit

from connectors.kuaidi100 import push_sign
from yidi.workdays import BUSINESS_TZ


def signed_push(num: str, com: str, checkpoint_at: datetime, salt: str, *, context: str = "【重庆市】快件已揽收"
                ) -> bytes:
    """The form body Kuaidi100 POSTs for one waybill with one checkpoint (times in China time, as published)."""
    stamp = checkpoint_at.astimezone(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M:%S")
    param = json.dumps({
        "status": "polling", "billstatus": "got", "message": "", "autoCheck": "0", "comOld": "", "comNew": "",
        "lastResult": {"message": "ok", "nu": num, "ischeck": "0", "com": com, "status": "200", "state": "0",
                       "data": [{"time": stamp, "ftime": stamp, "context": context}]},
    }, ensure_ascii=False, separators=(",", ":"))  # fmt: skip
    return urlencode({"param": param, "sign": push_sign(param, salt)}).encode("utf-8")


@dataclass
class Sent:
    status: int | None  # HTTP status, None when the connection failed
    seconds: float
    error: str | None = None  # e.g. "ConnectionResetError"
    body: bytes = b""


async def _post(host: str, port: int, path: str, body: bytes, timeout: float) -> Sent:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-www-form-urlencoded"
                f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        writer.write(head + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        if not status_line:
            return Sent(None, time.perf_counter() - started, "closed without an answer")
        payload = rest.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in rest else b""
        return Sent(int(status_line.split()[1]), time.perf_counter() - started, body=payload)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        return Sent(None, time.perf_counter() - started, type(exc).__name__)


async def _send_all(url: str, bodies: list[bytes], concurrency: int, timeout: float) -> list[Sent]:
    parts = urlsplit(url)
    gate = asyncio.Semaphore(concurrency)

    async def one(body: bytes) -> Sent:
        async with gate:
            return await _post(parts.hostname, parts.port, parts.path, body, timeout)

    return list(await asyncio.gather(*(one(b) for b in bodies)))


def push_all(url: str, bodies: list[bytes], *, concurrency: int | None = None, timeout: float = 30.0) -> list[Sent]:
    """POST every body, ``concurrency`` connections open at once (default: all of them); results in order."""
    return asyncio.run(_send_all(url, bodies, concurrency or len(bodies), timeout))
