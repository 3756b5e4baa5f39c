"""The channels part of ``make demo`` (issue 18): the platform and the website learn what yidi shipped.

After fulfilment, the TOP and WooCommerce stand-ins are started again holding the trades and orders exactly as
intake landed them (from the stored raw records), with the demo's credentials. ``confirm-shipments`` then confirms
every parcel with a waybill on its channel — one TOP answer is lost on the way and the retry finds it "already
shipped" (B04), counted as done — and tells the customers of the phone/fax/email orders instead; one platform item
and one website product per catalog item in stock are listed, and ``sync-channel-stock`` pushes their available
figures (a second run pushes nothing: nothing changed). Parcels that carried several orders (merged by fulfilment)
are counted: each of their orders is confirmed on its own channel with the one waybill. Interceptions are shown by
the tracking stage (``demo.tracking``), where parcels travel."""

from __future__ import annotations

import json
import os
import secrets

import pandas as pd
from sqlalchemy import select

from connectors.taobao_writeback import OFFLINE_SEND
from demo.standins.taobao import TaobaoStandin
from demo.standins.woocommerce import WooCommerceStandin


def _credentials(settings) -> dict[str, str]:
    """The demo's channel credentials (intake put them in the environment); fresh ones when run on its own."""
    names = {"app_key": settings.taobao.app_key_env, "app_secret": settings.taobao.app_secret_env,
             "session": settings.taobao.session_env, "ck": settings.woocommerce.consumer_key_env,
             "cs": settings.woocommerce.consumer_secret_env}
    for name in names.values():
        os.environ.setdefault(name, secrets.token_hex(12))
    return {key: os.environ[name] for key, name in names.items()}


def channels_demo() -> dict:
    from flows.channels import confirm_shipments, sync_channel_stock
    from yidi.bulk import insert_rows, read_frame
    from yidi.db import get_engine
    from yidi.schema import intake_records, orders
    from yidi.schema_channels import channel_confirmations, channel_listings
    from yidi.schema_fulfilment import stock_levels
    from yidi.settings import get_settings

    creds = _credentials(get_settings().intake)
    engine = get_engine()
    with engine.connect() as conn:
        landed = read_frame(conn, select(orders.c.channel, intake_records.c.content)
                            .join(intake_records, intake_records.c.id == orders.c.raw_record_id)
                            .where(orders.c.channel.in_(["taobao", "website"])))
        stocked = read_frame(conn, select(stock_levels.c.item_code).distinct().where(stock_levels.c.on_hand > 0))
    codes = sorted(stocked["item_code"])
    with engine.begin() as conn:
        insert_rows(conn, channel_listings, pd.DataFrame(
            [{"channel": "taobao", "item_code": c, "listing_id": str(600_000 + n)} for n, c in enumerate(codes)]
            + [{"channel": "website", "item_code": c, "listing_id": str(9_000 + n)} for n, c in enumerate(codes)]),
            on_conflict=["channel", "item_code"])  # fmt: skip
    with TaobaoStandin(app_key=creds["app_key"], app_secret=creds["app_secret"], session=creds["session"]) as top, \
            WooCommerceStandin(consumer_key=creds["ck"], consumer_secret=creds["cs"]) as shop:
        for row in landed.to_dict("records"):
            record = json.loads(row["content"])
            (top.add_trade if row["channel"] == "taobao" else shop.add_order)(record)
        for n, code in enumerate(codes):
            top.add_listing(600_000 + n)
            shop.add_product(9_000 + n, code)
        top.faults.add("lost", match={"method": OFFLINE_SEND})  # one answer lost: the retry hears B04, done
        confirmed = confirm_shipments(top_url=top.url, woo_url=shop.url)
        again = confirm_shipments(top_url=top.url, woo_url=shop.url)
        stock = sync_channel_stock(top_url=top.url, woo_url=shop.url)
        unchanged = sync_channel_stock(top_url=top.url, woo_url=shop.url)
        platform_calls, notes = len(top.confirmations), sum(len(v) for v in shop.notes.values())
    with engine.connect() as conn:  # issue 18: a merged parcel is confirmed on each of its orders' channels
        shared = read_frame(conn, select(channel_confirmations.c.waybill_no, channel_confirmations.c.order_id))
    return {
        "confirmed": confirmed["confirmed"] + again["confirmed"],
        "already_shipped": confirmed["already"] + again["already"],
        "customers_told": confirmed["notified"], "still_pending": again["pending"],
        "platform_confirmations": platform_calls, "website_notes": notes,
        "deadlines": {k: confirmed["deadlines"][k] for k in ("warning", "escalated", "missed")},
        "stock_pushed": stock["pushed"], "stock_refused": stock["refused"], "stock_pushed_again": unchanged["pushed"],
        "merged_parcels_confirmed": int((shared.groupby("waybill_no")["order_id"].nunique() > 1).sum()),
    }  # fmt: skip
