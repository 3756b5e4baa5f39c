"""Alembic environment: the engine comes from ``yidi.db`` (``config.attributes['engine']``) or the URL setting."""

from alembic import context

from yidi.db import get_engine

config = context.config
engine = config.attributes.get("engine") or get_engine()
target_metadata = config.attributes.get("target_metadata")

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
