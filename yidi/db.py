"""Engine and schema management for the order store (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, text

from yidi.settings import yidi_home

if TYPE_CHECKING:  # alembic is imported when the schema is touched, not by every command (0.3-0.7 s)
    from alembic.config import Config

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
    # A read-then-write transaction that races another writer must take the write lock first (IMMEDIATE):
    # a deferred one cannot upgrade once the other commits and fails at once with "database is locked".
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write_first") else "BEGIN")


def for_writing(engine: Engine) -> Engine:
    """The engine for a transaction that reads, then writes what it read, under concurrent writers (a claim).

    On SQLite the transaction starts with the write lock (``BEGIN IMMEDIATE``), so a second claimer waits its turn
    (busy timeout) instead of failing; PostgreSQL's row locks and conditional UPDATEs need nothing more.
    """
    return engine.execution_options(write_first=True)


def for_reading(engine: Engine) -> Engine:
    """The engine for a connection that only reads, beside another of the same process: its transaction stays
    deferred (no write lock) even when ``engine`` is ``for_writing``, so it never waits for that other one's."""
    return engine.execution_options(write_first=False)


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_connection, _record):
            dbapi_connection.isolation_level = None

        event.listen(engine, "begin", _sqlite_begin)
        if os.environ.get("YIDI_SQLITE_WRITE_FIRST") == "1":
            # Processes of the local stack (`make up`, `make sandbox` set it for the worker and the receiver): many
            # flow runs write at once, so every ``engine.begin()`` takes the write lock first and a second writer
            # waits its turn (busy timeout) instead of failing; ``engine.connect()`` reads stay deferred.
            engine.begin = engine.execution_options(write_first=True).begin
        return engine
    return create_engine(url, pool_pre_ping=True)


@lru_cache(maxsize=8)
def _cached_engine(url: str) -> Engine:
    return make_engine(url)


def get_engine(url: str | None = None) -> Engine:
    return _cached_engine(normalise_url(url or database_url()))


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def init_db(engine: Engine | None = None) -> list[str]:
    """Create or upgrade the schema to the one migration head; returns the head now applied.

    "head", not "heads": the migrations are one line (0007 joined the area branches), and alembic refuses to
    upgrade when a change adds a second head, instead of applying branches in an order nobody chose."""
    from alembic import command

    engine = engine or get_engine()
    command.upgrade(alembic_config(engine), "head")
    return current_heads(engine)


STORE_NOT_READY = "the order store is not initialised"


def code_heads() -> list[str]:
    """The migration head this code expects (``yidi/migrations``)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return sorted(ScriptDirectory.from_config(config).get_heads())


def store_problem(engine: Engine | None = None) -> str | None:
    """One line saying why the store cannot be used by this code (missing, unreachable, or behind/ahead of the
    migrations), or None when it is ready. Flows fail with it at once (``flows.compose.require_store``) instead
    of a traceback about a missing table halfway through a step."""
    from sqlalchemy.engine import make_url

    engine = engine or get_engine()
    where = make_url(str(engine.url)).render_as_string(hide_password=True)
    try:
        have = current_heads(engine)
    except Exception as exc:  # noqa: BLE001 - unreachable or refused: the reason is the message
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return f"{STORE_NOT_READY} or cannot be reached at {where} ({reason}); run `yidi init` (or `make up`)"
    want = code_heads()
    if not have:
        return f"{STORE_NOT_READY} at {where} (no schema); run `yidi init` (or `make up`)"
    if have != want:
        return (f"{STORE_NOT_READY} at {where} for this code (schema at {', '.join(have)}, code expects "
                f"{', '.join(want)}); run `yidi init` (or `make up`) to upgrade")
    return None


def current_heads(engine: Engine) -> list[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return sorted(MigrationContext.configure(conn).get_current_heads())


class StoreAddress:
    """The order store as a value another process can receive (a Dask worker running a chunk): its URL, resolved
    to that process's own engine (``engine_of``). An ``Engine`` itself cannot be pickled (its pool holds locks).
    ``repr`` hides the password, since task arguments may end up in logs."""

    __slots__ = ("url",)

    def __init__(self, url: str):
        self.url = url

    def __repr__(self) -> str:
        from sqlalchemy.engine import make_url

        return f"StoreAddress({make_url(self.url).render_as_string(hide_password=True)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, StoreAddress) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __getstate__(self):
        return self.url

    def __setstate__(self, url):
        self.url = url


def store_address(engine: Engine) -> StoreAddress:
    return StoreAddress(engine.url.render_as_string(hide_password=False))


def engine_of(store: Engine | StoreAddress) -> Engine:
    """The engine itself, or this process's (cached) engine for a ``StoreAddress``."""
    return get_engine(store.url) if isinstance(store, StoreAddress) else store


def serial_section(conn: Connection, name: str) -> None:
    """Make the rest of ``conn``'s transaction the only one in the section ``name`` (issue 17): a stage that must
    stay serial across workers (allocating an item's stock, matching payment lines) takes it as its first
    statement. PostgreSQL: a transaction-scoped advisory lock (``pg_advisory_xact_lock``), released at commit or
    rollback, also when the worker process dies; a second worker waits, then reads what the first committed.
    SQLite: nothing to do, a writing transaction already holds the file's one write lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"), {"name": f"yidi:{name}"})
