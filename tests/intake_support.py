"""Helpers shared by the intake tests (stand-ins, connectors wired to them, store queries)."""

from __future__ import annotations

from functools import lru_cache

import pandas as pd
from sqlalchemy import func, select

from connectors.taobao import TaobaoConnector
from connectors.woocommerce import WooCommerceConnector
from demo.standins.orders_data import demo_neutral_orders
from yidi.bulk import read_frame
from yidi.schema import channel_cursors, intake_records, order_events, order_lines, orders

TB = {"app_key": "23456789", "app_secret": "top-secret-for-tests", "session": "seller-session"}
WC = {"consumer_key": "ck_0123456789abcdef", "consumer_secret": "cs_fedcba9876543210"}


@lru_cache(maxsize=4)
def _neutral(n: int, seed: int) -> tuple:
    return tuple(demo_neutral_orders(n, seed=seed))


def neutral(n: int, seed: int = 11) -> list[dict]:
    """Demo orders (cached: the demo generator is deterministic)."""
    return [dict(o) for o in _neutral(n, seed)]


def set_secrets(monkeypatch) -> None:
    monkeypatch.setenv("T_TB_KEY", TB["app_key"])
    monkeypatch.setenv("T_TB_SECRET", TB["app_secret"])
    monkeypatch.setenv("T_TB_SESSION", TB["session"])
    monkeypatch.setenv("T_WC_KEY", WC["consumer_key"])
    monkeypatch.setenv("T_WC_SECRET", WC["consumer_secret"])


def taobao_connector(url: str, **options) -> TaobaoConnector:
    return TaobaoConnector("taobao", {
        "url": url, "app_key_env": "T_TB_KEY", "app_secret_env": "T_TB_SECRET", "session_env": "T_TB_SESSION",
        "window_minutes": 1440, "overlap_minutes": 5, "lag_seconds": 0, "backoff_seconds": 0.01, "page_size": 100,
        "timeout_seconds": 2, **options,
    })


def woo_connector(url: str, **options) -> WooCommerceConnector:
    return WooCommerceConnector("woocommerce", {
        "url": url, "consumer_key_env": "T_WC_KEY", "consumer_secret_env": "T_WC_SECRET", "backoff_seconds": 0.01,
        "timeout_seconds": 2, **options,
    })


def count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar()


def store(engine) -> dict[str, int]:
    return {t.name: count(engine, t) for t in (orders, order_lines, order_events, intake_records)}


def frame(engine, sql: str, **params) -> pd.DataFrame:
    with engine.connect() as conn:
        return read_frame(conn, sql, params)


def cursor_of(engine, channel: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(channel_cursors.c.cursor).where(channel_cursors.c.channel == channel)).scalar()
