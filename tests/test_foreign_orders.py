"""A website order shipped abroad keeps its whole address, decoded text and an E.164 phone (issue 12, Build 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from intake_support import woo_connector
from sqlalchemy import select

from connectors.base import Batch, make_records
from connectors.woocommerce import DEFAULT_PAYMENT_METHODS, parse_orders
from tasks.intake.landing import land_batch
from tasks.intake.normalise import normalise, normalise_phone_column
from yidi.phone import foreign_phones
from yidi.schema import order_lines, orders

SAMPLE = Path(__file__).parent / "data" / "formats" / "woocommerce_order_abroad.json"


def _normalised(order: dict):
    parsed = parse_orders([json.dumps(order)], DEFAULT_PAYMENT_METHODS)
    assert parsed.problems.empty, parsed.problems
    return parsed, normalise(parsed)


def test_an_order_shipped_abroad_keeps_country_state_city_lines_and_postcode():
    parsed, done = _normalised(json.loads(SAMPLE.read_text(encoding="utf-8")))
    row = done.orders.iloc[0]
    assert (row["ship_country"], row["ship_province"], row["ship_city"], row["ship_detail"], row["ship_postcode"]) == (
        "US", "CA", "Mountain View", "1600 Amphitheatre Parkway Bldg 40", "94043")
    assert row["region"] == "remote"
    assert row["region_note"] == "foreign address: 美国"
    assert pd.isna(row["ship_admin_code"])
    assert (row["customer_phone"], row["phone_kind"]) == ("+16502530000", "foreign")
    # HTML entities as WordPress stores them are decoded in names and text.
    assert done.lines["item_name"].tolist() == ["Sichuan pepper – 250 g"]
    assert row["customer_name"] == "Mary O'Brien"
    assert json.loads(parsed.orders.iloc[0]["source_extra"])["company"] == "Smith & Sons"


def test_hong_kong_order_keeps_the_city_the_gazetteer_does_not_know():
    order = json.loads(SAMPLE.read_text(encoding="utf-8"))
    order["shipping"].update(country="HK", state="KOWLOON", city="Tsim Sha Tsui", address_1="100 Nathan Road",
                             address_2="", postcode="")
    order["billing"]["phone"] = "2123 4567"
    row = _normalised(order)[1].orders.iloc[0]
    assert (row["ship_country"], row["ship_province"], row["ship_city"], row["ship_detail"]) == (
        "HK", "香港特别行政区", "Tsim Sha Tsui", "100 Nathan Road")
    assert (row["region"], row["ship_admin_code"]) == ("remote", "810000")
    assert (row["customer_phone"], row["phone_kind"]) == ("+85221234567", "foreign")


def test_domestic_orders_keep_the_chinese_phone_reading():
    order = json.loads(SAMPLE.read_text(encoding="utf-8"))
    order["shipping"].update(country="CN", state="CN23", city="重庆市", address_1="渝中区解放碑 1 号", address_2="",
                             postcode="400010")
    order["billing"]["phone"] = "+86 138-1234-5678"
    row = _normalised(order)[1].orders.iloc[0]
    assert (row["ship_country"], row["ship_province"], row["ship_district"], row["region"]) == (
        "CN", "重庆市", "渝中区", "local")
    assert (row["customer_phone"], row["phone_kind"]) == ("13812345678", "mobile")


def test_foreign_phones_read_in_the_destination_numbering():
    values = pd.Series(["(650) 253-0000", "020 7946 0958", "13812345678", "+86 138 1234 5678", "abc", None])
    regions = pd.Series(["US", "GB", "US", "JP", "DE", "FR"])
    got = foreign_phones(values, regions)
    assert got.fillna("-").tolist() == ["+16502530000", "+442079460958", "-", "-", "-", "-"]
    # A UK number is not read as a Guangzhou landline (020-…) on an order to GB; a Chinese mobile given on an
    # order to the US stays a Chinese mobile.
    stored, kinds = normalise_phone_column(values[:3], regions[:3])
    assert stored.tolist() == ["+16502530000", "+442079460958", "13812345678"]
    assert kinds.tolist() == ["foreign", "foreign", "mobile"]


def test_the_whole_foreign_address_is_stored(engine):
    connector = woo_connector("http://127.0.0.1:9")  # nothing is fetched: the batch is landed directly
    records = make_records([SAMPLE.read_text(encoding="utf-8")], "woocommerce:/wp-json/wc/v3/orders#page=1",
                           content_type="application/json", source_keys=["897"])
    land_batch(engine, connector, Batch(records, label="page 1/1"))
    with engine.connect() as conn:
        row = conn.execute(select(orders.c.ship_country, orders.c.ship_province, orders.c.ship_city,
                                  orders.c.ship_detail, orders.c.ship_postcode, orders.c.region,
                                  orders.c.customer_phone)).one()
        names = conn.execute(select(order_lines.c.item_name)).scalars().all()
    assert tuple(row) == ("US", "CA", "Mountain View", "1600 Amphitheatre Parkway Bldg 40", "94043", "remote",
                          "+16502530000")
    assert names == ["Sichuan pepper – 250 g"]
