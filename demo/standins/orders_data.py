"""Deterministic demo orders in a neutral shape, which each channel's stand-in renders in its own format.

Built on ``demo.data`` (catalog, customers in every province incl. Chongqing), plus the address shapes
customers really write: Chongqing districts without "重庆", the pre-2025 names 江北区/渝北区, names shared by several
cities (江北区, 朝阳区, 鼓楼区) without a city, free-text addresses, and a few foreign ones. ``bad_orders`` are the
records that must end in quarantine (or be stored safely): no lines, non-numeric quantity, SQL-looking and very
long strings.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from demo.data import demo_catalog, demo_customers, demo_orders

# (province, city, district, detail, country) variants applied to some orders
ADDRESS_VARIANTS = [
    ("", "", "万州区", "高笋塘商圈5号", "CN"),  # Chongqing county-level name without 重庆
    ("", "", "酉阳县", "桃花源大道18号", "CN"),
    ("重庆市", "重庆市", "江北区", "观音桥步行街9号", "CN"),  # old name, now 两江新区
    ("重庆", "", "渝北区", "新牌坊二路3号", "CN"),
    ("", "", "江北区", "人民路132号", "CN"),  # ambiguous: Chongqing or Ningbo
    ("", "", "朝阳区", "建国路93号", "CN"),  # ambiguous: Beijing or Changchun
    ("", "", "", "四川省成都市武侯区人民南路四段1号", "CN"),  # free text only
    ("", "", "", "重庆市沙坪坝区三峡广场12号", "CN"),
    ("California", "San Jose", "", "1 Infinite Loop", "US"),
    ("", "Singapore", "", "10 Anson Road #20-01", "SG"),
]


def _fen(yuan: str) -> int:
    whole, _, frac = str(yuan).partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def demo_neutral_orders(n: int, *, seed: int = 11, start: datetime | None = None,
                        variant_share: float = 0.08) -> list[dict]:
    """``n`` orders (newest last) with lines, modified time = order time + a few minutes."""
    if n <= 0:
        return []
    start = start or (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    catalog = demo_catalog()
    customers = demo_customers()
    rows = demo_orders(n, customers, catalog, seed=seed, start=start)
    rng = np.random.default_rng(seed + 1)
    span = timedelta(days=1, hours=12)
    offsets = np.sort(rng.integers(0, int(span.total_seconds()), size=n))
    variants = rng.random(n) < variant_share
    variant_pick = rng.integers(0, len(ADDRESS_VARIANTS), size=n)
    freight = rng.choice([0, 0, 800, 1200, 2000], size=n)
    discount = rng.choice([0, 0, 0, 500, 1000], size=n)
    notes = rng.choice(["", "", "", "请尽快发货", "周末送货", "开增值税专用发票"], size=n)
    minutes = rng.integers(1, 30, size=n)
    columns = {c: rows[c].tolist() for c in ("order_ref", "customer_name", "phone", "email", "province", "city",
                                             "district", "detail", "payment_method", "item_code", "item_name",
                                             "spec", "model", "quantity", "unit_price")}
    orders: list[dict] = []
    by_ref: dict[str, dict] = {}
    for j, ref in enumerate(columns["order_ref"]):  # rows are grouped by order, lines in order
        line = {
            "code": columns["item_code"][j],
            "name": columns["item_name"][j],
            "spec": columns["spec"][j],
            "model": columns["model"][j],
            "qty": int(columns["quantity"][j]),
            "price_fen": _fen(columns["unit_price"][j]),
        }
        if ref in by_ref:
            by_ref[ref]["lines"].append(line)
            continue
        i = int(ref) - 1
        order_time = start + timedelta(seconds=int(offsets[i]))
        where = (columns["province"][j], columns["city"][j], columns["district"][j], columns["detail"][j], "CN")
        if variants[i]:
            where = ADDRESS_VARIANTS[variant_pick[i]]
        order = {
            "ref": ref,
            "order_time": order_time,
            "modified": order_time + timedelta(minutes=int(minutes[i])),
            "customer_name": columns["customer_name"][j],
            "phone": columns["phone"][j],
            "email": columns["email"][j],
            "province": where[0],
            "city": where[1],
            "district": where[2],
            "detail": where[3],
            "country": where[4],
            "postcode": "",
            "payment_method": columns["payment_method"][j],
            "lines": [line],
            "freight_fen": int(freight[i]),
            "discount_fen": int(discount[i]),
            "note": str(notes[i]),
            "status": "paid",
        }
        by_ref[ref] = order
        orders.append(order)
    for order in orders:
        order["goods_fen"] = sum(line["qty"] * line["price_fen"] for line in order["lines"])
        order["discount_fen"] = min(order["discount_fen"], order["goods_fen"] // 2)
    return orders


SQL_LOOKING = "Robert'); DROP TABLE orders;--"
LONG_TEXT = "很长的字段" * 2000  # 10,000 characters


def hostile_order(base: dict, ref: str) -> dict:
    """A valid order whose text fields are SQL-looking or very long (must be stored safely or quarantined)."""
    order = dict(base)
    order.update(
        ref=ref,
        customer_name=SQL_LOOKING,
        detail=f"{SQL_LOOKING} 1号",
        note=LONG_TEXT,
        lines=[dict(base["lines"][0], name=f"{SQL_LOOKING}", spec="' OR '1'='1")],
    )
    return order


def overlong_order(base: dict, ref: str) -> dict:
    order = dict(base)
    order.update(ref=ref, customer_name=LONG_TEXT)
    return order
