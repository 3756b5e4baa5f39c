"""Migrations: one line from 0007 on, and a store made by the release before it upgrades with its data intact."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import select

from yidi.bulk import insert_rows, read_frame
from yidi.db import MIGRATIONS_DIR, alembic_config, current_heads, init_db
from yidi.lifecycle import OrderState, transition_orders
from yidi.schema import order_events, orders

# The heads of release 0.1.0: one branch per area off 0001_foundation.
PREVIOUS_RELEASE_HEADS = ["0003_review", "0004_fulfilment", "0005_tracking", "0006_settlement"]


def test_the_migrations_have_exactly_one_head():
    heads = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()
    assert heads == ["0019_intake_content_lz4"], f"a second migration head appeared: {heads}; chain it after the last one"


def test_a_store_of_the_previous_release_upgrades_with_its_data(bare_engine):
    config = alembic_config(bare_engine)
    for head in PREVIOUS_RELEASE_HEADS:  # what `yidi init` of 0.1.0 left: every branch at its head
        command.upgrade(config, head)
    assert current_heads(bare_engine) == PREVIOUS_RELEASE_HEADS
    placed = datetime(2026, 11, 27, 1, 30, tzinfo=UTC)
    with bare_engine.begin() as conn:
        insert_rows(conn, orders, pd.DataFrame({
            "order_no": ["YD26112700000001"], "channel": ["website"], "channel_order_id": ["W-1"],
            "customer_name": ["李娜"], "order_total_fen": [1999_00], "order_time": [placed]}))
        order_id = conn.execute(select(orders.c.id)).scalar_one()
        transition_orders(conn, [order_id], OrderState.PENDING_REVIEW, reason="auto review", actor="test")

    assert init_db(bare_engine) == ["0019_intake_content_lz4"]
    assert init_db(bare_engine) == ["0019_intake_content_lz4"]  # and again: nothing to do

    with bare_engine.connect() as conn:
        stored = read_frame(conn, select(orders.c.order_no, orders.c.state, orders.c.order_total_fen))
        events = read_frame(conn, select(order_events.c.to_state).where(order_events.c.order_id == order_id))
    assert stored.to_dict("records") == [
        {"order_no": "YD26112700000001", "state": "pending_review", "order_total_fen": 1999_00}]
    assert events["to_state"].tolist() == ["pending_review"]
