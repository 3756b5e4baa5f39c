"""Shared fixtures: the order store on SQLite and PostgreSQL, and a real Prefect test server.

PostgreSQL: ``YIDI_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``). Each test gets a
fresh schema. When no PostgreSQL answers, its cases are skipped with the reason printed, unless
``YIDI_REQUIRE_POSTGRES=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import uuid
from functools import lru_cache

import pytest
from sqlalchemy import text

import yidi  # noqa: F401  (sets Prefect's offline defaults before prefect is imported)
from yidi.db import init_db, make_engine

POSTGRES_URL = os.environ.get("YIDI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("YIDI_REQUIRE_POSTGRES") == "1"


@lru_cache(maxsize=1)
def postgres_problem() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        engine = make_engine(POSTGRES_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"PostgreSQL at {POSTGRES_URL} does not answer: {type(exc).__name__}: {exc}"


def _postgres_engine_in_fresh_schema():
    problem = postgres_problem()
    if problem:
        if REQUIRE_POSTGRES:
            pytest.fail(f"YIDI_REQUIRE_POSTGRES=1 but {problem}")
        pytest.skip(problem)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in POSTGRES_URL else "?"
    engine = make_engine(f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}")
    return engine, admin, schema


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def bare_engine(request, tmp_path):
    """An empty database (no schema yet), on each database: for migration tests."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'yidi.db'}")
        yield eng
        eng.dispose()
        return
    eng, admin, schema = _postgres_engine_in_fresh_schema()
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def engine(bare_engine):
    """An initialised order store (the migration head), on each database."""
    init_db(bare_engine)
    return bare_engine


@pytest.fixture
def sqlite_engine(tmp_path):
    """SQLite only, for tests of logic that is not about the database."""
    eng = make_engine(f"sqlite:///{tmp_path / 'yidi.db'}")
    init_db(eng)
    yield eng
    eng.dispose()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test has its own YIDI_HOME and no operator policy file."""
    monkeypatch.setenv("YIDI_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("YIDI_CONFIG", raising=False)
    monkeypatch.delenv("YIDI_DATABASE_URL", raising=False)
    from yidi.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _prefect_log_level_restored():
    """An in-process CLI command quiets Prefect's loggers to WARNING (app/cli/common.py) for the terminal; it would
    stay so for every later test in the process, and a test reading a run's INFO logs back would find none."""
    import logging

    logger = logging.getLogger("prefect")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect server for the whole session (heartbeats off: short runs need not wait for them)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=60),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield
