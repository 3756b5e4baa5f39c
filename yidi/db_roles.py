"""Least privilege in PostgreSQL (issue 20): the role layout, as SQL an administrator runs.

- ``OWNER`` (e.g. ``yidi_owner``) owns the schema and every table; migrations (``yidi init``) run as it.
- ``FLOWS`` (e.g. ``yidi_flows``) is what flows, workers and the CLI connect as: it reads and writes the business
  tables but cannot UPDATE, DELETE or TRUNCATE the event log (``order_events``) and the personal-data access trail
  (``personal_data_access``), and, owning nothing, cannot DROP or ALTER any table.

Run ``python -m yidi.db_roles roles SCHEMA OWNER FLOWS | psql`` once as a superuser (before ``yidi init``), then
``yidi init`` connected as OWNER, then ``python -m yidi.db_roles grants SCHEMA OWNER FLOWS | psql`` (after each
release's migrations, harmless to repeat). Passwords: ``ALTER ROLE … PASSWORD`` yourself; none are written here.
"""

from __future__ import annotations

import re
import sys

APPEND_ONLY_TABLES = ("order_events", "personal_data_access")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _names(*names: str) -> None:
    for name in names:
        if not _NAME.match(name):
            raise ValueError(f"not a plain PostgreSQL name: {name!r}")


def roles_sql(schema: str, owner: str, flows: str, login: bool = True) -> list[str]:
    """Create both roles and the schema owned by OWNER (superuser, once)."""
    _names(schema, owner, flows)
    can = "LOGIN" if login else "NOLOGIN"
    return [f"CREATE ROLE {owner} {can}", f"CREATE ROLE {flows} {can}",
            f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {owner}", f"ALTER SCHEMA {schema} OWNER TO {owner}",
            f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC", f"GRANT USAGE ON SCHEMA {schema} TO {flows}"]  # fmt: skip


def grants_sql(schema: str, owner: str, flows: str) -> list[str]:
    """FLOWS's privileges on what the migrations created (after ``yidi init`` as OWNER; repeatable)."""
    _names(schema, owner, flows)
    logs = ", ".join(f"{schema}.{table}" for table in APPEND_ONLY_TABLES)
    return [
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {flows}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {flows}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {logs} FROM {flows}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.alembic_version FROM {flows}",
    ]


if __name__ == "__main__":  # pragma: no cover - administrator's command line
    part, schema, owner, flows = sys.argv[1:5]
    for statement in (roles_sql if part == "roles" else grants_sql)(schema, owner, flows):
        print(f"{statement};")
