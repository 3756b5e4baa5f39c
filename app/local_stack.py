"""The local Prefect stack behind `make up` / `make down`: the order store initialised or upgraded, a server on
127.0.0.1:4200 (``YIDI_PREFECT_PORT``, ``make up PREFECT_PORT=4300``), a process worker, deployments.

Processes are started detached with pid files under ``$YIDI_HOME/run`` so `make down` stops exactly what
`make up` started (and nothing else). The server keeps its own SQLite database under ``$YIDI_HOME/prefect``.
A server on the port that this project did not start (no live pid file) is never reused: its runs, deployments and
work pool would be someone else's, and `make down` could not stop it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

import yidi  # noqa: F401  (offline defaults in the environment handed to children)
from app import stack_postgres
from yidi.settings import yidi_home

HOST, DEFAULT_PORT = "127.0.0.1", 4200


def port() -> int:
    return int(os.environ.get("YIDI_PREFECT_PORT") or DEFAULT_PORT)


def api_url() -> str:
    return f"http://{HOST}:{port()}/api"


def ui_url() -> str:
    return f"http://{HOST}:{port()}"


def bind_host() -> str:
    """Where the server listens (``YIDI_PREFECT_HOST``, ``make up PREFECT_HOST=0.0.0.0``); clients still use HOST."""
    return os.environ.get("YIDI_PREFECT_HOST") or HOST


class Exposed(RuntimeError):
    """A server beyond loopback without authentication (issue 20): anyone reaching the port could approve orders."""


def require_auth_beyond_loopback() -> None:
    import ipaddress

    host = bind_host()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not os.environ.get("PREFECT_SERVER_API_AUTH_STRING"):
        raise Exposed(
            f"refusing to bind the Prefect server to {host} without authentication: set "
            "PREFECT_SERVER_API_AUTH_STRING='user:password' (workers and the CLI get it as PREFECT_API_AUTH_STRING) "
            "and put TLS in front (README: production)"
        )


PORT, API_URL, UI_URL = port(), api_url(), ui_url()  # as this process was started (``yidi demo``)
WORK_POOL = "yidi-local"
REPO_ROOT = Path(__file__).resolve().parent.parent


def run_dir() -> Path:
    path = yidi_home() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def prefect_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", str(yidi_home() / "prefect"))
    env["PREFECT_API_URL"] = api_url()
    # INFO: what each run did (counts, files, decisions) shows in the UI for worker runs too
    env.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    env.setdefault("YIDI_HOME", str(yidi_home()))
    if env.get("PREFECT_SERVER_API_AUTH_STRING"):  # workers and the CLI authenticate to a server that requires it
        env.setdefault("PREFECT_API_AUTH_STRING", env["PREFECT_SERVER_API_AUTH_STRING"])
    env["YIDI_REPO"] = str(REPO_ROOT)  # prefect.yaml's pull step runs flows from this checkout
    env.update(stack_postgres.stack_env())  # make up DB=postgres: store and server database on PostgreSQL
    env.update(sandbox_env())  # make sandbox: the policy and credentials pointing every channel at its stand-in
    return env


def api_healthy(url: str | None = None, timeout: float = 1.0) -> bool:
    try:
        return requests.get(f"{url or api_url()}/health", timeout=timeout).ok
    except requests.RequestException:
        return False


def use_local_server_if_running() -> bool:
    """Point this process at the local server when it is up (else flows run on a temporary server)."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    if api_healthy():
        os.environ["PREFECT_API_URL"] = api_url()
        return True
    return False


def _prefect_bin() -> str:
    return str(Path(sys.executable).with_name("prefect"))


def _start(name: str, args: list[str]) -> int:
    log = (run_dir() / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        args, env=prefect_env(), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    (run_dir() / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


class ForeignServer(RuntimeError):
    """Something this project did not start answers on the server's port."""


def ours_running() -> bool:
    """The server this project started (pid file under ``$YIDI_HOME/run``) is alive."""
    pid = _read_pid("server")
    return pid is not None and _alive(pid)


def start_server(timeout: float = 90) -> bool:
    """Start the server unless ours answers already; returns True when this call started it. Refuses (``ForeignServer``)
    a server on the port that this project did not start."""
    if api_healthy():
        if ours_running():
            return False
        raise ForeignServer(
            f"a Prefect server that `make up` did not start answers on {ui_url()}; stop it, or use another port: "
            f"`make up PREFECT_PORT={port() + 1}` (or YIDI_PREFECT_PORT={port() + 1})"
        )
    pid = _start("server", [_prefect_bin(), "server", "start", "--host", bind_host(), "--port", str(port())])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api_healthy():
            return True
        if not _alive(pid):
            raise RuntimeError(f"prefect server exited; see {run_dir() / 'server.log'}")
        time.sleep(0.5)
    raise RuntimeError(f"prefect server not healthy after {timeout:.0f}s; see {run_dir() / 'server.log'}")


def _prefect(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_prefect_bin(), *args], env=prefect_env(), cwd=REPO_ROOT, check=check, capture_output=True, text=True
    )


def global_limits() -> dict[str, tuple[int, float]]:
    """Global concurrency / rate limits the flows use: name -> (limit, slot decay per second)."""
    from yidi.settings import get_settings

    limits: dict[str, tuple[int, float]] = {}
    tracking = get_settings().tracking
    for name, spec in getattr(tracking, "global_limits", {}).items():
        limits[name] = (int(spec["limit"]), float(spec.get("slot_decay_per_second", 0)))
    return limits


def ensure_global_limits() -> None:
    for name, (limit, decay) in global_limits().items():
        existing = _prefect("gcl", "inspect", name, check=False)
        if existing.returncode == 0:
            _prefect("gcl", "update", name, "--limit", str(limit), check=False)
        else:
            _prefect("gcl", "create", name, "--limit", str(limit), "--slot-decay-per-second", str(decay))


def init_store() -> str:
    """Create or upgrade the order store before anything is deployed, so no scheduled run meets a missing table."""
    from yidi.db import database_url, init_db

    heads = init_db()
    from sqlalchemy.engine import make_url

    return f"order store ready: {make_url(database_url()).render_as_string(hide_password=True)} ({', '.join(heads)})"


def up() -> None:
    try:
        require_auth_beyond_loopback()
    except Exposed as exc:
        raise SystemExit(f"make up: {exc}") from None
    os.environ.update(stack_postgres.stack_env())  # DB=postgres: the store below is the PostgreSQL one
    for line in stack_postgres.ensure_databases():
        print(line)
    print(init_store())
    try:
        started = start_server()
    except ForeignServer as exc:
        raise SystemExit(f"make up: {exc}") from None
    print(f"prefect server {'started' if started else 'already running'}: {ui_url()}")
    _prefect("work-pool", "create", WORK_POOL, "--type", "process", "--overwrite")
    ensure_global_limits()
    deployed = _prefect("--no-prompt", "deploy", "--all", check=False)
    if deployed.returncode != 0:
        print(deployed.stdout[-4000:], deployed.stderr[-4000:], sep="\n")
        raise SystemExit("deploying prefect.yaml failed")
    os.environ.update(prefect_env())  # this process's first Prefect import (below) talks to the local server
    cleared = clear_unlisted_schedules()
    if cleared:
        print(f"schedules cleared (prefect.yaml lists none for them): {', '.join(cleared)}")
    for deployment, dropped in sorted(collapse_missed_runs().items()):
        print(f"{deployment}: {dropped} run(s) missed while the stack was down dropped; the latest one runs now")
    workers = stack_postgres.worker_names()  # WORKERS=N: N process workers on the pool
    for name in workers:
        worker_pid = _read_pid(name)
        if worker_pid is None or not _alive(worker_pid):
            limit = ["--limit", os.environ["YIDI_WORKER_LIMIT"]] if os.environ.get("YIDI_WORKER_LIMIT") else []
            _start(name, [_prefect_bin(), "worker", "start", "--pool", WORK_POOL, "--name", f"yidi-{name}", *limit])
    print(f"work pool {WORK_POOL} with {len(workers)} process worker(s); deployments from prefect.yaml are scheduled")
    print(f"open the UI: {ui_url()}  (deployments: {ui_url()}/deployments)")
    print(cli_pointer())


def cli_pointer() -> str:
    """What `make up` prints so `prefect deployment ls` in this shell talks to this server (without it the Prefect
    CLI starts a temporary server of its own and lists nothing)."""
    return f"point the Prefect CLI at it (e.g. `prefect deployment ls`):\n  export PREFECT_API_URL={api_url()}"


def clear_unlisted_schedules() -> list[str]:
    """Schedules on the server that prefect.yaml does not list, removed: ``prefect deploy`` adds and updates
    schedules but never removes one a deployment no longer has, so a deployment renamed in 0.2 (whose old name
    stays deployed on demand, ``flows/renamed.py``) would otherwise keep running on its 0.1 schedule beside the
    new one. Returns the deployments cleared."""
    import yaml

    listed = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
    unscheduled = {d["name"] for d in listed if not d.get("schedules")}
    from prefect.client.orchestration import get_client

    cleared = []
    with get_client(sync_client=True) as client:
        for deployment in client.read_deployments():
            if deployment.name in unscheduled and deployment.schedules:
                for schedule in deployment.schedules:
                    client.delete_deployment_schedule(deployment.id, schedule.id)
                cleared.append(f"{client.read_flow(deployment.flow_id).name}/{deployment.name}")
    return sorted(cleared)


def collapse_missed_runs(late_after_seconds: float = 60) -> dict[str, int]:
    """Runs scheduled while the stack was down (Late), kept one per deployment: the latest catches up, the older
    ones are deleted before the workers start. Seen: after `make down` overnight, `make up` ran every missed
    hourly and quarter-hourly slot back to back, a page of Late runs and a burst of the same work repeated.
    Returns, per deployment (``flow/deployment``), how many it dropped."""
    from datetime import UTC, datetime, timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    cutoff = datetime.now(UTC) - timedelta(seconds=late_after_seconds)
    late = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                         expected_start_time=FlowRunFilterExpectedStartTime(before_=cutoff))  # fmt: skip
    dropped: dict[str, int] = {}
    with get_client(sync_client=True) as client:
        by_deployment: dict = {}
        while page := client.read_flow_runs(flow_run_filter=late, limit=200, offset=sum(map(len, by_deployment.values()))):
            for run in page:
                by_deployment.setdefault(run.deployment_id, []).append(run)
        by_deployment.pop(None, None)  # runs started by hand, not by a schedule
        for deployment_id, runs in by_deployment.items():
            runs.sort(key=lambda run: run.expected_start_time)
            for run in runs[:-1]:
                client.delete_flow_run(run.id)
            if len(runs) > 1:
                deployment = client.read_deployment(deployment_id)
                name = f"{client.read_flow(deployment.flow_id).name}/{deployment.name}"
                dropped[name] = len(runs) - 1
    return dropped


def _read_pid(name: str) -> int | None:
    path = run_dir() / f"{name}.pid"
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def sandbox_env() -> dict[str, str]:
    """The environment a running sandbox wrote for the worker (``demo.sandbox``); empty without a sandbox."""
    import json

    from demo.sandbox import env_file

    path = env_file(yidi_home())
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() and ours_alive("sandbox") else {}


def ours_alive(name: str) -> bool:
    pid = _read_pid(name)
    return pid is not None and _alive(pid)


def sandbox(timeout: float = 60) -> None:
    """`make sandbox`: every stand-in as a local service (``python -m demo.sandbox``), the Kuaidi100 push receiver
    (``yidi tracking callbacks``), then the stack of `make up` with the channels pointed at them and the scheduled
    deployments on the sandbox's clock (``demo.sandbox.sandbox_cadence``); `make down` stops all of it."""
    from demo.sandbox import env_file

    if not ours_alive("sandbox"):
        env_file(yidi_home()).unlink(missing_ok=True)
        _start("sandbox", [sys.executable, "-m", "demo.sandbox"])
        deadline = time.monotonic() + timeout
        while not env_file(yidi_home()).is_file():
            if not ours_alive("sandbox") or time.monotonic() > deadline:
                raise SystemExit(f"make sandbox: the stand-ins did not start; see {run_dir() / 'sandbox.log'}")
            time.sleep(0.3)
    print(f"sandbox: every stand-in running, policy {sandbox_env()['YIDI_CONFIG']} (log {run_dir() / 'sandbox.log'})")
    _stop_workers()  # a worker without the sandbox's env
    _stop("callbacks")  # the same for the push receiver: the sandbox's policy names its port
    _start("callbacks", [str(Path(sys.executable).with_name("yidi")), "tracking", "callbacks"])
    up()
    cadence = schedule_sandbox(sandbox_cadence())
    print("sandbox: on the sandbox's clock (a plain make up restores prefect.yaml's schedules): "
          + ", ".join(f"{name} every {seconds:.0f} s" for name, seconds in cadence.items()))  # fmt: skip


def sandbox_day_seconds() -> float:
    """The sandbox's compressed "day" (``demo.sandbox.main``): YIDI_SANDBOX_TICK seconds × YIDI_SANDBOX_PAYMENT_TICKS."""
    return sandbox_tick() * sandbox_day_ticks()


def sandbox_tick() -> float:
    return float(os.environ.get("YIDI_SANDBOX_TICK") or 30)


def sandbox_day_ticks() -> int:
    return int(os.environ.get("YIDI_SANDBOX_PAYMENT_TICKS") or 10)


def sandbox_cadence() -> dict[str, float]:
    from demo.sandbox import sandbox_cadence as cadence

    return cadence(sandbox_tick(), sandbox_day_ticks())


def schedule_sandbox(cadence: dict[str, float]) -> dict[str, float]:
    """Each named deployment's schedules replaced by one interval schedule of the sandbox's clock (seconds).

    ``prefect deploy`` replaces the schedules of every deployment prefect.yaml gives schedules to, so the next plain
    ``make up`` puts the real ones back; the on-demand reconcile deployment has none there, and ``make up`` clears
    the sandbox's (``clear_unlisted_schedules``). Returns the cadence applied (deployments found)."""
    from datetime import UTC, datetime, timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.schedules import IntervalSchedule

    applied = {}
    start = datetime.now(UTC).replace(microsecond=0)
    with get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
        for index, (name, seconds) in enumerate(cadence.items()):
            deployment = deployments.get(name)
            if deployment is None:
                continue
            for schedule in deployment.schedules:  # a sandbox started again: one schedule, the current clock's
                client.delete_deployment_schedule(deployment.id, schedule.id)
            # anchors a few seconds apart: the deployments take turns instead of all starting in the same second
            anchor = start + timedelta(seconds=(index * 7) % max(1, int(min(cadence.values()))))
            client.create_deployment_schedules(deployment.id, [(IntervalSchedule(
                interval=timedelta(seconds=seconds), anchor_date=anchor), True)])  # fmt: skip
            applied[name] = seconds
    return applied


RUN_GRACE_SECONDS = 15.0  # make down: how long a flow run in progress may take to finish before it is stopped


def down() -> None:
    """Stop the workers, the flow runs they started, the server and the sandbox (process groups from pid files).

    The process worker starts each flow run in a session of its own, out of reach of the worker's process group:
    seen, a run caught by `make down` outlived the worker, lost its server and stayed Running for ever, holding its
    deployment's concurrency slot so every later run of it waited (AwaitingConcurrencySlot) after the next `make up`.
    So runs in progress get ``RUN_GRACE_SECONDS`` to finish, are then stopped, and the server goes after them, while
    it can still record how each run ended."""
    _stop_workers()
    for name in ("server", "callbacks", "sandbox"):
        _stop(name)


def _stop_workers() -> None:
    """Every worker make up started, then the flow runs they had in progress (each in its own session)."""
    runs: list[int] = []
    for name in sorted(path.stem for path in run_dir().glob("worker*.pid")):
        pid = _read_pid(name)
        if pid is not None and _alive(pid):  # its runs are read before it goes (then they belong to init)
            runs += [run for run in _descendants(pid) if _group(run) not in (pid, None)]
        _stop(name)
    left = _wait_gone(runs, RUN_GRACE_SECONDS)
    if left:
        _stop_pids(left)
        print(f"stopped {len(left)} flow run process(es) still in progress")


def _stop(name: str) -> None:
    """Stop one process this project started (its process group, from its pid file)."""
    pid = _read_pid(name)
    if pid is None:
        return
    if _alive(pid):
        _stop_pids([pid])
        print(f"stopped {name} (pid {pid})")
    (run_dir() / f"{name}.pid").unlink(missing_ok=True)


def _stop_pids(pids: list[int]) -> None:
    """SIGTERM to each one's process group, SIGKILL to those still alive 20 s later."""
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    for pid in _wait_gone(pids, 20):
        _signal_group(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (``ps`` works on Linux and macOS)."""
    listing = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, check=False).stdout
    children: dict[int, list[int]] = {}
    for line in listing.splitlines():
        child, parent = (int(field) for field in line.split())
        children.setdefault(parent, []).append(child)
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [pid for pid in pids if _alive(pid)]


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(os.getpgid(pid), sig)
    except OSError:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


if __name__ == "__main__":
    {"up": up, "down": down, "sandbox": sandbox}[sys.argv[1]]()
