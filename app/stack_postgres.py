"""``make up DB=postgres WORKERS=N`` (issue 17): the local stack on the PostgreSQL at 127.0.0.1:5432.

Both databases live there, each its own database created when absent: the order store (``yidi``) and the Prefect
server's own (``yidi_prefect``; the server needs ``pg_trgm``, which it creates itself). ``YIDI_STACK_POSTGRES``
names the server (default ``postgresql://postgres@127.0.0.1:5432``), ``YIDI_STACK_DB`` = ``postgres`` selects it
(``sqlite`` otherwise), ``YIDI_STACK_WORKERS`` = N starts N process workers on the work pool.
"""

from __future__ import annotations

import os

from sqlalchemy import text
from sqlalchemy.engine import make_url

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
STORE_DB, PREFECT_DB = "yidi", "yidi_prefect"


def on_postgres() -> bool:
    return (os.environ.get("YIDI_STACK_DB") or "sqlite").lower() in {"postgres", "postgresql", "pg"}


def worker_count() -> int:
    value = os.environ.get("YIDI_STACK_WORKERS") or "1"
    if not value.isdigit() or not 1 <= int(value) <= 16:
        raise SystemExit(f"make up: WORKERS must be a number from 1 to 16 (got {value!r})")
    return int(value)


def worker_names() -> list[str]:
    """Pid-file names of the workers: ``worker`` (as before), then ``worker-2`` … ``worker-N``."""
    return ["worker", *(f"worker-{n}" for n in range(2, worker_count() + 1))]


def server_url() -> str:
    return (os.environ.get("YIDI_STACK_POSTGRES") or DEFAULT_SERVER).rstrip("/")


def stack_env() -> dict[str, str]:
    """The variables that put the store and the Prefect server on PostgreSQL (empty on SQLite). An explicit
    ``YIDI_DATABASE_URL`` / ``PREFECT_SERVER_DATABASE_CONNECTION_URL`` wins."""
    if not on_postgres():
        return {}
    base = make_url(server_url())
    return {
        "YIDI_DATABASE_URL": os.environ.get("YIDI_DATABASE_URL")
        or base.set(drivername="postgresql+psycopg", database=STORE_DB).render_as_string(hide_password=False),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": os.environ.get("PREFECT_SERVER_DATABASE_CONNECTION_URL")
        or base.set(drivername="postgresql+asyncpg", database=PREFECT_DB).render_as_string(hide_password=False),
    }


def ensure_database(url: str) -> bool:
    """Create the database ``url`` names when it is absent (connecting to the server's ``postgres`` database);
    returns True when it was created."""
    from yidi.db import make_engine

    target = make_url(url)
    admin = make_engine(target.set(drivername="postgresql+psycopg", database="postgres")
                        .render_as_string(hide_password=False)).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}).first():
                return False
            conn.execute(text(f'CREATE DATABASE "{target.database}"'))
            return True
    finally:
        admin.dispose()


def ensure_databases() -> list[str]:
    """Both databases present; lines saying what was created or found (passwords hidden)."""
    lines = []
    for url in stack_env().values():
        created = ensure_database(url)
        shown = make_url(url).render_as_string(hide_password=True)
        lines.append(f"{'created' if created else 'found'} database {shown}")
    return lines
