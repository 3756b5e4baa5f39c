"""The demo's carrier stage (flow ``tracking-demo``), and tracking data for tests, the benchmark and the demo:
shipped orders with shipments, and the stand-in carrier told about them (each waybill gets a route scenario: most
normal, some delayed, damaged, lost, refused…).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from datetime import date, datetime
from functools import partial

import pandas as pd
from prefect import flow, get_run_logger
from sqlalchemy import Connection, select

from connectors.kuaidi100_push import PushReceiver
from demo.standins.kuaidi100 import start
from demo.standins.parcel_routes import SimClock
from flows.naming import run_name
from flows.tracking import ensure_rate_limit, intercept_parcels, poll_carriers
from tasks.tracking.polling import make_client, make_pacer
from tasks.tracking.pushes import apply_landed_batch, receive_push
from yidi.bulk import insert_rows, read_frame
from yidi.db import get_engine
from yidi.lifecycle import record_events
from yidi.schema import orders, shipments
from yidi.schema_tracking import carrier_interceptions
from yidi.settings import get_settings

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


@flow(name="tracking-demo", flow_run_name=run_name("tracking demo"))
def tracking_demo(
    cycles: int = 8,
    hours_per_cycle: float = 12.0,
    requests_per_second: float = 200.0,
    push_share: float = 0.2,
    seed: int = 7,
    cancel_in_transit: int = 2,
    refund_too_late: int = 1,
) -> dict:
    """The demo's carrier stage: the stand-in carrier learns the store's shipments (most travel normally; some are
    delayed, go silent, get damaged or lost, are refused or returned), simulated time advances ``hours_per_cycle``
    per step, pushes arrive for a share of subscribed waybills, and ``poll-carriers`` runs each step.

    Interception (issue 18): the platform closes ``cancel_in_transit`` trades whose parcels are still on the way
    and refunds ``refund_too_late`` whose parcel the carrier is already delivering; ``intercept-parcels`` runs
    each step before polling: the first come back into stock (orders closed), the other is too late and is
    delivered anyway (after-sales).
    """
    logger = get_run_logger()
    policy = get_settings().tracking
    # Demo account for the stand-in; a real deployment sets these in its environment.
    for env, value in ((policy.customer_env, "demo-customer"), (policy.key_env, "demo-key"),
                       (policy.salt_env, "demo-salt"), (policy.interception.secret_env, "demo-secret")):  # fmt: skip
        os.environ.setdefault(env, value)
    customer, key, salt = (
        os.environ[policy.customer_env],
        os.environ[policy.key_env],
        os.environ[policy.salt_env],
    )
    engine = get_engine()
    with engine.connect() as conn:
        registrations = standin_registrations(conn, scenario_weights=DEMO_SCENARIO_WEIGHTS, seed=seed)
    if not registrations:
        logger.warning("no shipments with waybills: nothing to track")
        return {"shipments": 0}
    first = min(datetime.fromisoformat(r["shipped_at"]) for r in registrations)
    ensure_rate_limit(policy.rate_limit_name, requests_per_second)
    ensure_rate_limit(policy.cycle_lock_name, 1, decay=0.0)
    clock = SimClock(first)
    pushed_share = max(0, min(len(registrations), round(len(registrations) * push_share)))
    cycles_run = []
    # The same push receiver as `yidi tracking callbacks` (app/callbacks.py), on a free port.
    receiver = PushReceiver(partial(receive_push, engine, policy), salt, host=policy.callback_host, port=0,
                            path=policy.callback_path, clock=clock.now,
                            apply=lambda: apply_landed_batch(engine, policy, clock.now()))  # fmt: skip
    wanted = {"cancelled": cancel_in_transit, "refunded": refund_too_late}
    intercepts: list[dict] = []
    with start(customer=customer, key=key, clock=clock, seed=seed,
               secret=os.environ[policy.interception.secret_env]) as carrier, receiver:  # fmt: skip
        carrier.register_many(registrations)
        subscribe = [r["num"] for r in registrations[:pushed_share]]
        paced = policy.model_copy(update={"requests_per_second": requests_per_second})
        with make_client(
            paced, pacer=make_pacer(paced, shared_limit=False), query_url=carrier.query_url,
            subscribe_url=carrier.subscribe_url,
        ) as client:  # fmt: skip
            for num in subscribe:
                com = next(r["com"] for r in registrations if r["num"] == num)
                client.subscribe(com, num, receiver.url)
        for step in range(cycles):
            clock.advance(hours=hours_per_cycle)
            pushes = carrier.push_updates()
            if any(wanted.values()):
                closed = _platform_closes_trades(engine, carrier, clock.now(), wanted)
                logger.info("step %d: the platform closed or refunded %s", step + 1, closed or "nothing")
            intercepts.append(intercept_parcels(as_of=clock.now(), url=carrier.intercept_url))
            summary = poll_carriers(
                as_of=clock.now(), query_url=carrier.query_url, subscribe_url=carrier.subscribe_url,
                requests_per_second=requests_per_second,
            )  # fmt: skip
            cycles_run.append(
                {"step": step + 1, "as_of": summary["as_of"], "pushes": len(pushes), "due": summary["due"],
                 "outcomes": summary["outcomes"], "exceptions": summary["exceptions"]}
            )  # fmt: skip
            logger.info("step %d: %d pushes, polled %d, exceptions %s", step + 1, len(pushes), summary["due"],
                        summary["exceptions"])  # fmt: skip
        receiver_counts = dict(receiver.counts)
        intercepts.append(intercept_parcels(as_of=clock.now(), url=carrier.intercept_url))  # the last outcomes
    totals = {k: sum(i[k] for i in intercepts) for k in ("requested", "too_late", "returning", "returned",
                                                          "delivered")}  # fmt: skip
    totals["restocked_units"] = sum(i["restocked"]["units"] for i in intercepts)
    return {"shipments": len(registrations), "cycles": cycles_run, "receiver": receiver_counts,
            "interceptions": totals}


def _platform_closes_trades(engine, carrier, now: datetime, wanted: dict[str, int]) -> list[str]:
    """The demo's platform closes (cancels) trades whose parcel the carrier has not yet put out for delivery, and
    refunds ones it already has; written as intake records such changes (the new source status, a ``change``
    event). Which parcel is where is read from the stand-in carrier's own routes. Decrements ``wanted``."""
    s, o, ci = shipments.c, orders.c, carrier_interceptions.c
    with engine.connect() as conn:
        open_parcels = read_frame(conn, select(s.order_id, s.waybill_no, o.order_no, o.source_status)
                                  .join(orders, o.id == s.order_id)
                                  .where(s.status.in_(["info_received", "picked_up", "in_transit"]),
                                         o.state.in_(["shipped", "in_transit"]),
                                         ~s.id.in_(select(ci.shipment_id))).order_by(s.id))  # fmt: skip
    done = []
    for row in open_parcels.to_dict("records"):
        reg = carrier.state.waybills.get(row["waybill_no"])
        if reg is None or reg.scenario != "normal":
            continue
        seen = carrier.state.visible(reg, now)
        newest = seen[-1].state if seen else None
        kind = ("cancelled" if newest in (None, 0, 1) else "refunded" if newest in (3, 5) else None)
        if kind is None or wanted.get(kind, 0) <= 0:
            continue
        status = "TRADE_CLOSED" if kind == "cancelled" else "refunded"
        with engine.begin() as conn:
            conn.execute(orders.update().where(orders.c.id == int(row["order_id"])).values(source_status=status))
            record_events(conn, pd.DataFrame([{
                "order_id": int(row["order_id"]), "kind": "change", "occurred_at": now,
                "reason": f"changed at the source: status {row['source_status']} → {status} (demo platform)",
                "details": {"source_status": [row["source_status"], status]}}]), actor="intake")  # fmt: skip
        wanted[kind] -= 1
        done.append(f"{row['order_no']} ({kind})")
    return done
