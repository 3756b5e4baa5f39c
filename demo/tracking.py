"""Tracking data for tests, the benchmark and the demo: shipped orders with shipments, and the stand-in carrier
told about them (each waybill gets a route scenario: most normal, some delayed, damaged, lost, refused…).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date, datetime, timedelta

import pandas as pd
from sqlalchemy import Connection, select

from yidi.bulk import insert_rows, read_frame
from yidi.schema import orders, shipments

DEMO_SCENARIO_WEIGHTS = {
    "normal": 0.70, "delayed": 0.08, "stale": 0.04, "problem": 0.04, "refused": 0.04, "returned": 0.03,
    "damaged": 0.04, "lost": 0.03,
}  # fmt: skip
CARRIERS = ["yuantong", "zhongtong", "shunfeng", "yunda", "jd"]
DESTINATIONS = [
    ("北京市", "北京市", "朝阳区"), ("上海市", "上海市", "浦东新区"), ("广东省", "广州市", "天河区"),
    ("四川省", "成都市", "武侯区"), ("浙江省", "杭州市", "西湖区"), ("湖北省", "武汉市", "江汉区"),
    ("陕西省", "西安市", "雁塔区"), ("新疆维吾尔自治区", "乌鲁木齐市", "天山区"),
]  # fmt: skip


def make_shipped_orders(
    conn: Connection,
    n: int,
    *,
    shipped_at: datetime,
    expected_delivery_date: date | None = None,
    carriers: Sequence[str] = CARRIERS,
    prefix: str = "T",
    seed: int = 1,
    insured_every: int = 4,
) -> pd.DataFrame:
    """``n`` orders in state shipped, one shipment each; returns shipment_id, order_id, carrier, waybill_no."""
    rng = random.Random(seed)
    idx = range(n)
    dest = [DESTINATIONS[i % len(DESTINATIONS)] for i in idx]
    order_frame = pd.DataFrame(
        {
            "order_no": [f"YD{prefix}{i:08d}" for i in idx],
            "channel": "website",
            "channel_order_id": [f"{prefix}{i}" for i in idx],
            "customer_name": [rng.choice("王李张刘陈") + rng.choice(["伟", "芳", "娜", "敏"]) for _ in idx],
            "customer_phone": [f"13{rng.randint(100_000_000, 999_999_999)}" for _ in idx],
            "customer_email": [f"c{prefix.lower()}{i}@example.com" for i in idx],
            "ship_province": [d[0] for d in dest],
            "ship_city": [d[1] for d in dest],
            "ship_district": [d[2] for d in dest],
            "ship_detail": "人民路1号",
            "region": "remote",
            "goods_total_fen": 50_000,
            "order_total_fen": 50_000,
            "state": "shipped",
        }
    )
    insert_rows(conn, orders, order_frame)
    ids = read_frame(
        conn,
        select(orders.c.id, orders.c.order_no).where(orders.c.order_no.in_(order_frame["order_no"].tolist())),
    )
    by_no = dict(zip(ids["order_no"], ids["id"], strict=True))
    ship_frame = pd.DataFrame(
        {
            "shipment_no": [f"SH{prefix}{i:08d}" for i in idx],
            "order_id": [int(by_no[no]) for no in order_frame["order_no"]],
            "warehouse": "CQ-XY",
            "carrier": [carriers[i % len(carriers)] for i in idx],
            "waybill_no": [
                f"{prefix}{carriers[i % len(carriers)][:2].upper()}{7_000_000_000 + i}" for i in idx
            ],
            "idempotency_key": [f"track-{prefix}-{i}" for i in idx],
            "status": "info_received",
            "declared_value_fen": 50_000,
            "insured": [insured_every > 0 and i % insured_every == 0 for i in idx],
            "freight_fen": 1_800,
            "expected_delivery_date": expected_delivery_date,
            "shipped_at": shipped_at,
        }
    )
    insert_rows(conn, shipments, ship_frame)
    return read_frame(
        conn,
        select(
            shipments.c.id.label("shipment_id"),
            shipments.c.order_id,
            shipments.c.carrier,
            shipments.c.waybill_no,
        )
        .where(shipments.c.shipment_no.in_(ship_frame["shipment_no"].tolist()))
        .order_by(shipments.c.id),
    )


def standin_registrations(
    conn: Connection,
    *,
    scenario_weights: dict[str, float] | None = None,
    scenarios: dict[str, str] | None = None,
    seed: int = 7,
) -> list[dict]:
    """Rows for ``CarrierState.register_many`` from the store's shipments (scenario by waybill, deterministic)."""
    frame = read_frame(
        conn,
        select(
            shipments.c.carrier, shipments.c.waybill_no, shipments.c.shipped_at, shipments.c.created_at,
            orders.c.customer_phone, orders.c.ship_city, orders.c.ship_district,
        )
        .join(orders, orders.c.id == shipments.c.order_id)
        .where(shipments.c.waybill_no.is_not(None)),
    )  # fmt: skip
    weights = scenario_weights or {"normal": 1.0}
    names, values = zip(*weights.items(), strict=True)
    rows = []
    for com, num, shipped, created, phone, city, district in zip(
        *(frame[c].tolist() for c in frame.columns), strict=True
    ):
        scenario = (scenarios or {}).get(num) or random.Random(f"{seed}:{num}").choices(
            names, weights=values
        )[0]
        start = shipped if isinstance(shipped, datetime) else created
        rows.append(
            {"com": com, "num": num, "shipped_at": start.isoformat(), "phone": phone, "city": city,
             "district": district, "scenario": scenario}
        )  # fmt: skip
    return rows


def demo_expected_date(shipped_at: datetime, working_days: int = 2) -> date:
    from yidi.workdays import add_working_days

    return add_working_days(shipped_at + timedelta(hours=8), working_days).date()
