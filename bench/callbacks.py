"""callbacks: N signed Kuaidi100 pushes from C concurrent clients over real loopback HTTP into the push receiver.

Ours: ``app.callbacks.push_receiver`` — uvicorn + Starlette with its limits and deadlines, each push landed in one
short transaction (``tasks.tracking.pushes.receive_push``, retried on a busy database) before it is acknowledged,
applied in batches while pushes arrive and once more at stop. Baseline: the same landing and the same batch apply
behind a bare ASGI handler on uvicorn's defaults (no routing, no limits, no deadlines, no checkpoint window).
Each run ends only when every push is applied; a push that is not acknowledged, a reset connection or a receipt
left unapplied makes the run fail. ``ratio`` = ours / baseline (target 1.5).

Figures (``extra``): pushes per second, p50/p99 latency of an acknowledgement, resets and unapplied pushes (0),
and the concurrent clients held. The client (asyncio, one connection per push) runs in its own process. Cases:
SQLite and PostgreSQL (skipped when none answers). ``BENCH_CALLBACK_CLIENTS`` sets C (default 300).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.postgres import new_schema, schema_url

NAME = "callbacks"
DEFAULT_N = 3_000
TARGET = 1.5
CASES = ["sqlite", "postgresql"]
CLIENTS = int(os.environ.get("BENCH_CALLBACK_CLIENTS", "300"))
BASELINE = "the same landing and batch apply behind a bare ASGI handler on uvicorn's defaults"
SALT = "bench-salt"
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=30)


def prepare(n: int, workdir: Path, case: str | None):
    from demo.tracking import make_shipped_orders
    from yidi.db import init_db, make_engine

    if case == "sqlite":
        template = workdir / "template.db"
        engine = make_engine(f"sqlite:///{template}")
        url = None
    else:
        url = schema_url(new_schema("bench", migrated=False))
        engine = make_engine(url)
        template = None
    init_db(engine)
    with engine.begin() as conn:
        ships = make_shipped_orders(conn, n, shipped_at=T0, carriers=["yunda"])
    engine.dispose()
    return {"case": case, "template": template, "url": url, "workdir": workdir,
            "waybills": ships["waybill_no"].tolist(), "n": n}  # fmt: skip


def _engine(ctx):
    from yidi.db import make_engine

    if ctx["case"] == "sqlite":
        target = ctx["workdir"] / f"run-{uuid.uuid4().hex[:8]}.db"
        shutil.copy(ctx["template"], target)
        return make_engine(f"sqlite:///{target}")
    return make_engine(ctx["url"])


def _bodies(ctx) -> list[bytes]:
    from demo.standins.kuaidi100_pushes import signed_push

    run = uuid.uuid4().hex[:6]  # each run's pushes are new content (not duplicates of an earlier run's)
    return [signed_push(num, "yunda", T0 + timedelta(hours=2), SALT, context=f"【重庆市】快件已揽收 {run}")
            for num in ctx["waybills"]]  # fmt: skip


def _client(url: str, bodies: list[bytes], clients: int, conn) -> None:
    from demo.standins.kuaidi100_pushes import push_all

    started = time.perf_counter()
    sent = push_all(url, bodies, concurrency=clients, timeout=120)
    conn.send((time.perf_counter() - started, [(s.status, s.seconds, s.error) for s in sent]))
    conn.close()


def _drive(url: str, bodies: list[bytes]) -> tuple[float, list]:
    fork = multiprocessing.get_context("fork")
    parent, child = fork.Pipe(duplex=False)
    proc = fork.Process(target=_client, args=(url, bodies, CLIENTS, child))
    proc.start()
    child.close()
    result = parent.recv()
    proc.join()
    return result


def _check_and_record(ctx, label: str, engine, seconds: float, sent: list) -> None:
    from sqlalchemy import func, select

    from yidi.schema_tracking import tracking_push_receipts

    with engine.connect() as conn:
        unapplied = conn.execute(select(func.count()).select_from(tracking_push_receipts)
                                 .where(tracking_push_receipts.c.status == "landed")).scalar()  # fmt: skip
    latencies = sorted(s for status, s, _ in sent if status == 200)
    figures = {
        "pushes": len(sent), "acknowledged": len(latencies), "resets": sum(1 for *_, e in sent if e),
        "unapplied": unapplied, "clients": min(CLIENTS, len(sent)), "seconds": round(seconds, 3),
        "pushes_per_second": round(len(latencies) / seconds, 1) if seconds else None,
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1)
        if latencies else None,
    }  # fmt: skip
    (ctx["workdir"] / f"{label}.json").write_text(json.dumps(figures))
    if figures["acknowledged"] != len(sent) or figures["resets"] or unapplied:
        raise RuntimeError(f"{label}: pushes lost or unapplied: {figures}")


def ours(ctx) -> None:
    from app.callbacks import push_receiver
    from yidi.settings import get_settings

    engine = _engine(ctx)
    policy = get_settings().tracking
    bodies = _bodies(ctx)
    with push_receiver(engine, policy, SALT, port=0, clock=lambda: NOW, apply_every=0.5) as receiver:
        seconds, sent = _drive(receiver.url, bodies)
    _check_and_record(ctx, "ours", engine, seconds, sent)  # the receiver applied the rest when it stopped


def _bare_app(engine, policy):
    """The same landing as ours, as a bare ASGI callable: read, verify, land, answer."""
    from urllib.parse import parse_qs

    import anyio

    from connectors.kuaidi100 import PUSH_OK, PushRejected, verify_push
    from connectors.kuaidi100_push import Push
    from tasks.tracking.pushes import receive_push

    ok = json.dumps(PUSH_OK, ensure_ascii=False).encode()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        form = parse_qs(body.decode("utf-8", "replace"))
        status, answer = 200, ok
        try:
            notice = verify_push((form.get("param") or [None])[0], (form.get("sign") or [None])[0], SALT)
            await anyio.to_thread.run_sync(receive_push, engine, policy, Push(form["param"][0], notice, NOW))
        except PushRejected:
            status, answer = 400, b'{"result":false}'
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": answer})

    return app


def baseline(ctx) -> None:
    import socket
    import threading

    import uvicorn

    from tasks.tracking.pushes import apply_landed_batch
    from yidi.settings import get_settings

    engine = _engine(ctx)
    policy = get_settings().tracking
    bodies = _bodies(ctx)
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_bare_app(engine, policy), lifespan="off", log_level="warning",
                                           access_log=False))  # fmt: skip
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.01)
    host, port = sock.getsockname()[:2]
    seconds, sent = _drive(f"http://{host}:{port}/kuaidi100/callback", bodies)
    server.should_exit = True
    thread.join(10)
    while apply_landed_batch(engine, policy, NOW):
        pass
    _check_and_record(ctx, "baseline", engine, seconds, sent)


def extra(ctx) -> dict:
    figures = {}
    for label in ("ours", "baseline"):
        path = ctx["workdir"] / f"{label}.json"
        if path.exists():
            figures[label] = json.loads(path.read_text())
    return figures
