"""A local stand-in for Kuaidi100: real HTTP on 127.0.0.1, the published query/subscribe/push formats.

What it does, so tests, the demo and the benchmark exercise the real protocol code:

* checks signatures (``upper(MD5(param + key + customer))``; subscription ``key``) and the phone that SF and ZTO
  require;
* advances each registered waybill along a realistic route (Chongqing hub -> destination hub -> station ->
  courier -> signed) on a **simulated clock** that tests control (``clock.advance(hours=…)``); the routes and the
  clock are ``demo.standins.parcel_routes``;
* scenarios: ``normal``, ``delayed`` (slow, keeps reporting), ``stale`` (days without a scan), ``problem`` (疑难),
  ``refused`` (拒签 then return), ``returned`` (sender recalls it), ``damaged`` (破损 in the text), ``lost``
  (遗失, nothing after);
* answers unknown waybills like Kuaidi100 (``returnCode 500 查询无结果，请隔段时间再查``);
* enforces a per-waybill minimum interval (simulated minutes, default 30) and a global request rate (token bucket
  in real time), and counts every request so a benchmark can prove the rate was never exceeded;
* changes a waybill's carrier code on demand (answers then carry ``comOld``/``comNew``);
* fails on demand: ``fail_next(n, mode)`` and ``down(for_=timedelta(hours=1))`` (simulated time);
* pushes updates to subscribers' callback URLs (``param`` + ``sign = md5(param + salt)``);
* answers ``label/order`` ``interceptOrder`` (issue 18): a parcel not yet out for delivery turns back to the
  sender (退回, then 退签 at the sending warehouse); later it is "too late"; a repeat is 重复提交.

This module serves the carrier (``demo.standins.kuaidi100_carrier``: state and answers) over HTTP. Run it
in-process with ``start()`` (a handle with ``.url``, ``.stop()``, usable as a context manager), or as its own
process with ``spawn()`` / ``python -m demo.standins.kuaidi100`` (control over ``/_standin/*``).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import requests

from demo.standins.kuaidi100_carrier import CarrierState, compact_json
from demo.standins.parcel_routes import SimClock

# --- HTTP -----------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a polling cycle reuses connections
    disable_nagle_algorithm = True  # headers and body go out as separate writes; don't wait 40 ms for an ACK
    server: _Server

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: dict | str) -> None:
        if status < 0:  # simulate a dropped connection
            self.close_connection = True
            self.connection.shutdown(2)
            return
        data = (compact_json(body) if isinstance(body, dict | list) else body).encode("utf-8")
        self.send_response(status)
        ctype = "application/json;charset=UTF-8" if isinstance(body, dict | list) else "text/html"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _form(self) -> dict[str, str]:
        parsed = parse_qs(self._body().decode("utf-8"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}

    def do_POST(self) -> None:  # noqa: N802
        state = self.server.state
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/poll/query.do":
            self._send(*state.answer_query(self._form()))
        elif path == "/poll":
            self._send(200, state.answer_subscribe(self._form()))
        elif path == "/label/order":  # interceptOrder (issue 18)
            self._send(200, state.answer_intercept(self._form()))
        elif path.startswith("/_standin/"):
            self._send(200, self._control(path.removeprefix("/_standin/"), json.loads(self._body() or b"{}")))
        else:
            self._send(404, {"result": False, "returnCode": "404", "message": "not found"})

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/") == "/_standin/stats":
            self._send(200, self.server.state.stats())
        else:
            self._send(404, {"message": "not found"})

    def _control(self, command: str, body: dict) -> dict:
        state = self.server.state
        if command == "register":
            return {"waybills": state.register_many(body["rows"])}
        if command == "clock":
            if "set" in body:
                state.clock.set(datetime.fromisoformat(body["set"]))
            if "advance_minutes" in body:
                state.clock.advance(minutes=float(body["advance_minutes"]))
            return {"clock": state.clock.now().isoformat()}
        if command == "reset-stats":
            state.reset_stats()
            return {"ok": True}
        if command == "fail":
            state.fail_next(int(body.get("n", 1)), body.get("mode", "http500"))
            return {"ok": True}
        if command == "push-updates":
            return {"pushes": state.push_updates()}
        return {"error": f"unknown command {command}"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    state: CarrierState


class Kuaidi100Standin:
    """A running stand-in; ``with start() as carrier: …`` stops it on exit."""

    def __init__(self, state: CarrierState, host: str = "127.0.0.1", port: int = 0):
        self.state = state
        self.server = _Server((host, port), _Handler)
        self.server.state = state
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="kuaidi100-standin", daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def query_url(self) -> str:
        return f"{self.url}/poll/query.do"

    @property
    def intercept_url(self) -> str:
        return f"{self.url}/label/order"

    @property
    def subscribe_url(self) -> str:
        return f"{self.url}/poll"

    @property
    def clock(self) -> SimClock:
        return self.state.clock

    def __getattr__(self, name):  # register, change_carrier, fail_next, down, push_updates, stats…
        return getattr(self.state, name)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> Kuaidi100Standin:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(
    *,
    customer: str = "standin-customer",
    key: str = "standin-key",
    secret: str = "standin-secret",
    clock: SimClock | None = None,
    min_interval_minutes: float = 30,
    rate_per_second: float | None = None,
    burst: float | None = None,
    seed: int = 7,
    auto_register: bool = False,
    scenario_weights: dict[str, float] | None = None,
    port: int = 0,
    monotonic=time.monotonic,
    route_scale: float = 1.0,
) -> Kuaidi100Standin:
    state = CarrierState(
        customer=customer, key=key, clock=clock or SimClock(), min_interval=timedelta(minutes=min_interval_minutes),
        rate_per_second=rate_per_second, burst=burst, seed=seed, auto_register=auto_register,
        scenario_weights=scenario_weights, monotonic=monotonic, secret=secret, route_scale=route_scale,
    )  # fmt: skip
    return Kuaidi100Standin(state, port=port)


# --- as its own process (benchmarks: the carrier must not share our interpreter's GIL) --------------------------


class RemoteStandin:
    """A stand-in in a child process, controlled over ``/_standin/*``."""

    def __init__(self, process: subprocess.Popen, url: str):
        self.process, self.url = process, url
        self._owner = os.getpid()
        atexit.register(self._stop_if_owner)

    @property
    def query_url(self) -> str:
        return f"{self.url}/poll/query.do"

    def _control(self, command: str, body: dict | None = None) -> dict:
        return requests.post(f"{self.url}/_standin/{command}", json=body or {}, timeout=120).json()

    def register_many(self, rows: list[dict]) -> int:
        return self._control("register", {"rows": rows})["waybills"]

    def set_clock(self, when: datetime) -> None:
        self._control("clock", {"set": when.isoformat()})

    def reset_stats(self) -> None:
        self._control("reset-stats")

    def stats(self) -> dict:
        return requests.get(f"{self.url}/_standin/stats", timeout=60).json()

    def _stop_if_owner(self) -> None:
        if os.getpid() == self._owner:
            self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def spawn(**options) -> RemoteStandin:
    args = [sys.executable, "-m", "demo.standins.kuaidi100"]
    for name, value in options.items():
        if value is not None:
            args += [f"--{name.replace('_', '-')}", str(value)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline().strip()
    if not line.startswith("http://"):
        process.kill()
        raise RuntimeError(f"stand-in did not start: {line!r}")
    return RemoteStandin(process, line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--customer", default=os.environ.get("YIDI_KUAIDI100_CUSTOMER", "standin-customer"))
    parser.add_argument("--key", default=os.environ.get("YIDI_KUAIDI100_KEY", "standin-key"))
    parser.add_argument("--rate-per-second", type=float, default=None)
    parser.add_argument("--burst", type=float, default=None)
    parser.add_argument("--min-interval-minutes", type=float, default=30)
    parser.add_argument("--auto-register", action="store_true")
    parser.add_argument("--start", default=None, help="simulated start time (ISO 8601)")
    parser.add_argument(
        "--speed", type=float, default=None, help="simulated seconds per real second (clock runs)"
    )
    parser.add_argument("--serve-forever", action="store_true", help="keep serving after the parent exits")
    args = parser.parse_args(argv)
    clock = SimClock(datetime.fromisoformat(args.start) if args.start else None, speed=args.speed)
    carrier = start(
        customer=args.customer, key=args.key, clock=clock, min_interval_minutes=args.min_interval_minutes,
        rate_per_second=args.rate_per_second, burst=args.burst, auto_register=args.auto_register, port=args.port,
    )  # fmt: skip
    print(carrier.url, flush=True)
    parent = os.getppid()
    try:
        while args.serve_forever or os.getppid() == parent:  # an orphaned stand-in stops by itself
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        carrier.stop()


if __name__ == "__main__":
    main()
