"""The website's refunds (WooCommerce ``orders/<id>/refunds``) become after-sales requests, like the platform's
refund list: each refund lands once in the after-sales inbox with its raw record (``tasks.aftersales.landing``);
an unreadable answer or refund is kept and quarantined with its reason; a refund read again is the same record.

WooCommerce lists refunds per order, so the website's recent orders that have gone out are asked one by one
(``[aftersales] website_refund_lookback_days``); an order whose answer fails is counted and asked next cycle.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from connectors.woocommerce_refunds import refund_requests
from tasks.aftersales.landing import land_requests
from yidi.bulk import read_frame
from yidi.db import for_writing
from yidi.schema import orders
from yidi.settings import Settings

log = logging.getLogger(__name__)
WEBSITE_CHANNEL = "website"  # WooCommerce orders land on this channel (connectors/woocommerce.py)
GONE_OUT = ("shipped", "in_transit", "delivered", "exception", "after_sales", "settled", "closed", "returned")


def website_refunds(engine: Engine, client, settings: Settings, now: datetime, *, actor: str | None = None) -> dict:
    """Ask the shop for the refunds of its recent orders and land them; returns counts."""
    since = now - timedelta(days=settings.aftersales.website_refund_lookback_days)
    with engine.connect() as conn:
        wanted = read_frame(conn, select(orders.c.channel_order_id).where(
            orders.c.channel == WEBSITE_CHANNEL, orders.c.state.in_(GONE_OUT), orders.c.order_time >= since))  # fmt: skip
    records, failed = [], 0
    for wc_id in sorted(wanted["channel_order_id"].astype(str)):
        try:
            records.extend(refund_requests(wc_id, client.order_refunds(wc_id)))
        except Exception as exc:  # noqa: BLE001 - one order's failure never stops the others; asked next cycle
            failed += 1
            log.warning("website refunds of order %s not read: %s", wc_id, exc)
    with for_writing(engine).begin() as conn:
        counts = land_requests(conn, "woocommerce", records, settings, now, actor=actor)
    return {**counts, "orders_asked": len(wanted), "failed": failed}
