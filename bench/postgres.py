"""The PostgreSQL the PostgreSQL benchmarks write to: ``YIDI_TEST_POSTGRES_URL`` (the tests' default), a fresh
schema per store, and ``Skip`` when nothing answers there."""

from __future__ import annotations

import os
import uuid

from bench import Skip

POSTGRES_URL = os.environ.get("YIDI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def schema_url(schema: str) -> str:
    """The store's address with ``schema`` as its search path."""
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


def new_schema(prefix: str, *, migrated: bool = True) -> str:
    """A fresh schema ``<prefix>_<8 hex>``, migrated to the head unless ``migrated=False``; ``Skip`` when PostgreSQL
    does not answer."""
    from yidi.db import init_db, make_engine

    admin = make_engine(POSTGRES_URL)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - whatever the reason, the benchmark cannot run here
        raise Skip(f"PostgreSQL not available: {exc}") from None
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    admin.dispose()
    if migrated:
        engine = make_engine(schema_url(schema))
        init_db(engine)
        engine.dispose()
    return schema


def drop_schemas(*schemas: str) -> None:
    from yidi.db import make_engine

    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        for schema in schemas:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    admin.dispose()
