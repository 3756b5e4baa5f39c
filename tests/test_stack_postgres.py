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
