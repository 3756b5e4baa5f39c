"""Engine and schema management for the order store (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event

from yidi.settings import yidi_home

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def database_url() -> str:
    """``YIDI_DATABASE_URL``, else a SQLite file under ``YIDI_HOME``."""
    url = os.environ.get("YIDI_DATABASE_URL")
    if url:
        return normalise_url(url)
    return f"sqlite:///{yidi_home() / 'yidi.db'}"


def normalise_url(url: str) -> str:
    # psycopg 3 is the driver we ship; plain postgresql:// URLs would ask for psycopg2.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; take it over (SQLAlchemy recipe).
    conn.exec_driver_sql("BEGIN")


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_connection, _record):
            dbapi_connection.isolation_level = None

        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


@lru_cache(maxsize=8)
def _cached_engine(url: str) -> Engine:
    return make_engine(url)


def get_engine(url: str | None = None) -> Engine:
    return _cached_engine(normalise_url(url or database_url()))


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def init_db(engine: Engine | None = None) -> list[str]:
    """Create or upgrade the schema to the one migration head; returns the head now applied.

    "head", not "heads": the migrations are one line (0007 joined the area branches), and alembic refuses to
    upgrade when a change adds a second head, instead of applying branches in an order nobody chose."""
    engine = engine or get_engine()
    command.upgrade(alembic_config(engine), "head")
    return current_heads(engine)


def current_heads(engine: Engine) -> list[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return sorted(MigrationContext.configure(conn).get_current_heads())
