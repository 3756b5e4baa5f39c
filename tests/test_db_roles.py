"""Issue 20, build 5: the flows' PostgreSQL role cannot rewrite the logs or drop tables; migrations run as owner."""

from __future__ import annotations

import uuid

import pytest
from conftest import POSTGRES_URL, REQUIRE_POSTGRES, postgres_problem
from sqlalchemy import event, text
from sqlalchemy.exc import ProgrammingError

from yidi.db import init_db, make_engine
from yidi.db_roles import grants_sql, roles_sql


def _as_role(schema: str, role: str):
    engine = make_engine(f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}options=-csearch_path%3D{schema}")

    @event.listens_for(engine, "connect")
    def _set_role(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {role}")
        dbapi_connection.commit()

    return engine


@pytest.mark.postgres
def test_the_flows_role_is_refused_an_update_on_the_event_log_and_a_drop():
    problem = postgres_problem()
    if problem:
        if REQUIRE_POSTGRES:
            pytest.fail(problem)
        pytest.skip(problem)
    tag = uuid.uuid4().hex[:10]
    schema, owner, flows = f"t_roles_{tag}", f"yidi_owner_{tag}", f"yidi_flows_{tag}"
    admin = make_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            for statement in roles_sql(schema, owner, flows, login=False):
                conn.execute(text(statement))
        as_owner = _as_role(schema, owner)
        init_db(as_owner)  # the migrations, as the owner role
        as_owner.dispose()
        with admin.begin() as conn:
            for statement in grants_sql(schema, owner, flows):
                conn.execute(text(statement))
        as_flows = _as_role(schema, flows)
        with as_flows.begin() as conn:  # flows work: insert orders and events, update orders
            conn.execute(text("INSERT INTO orders (channel, channel_order_id, order_no, state) "
                              "VALUES ('website', 'W-1', 'YD-1', 'received')"))  # fmt: skip
            conn.execute(text("UPDATE orders SET state = 'pending_review' WHERE order_no = 'YD-1'"))
            conn.execute(text("INSERT INTO order_events (order_id, occurred_at, kind, to_state, actor) "
                              "SELECT id, now(), 'state', 'pending_review', 'system' FROM orders"))  # fmt: skip
        for statement in ("UPDATE order_events SET actor = 'someone else'", "DELETE FROM order_events",
                          "UPDATE personal_data_access SET people = 0", "TRUNCATE order_events",
                          "DROP TABLE orders CASCADE"):  # fmt: skip
            with pytest.raises(ProgrammingError, match="permission denied|must be owner"), as_flows.begin() as conn:
                conn.execute(text(statement))
        with as_flows.connect() as conn:
            assert conn.execute(text("SELECT actor FROM order_events")).scalar_one() == "system"
        as_flows.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            for role in (flows, owner):
                conn.execute(text(f"DROP OWNED BY {role} CASCADE") if _exists(conn, role) else text("SELECT 1"))
                conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def _exists(conn, role: str) -> bool:
    return bool(conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar())
