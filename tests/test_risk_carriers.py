"""K3 carrier scorecard: a carrier late on one route is penalised there only, fulfilment's carrier choice reads the
standing through the core, and a high-value shipment that went out uninsured becomes a finding."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
from risk_data import AS_OF, add_customer, add_incident, add_order, add_shipment
from sqlalchemy import select

from tasks.fulfilment.carrier_choice import choose_carriers
from tasks.fulfilment.rate_cards import rate_table
from tasks.risk.carrier_steps import assess_carriers
from yidi.carrier_routes import route_standing
from yidi.schema_risk import carrier_route_scores, risk_findings
from yidi.settings import load_settings

SETTINGS = load_settings()
SHIPPED = datetime(2026, 10, 10, 2, tzinfo=UTC)


def _shipments(conn, cid, carrier, province, on_time: int, late: int, **values):
    ids = []
    for i in range(on_time + late):
        oid = add_order(conn, cid, received_at=SHIPPED, ship_province=province, state="delivered")
        delivered = datetime(2026, 10, 12 if i < on_time else 15, 3, tzinfo=UTC)
        ids.append((add_shipment(conn, oid, carrier, shipped_at=SHIPPED, delivered_at=delivered,
                                 expected_delivery_date=date(2026, 10, 13), **values), oid))  # fmt: skip
    return ids


def test_a_carrier_late_on_one_route_is_penalised_on_that_route_only(engine):
    with engine.begin() as conn:
        cid = add_customer(conn, "CR")
        _shipments(conn, cid, "zhongtong", "四川省", on_time=4, late=1)  # 80 %: below 90 %, above 70 %
        _shipments(conn, cid, "zhongtong", "贵州省", on_time=5, late=0)
        _shipments(conn, cid, "shunfeng", "四川省", on_time=0, late=2)  # too few to judge
        broken = _shipments(conn, cid, "yunda", "云南省", on_time=5, late=0)
        for shipment_id, order_id in broken[:1]:  # 1 of 5 damaged: 20 % > 5 %: excluded
            add_incident(conn, shipment_id, order_id, "damaged", SHIPPED, carrier="yunda")
        _shipments(
            conn, cid, "ems", "西藏自治区", on_time=1, late=0, declared_value_fen=600_000, insured=False
        )
        _shipments(
            conn, cid, "ems", "西藏自治区", on_time=1, late=0, declared_value_fen=600_000, insured=True
        )
        _shipments(
            conn, cid, "ems", "西藏自治区", on_time=1, late=0, declared_value_fen=400_000, insured=False
        )
    result = assess_carriers(engine, SETTINGS, "2026-10", AS_OF)
    assert (result["routes"], result["penalised"], result["excluded"], result["uninsured"]) == (5, 1, 1, 1)
    with engine.connect() as conn:
        scores = pd.read_sql(select(carrier_route_scores), conn).set_index(["carrier", "province"])
        standing = route_standing(conn, AS_OF)
        found = pd.read_sql(
            select(risk_findings.c.check_code, risk_findings.c.finding_key, risk_findings.c.owner), conn
        )
    assert scores.loc[("zhongtong", "四川省"), "on_time_rate"] == 0.8
    assert scores.loc[("zhongtong", "四川省"), "status"] == "penalised"
    assert scores.loc[("zhongtong", "贵州省"), "status"] == "ok"
    assert scores.loc[("shunfeng", "四川省"), "status"] == "too_few"
    assert scores.loc[("yunda", "云南省"), ["damage_rate", "status"]].tolist() == [0.2, "excluded"]
    assert sorted(zip(standing["carrier"], standing["province"], standing["status"], strict=True)) == [
        ("yunda", "云南省", "excluded"),
        ("zhongtong", "四川省", "penalised"),
    ]
    assert sorted(found["check_code"]) == [
        "CARRIER_ROUTE_EXCLUDED",
        "CARRIER_ROUTE_PENALISED",
        "UNINSURED_HIGH_VALUE",
    ]
    assert set(found["owner"]) == {"logistics@example.com"}
    # The standing lapses when it is older than the previous month.
    with engine.connect() as conn:
        assert route_standing(conn, datetime(2027, 1, 5, tzinfo=UTC)).empty
    # A re-run changes nothing.
    assert assess_carriers(engine, SETTINGS, "2026-10", AS_OF)["findings"] == 0

    pol = SETTINGS.fulfilment
    rows = pd.DataFrame([{"shipment_key": i, "province": p, "weight_kg": 1.0, "volume_m3": 0.001,
                          "declared_value_fen": 10_000, "cod_amount_fen": 0, "promised_date": None}
                         for i, p in enumerate(["四川省", "贵州省", "云南省"])])  # fmt: skip

    def ranks(**kwargs):
        options = choose_carriers(rows, rate_table(pol), dispatch_day=date(2026, 11, 27), insurance_threshold_fen=500_000,
                                  **kwargs).options  # fmt: skip
        return options.set_index(["shipment_key", "carrier"])

    before = ranks()
    after = ranks(route_standing=standing, route_penalty_pct=1000)
    eligible_sichuan = int(before.loc[0]["eligible"].sum())
    assert after.loc[(0, "zhongtong"), "rank"] == eligible_sichuan  # ranked last on the penalised route
    assert after.loc[(1, "zhongtong"), "rank"] == before.loc[(1, "zhongtong"), "rank"]  # Guizhou unchanged
    assert not after.loc[(2, "yunda"), "eligible"]
    assert after.loc[(2, "yunda"), "excluded_reason"] == "excluded on this route (carrier scorecard)"
    assert after.loc[(1, "yunda"), "eligible"] == before.loc[(1, "yunda"), "eligible"]
