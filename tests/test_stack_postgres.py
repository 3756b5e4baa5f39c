"""``make up DB=postgres WORKERS=N`` (issue 17): the environment it hands the server and workers, and the
databases it creates when absent (on the test PostgreSQL; a throwaway database name, dropped afterwards)."""

from __future__ import annotations

import uuid

import pytest
from conftest import POSTGRES_URL, postgres_problem
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app import local_stack, stack_postgres
from yidi.db import make_engine


def test_sqlite_stays_the_default_with_one_worker(monkeypatch):
    monkeypatch.delenv("YIDI_STACK_DB", raising=False)
    monkeypatch.delenv("YIDI_STACK_WORKERS", raising=False)
    assert stack_postgres.stack_env() == {} and stack_postgres.worker_names() == ["worker"]
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in local_stack.prefect_env()


def test_db_postgres_puts_both_databases_on_the_local_server_and_starts_n_workers(monkeypatch):
    monkeypatch.setenv("YIDI_STACK_DB", "postgres")
    monkeypatch.setenv("YIDI_STACK_WORKERS", "3")
    monkeypatch.delenv("YIDI_STACK_POSTGRES", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", raising=False)
    env = local_stack.prefect_env()
    assert env["YIDI_DATABASE_URL"] == "postgresql+psycopg://postgres@127.0.0.1:5432/yidi"
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == "postgresql+asyncpg://postgres@127.0.0.1:5432/yidi_prefect"
    assert stack_postgres.worker_names() == ["worker", "worker-2", "worker-3"]
    monkeypatch.setenv("YIDI_STACK_WORKERS", "0")
    with pytest.raises(SystemExit, match="WORKERS must be a number from 1 to 16"):
        stack_postgres.worker_names()


def test_an_operators_own_urls_win(monkeypatch):
    monkeypatch.setenv("YIDI_STACK_DB", "postgres")
    monkeypatch.setenv("YIDI_DATABASE_URL", "postgresql://yidi@db.internal/orders")
    monkeypatch.setenv("YIDI_STACK_POSTGRES", "postgresql://ops:pw@10.0.0.9:5433")
    env = stack_postgres.stack_env()
    assert env["YIDI_DATABASE_URL"] == "postgresql://yidi@db.internal/orders"
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == "postgresql+asyncpg://ops:pw@10.0.0.9:5433/yidi_prefect"


def test_missing_databases_are_created_once():
    if postgres_problem():
        pytest.skip(postgres_problem())
    name = f"t_stack_{uuid.uuid4().hex[:10]}"
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    admin = make_engine(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")
    try:
        assert stack_postgres.ensure_database(url) is True
        assert stack_postgres.ensure_database(url) is False
        with admin.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": name}).scalar() == 1
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


# --- the stack itself, started for real ------------------------------------------------------------------------------

RUN_DEPLOYMENTS = r"""
import json, sys, time
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

name, runs_of = sys.argv[1], json.loads(sys.argv[2])
with get_client(sync_client=True) as client:
    deadline = time.monotonic() + 120  # a worker shows once it has polled the pool (make up does not wait)
    while time.monotonic() < deadline:
        workers = sorted(w.name for w in client.read_workers_for_work_pool("yidi-local") if w.status == "ONLINE")
        if len(workers) == 2:
            break
        time.sleep(1)
    runs = [run_deployment(name, parameters=params, timeout=0) for params in runs_of]  # scheduled together
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        states = [client.read_flow_run(r.id).state for r in runs]
        if all(s.is_final() for s in states):
            break
        time.sleep(1)
print(json.dumps({"workers": workers, "states": [s.type.value for s in states]}))
"""


@pytest.mark.postgres
@pytest.mark.timeout(600)  # one to two minutes alone on 2 cores; the suite's 300 s cap was hit under a load of 20+
def test_make_up_db_postgres_with_two_workers_runs_deployments(tmp_path):
    """``make up DB=postgres WORKERS=2`` as the README says: both databases created on PostgreSQL, the server on its
    own, two process workers online, deployments run by them against the PostgreSQL store: the same drop taken in
    by two runs at once lands its orders once, and the automated review that prefect.yaml triggers after intake
    decides every one; ``make down`` stops all of it. (About a minute on an idle 2-core machine: the server's first
    start migrates its database, and every flow run is a fresh process.)"""
    import json
    import os
    import socket
    import subprocess
    import sys
    import time

    from demo.standins.orders_data import demo_neutral_orders
    from demo.standins.spreadsheets import template_frame, write_csv

    if postgres_problem():
        pytest.skip(postgres_problem())
    with socket.socket() as probe:  # a free port for this stack's server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tag = uuid.uuid4().hex[:8]
    server = make_url(POSTGRES_URL).set(database=None)
    store_url = server.set(drivername="postgresql+psycopg", database=f"t_store_{tag}")
    prefect_url = server.set(drivername="postgresql+asyncpg", database=f"t_prefect_{tag}")
    home = tmp_path / "home"
    env = {**os.environ, "YIDI_HOME": str(home), "YIDI_PREFECT_PORT": str(port),
           "YIDI_STACK_DB": "postgres", "YIDI_STACK_WORKERS": "2",
           "YIDI_STACK_POSTGRES": server.render_as_string(hide_password=False),
           # throwaway databases instead of yidi / yidi_prefect (the operator's override, README)
           "YIDI_DATABASE_URL": store_url.render_as_string(hide_password=False),
           "PREFECT_SERVER_DATABASE_CONNECTION_URL": prefect_url.render_as_string(hide_password=False),
           "PREFECT_WORKER_QUERY_SECONDS": "1",
           # only this test's runs and the review they trigger: no schedule fires meanwhile (each run is a process)
           "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"}  # fmt: skip
    for name in ("PREFECT_API_URL", "PREFECT_HOME", "YIDI_CONFIG"):  # the suite's own test server and policy
        env.pop(name, None)
    drop = template_frame(demo_neutral_orders(30), prefix="STK")
    files = [str(write_csv(drop, tmp_path / f"drop-{n}.csv")) for n in (1, 2)]  # the same drop, delivered twice
    stack = [sys.executable, "-m", "app.local_stack"]
    root = local_stack.REPO_ROOT
    admin = make_engine(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")
    store = make_engine(store_url.render_as_string(hide_password=False))
    try:
        up = subprocess.run([*stack, "up"], env=env, cwd=root, capture_output=True, text=True, timeout=420)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert f"created database {store_url.render_as_string()}" in up.stdout
        assert f"created database {prefect_url.render_as_string()}" in up.stdout
        assert "work pool yidi-local with 2 process worker(s)" in up.stdout
        client_env = {**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_HOME": str(home / "prefect")}
        ran = subprocess.run([sys.executable, "-c", RUN_DEPLOYMENTS, "intake-orders/intake-orders",
                              json.dumps([{"files": [path]} for path in files])],
                             capture_output=True, text=True, timeout=420, cwd=root, env=client_env)  # fmt: skip
        assert ran.returncode == 0, ran.stderr[-3000:]
        report = json.loads(ran.stdout.strip().splitlines()[-1])
        assert report == {"workers": ["yidi-worker", "yidi-worker-2"], "states": ["COMPLETED", "COMPLETED"]}

        def counts() -> tuple[dict, int]:
            with store.connect() as conn:
                by_state = dict(conn.execute(text("SELECT state, count(*) FROM orders GROUP BY state")).all())
                received = conn.execute(text("SELECT count(*) FROM order_events WHERE to_state = 'received'"))
                return by_state, received.scalar()

        by_state, received = counts()
        assert sum(by_state.values()) == 30 == received  # one order and one 'received' event per source order
        deadline = time.monotonic() + 300  # the triggered auto-review (a flow run of its own on a worker)
        while by_state.get("received") and time.monotonic() < deadline:
            time.sleep(2)
            by_state, received = counts()
        assert "received" not in by_state and sum(by_state.values()) == 30, by_state
    finally:
        store.dispose()
        down = subprocess.run([*stack, "down"], env=env, cwd=root, capture_output=True, text=True, timeout=120)
        with admin.connect() as conn:
            for url in (store_url, prefect_url):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        admin.dispose()
    assert "stopped worker (pid" in down.stdout and "stopped worker-2" in down.stdout, down.stdout + down.stderr
    assert "stopped server" in down.stdout
