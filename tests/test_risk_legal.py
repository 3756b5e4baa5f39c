"""K4/P1 legal rules: each rule fires on a seeded violation and stays silent on a compliant look-alike; the
catalogue cites the law; anonymisation removes the personal fields and keeps the event trail."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
from risk_data import AS_OF, add_claim, add_customer, add_incident, add_order, add_shipment
from sqlalchemy import select

from tasks.risk import legal
from tasks.risk.legal_steps import anonymise_expired, assess_legal, evaluate_period
from yidi.bulk import insert_rows
from yidi.schema import order_events, orders
from yidi.schema_aftersales import aftersales_cases, refund_requests, returned_goods
from yidi.schema_risk import risk_findings
from yidi.settings import load_settings

SETTINGS = load_settings()


def nov(day: int) -> datetime:
    return datetime(2026, 11, day, 2, tzinfo=UTC)


def add_case(conn, order_id: int, key: str) -> int:
    insert_rows(
        conn,
        aftersales_cases,
        pd.DataFrame(
            [
                {
                    "case_no": key,
                    "request_key": key,
                    "order_id": order_id,
                    "kind": "return",
                    "requested_at": nov(8),
                }
            ]
        ),
    )
    return conn.execute(select(aftersales_cases.c.id).where(aftersales_cases.c.case_no == key)).scalar_one()


def add_return(conn, order_id: int, key: str, back: datetime, refunded: datetime) -> None:
    case_id = add_case(conn, order_id, key)
    insert_rows(conn, returned_goods, pd.DataFrame([{"case_id": case_id, "order_id": order_id, "warehouse": "CQ",
                                                     "item_code": "SKU-A", "quantity": 1.0,
                                                     "disposition": "restock", "inspected_at": back}]))  # fmt: skip
    insert_rows(conn, refund_requests, pd.DataFrame([{"idempotency_key": key, "case_id": case_id, "order_id": order_id,
                                                      "route": "alipay", "amount_fen": 10_000, "status": "succeeded",
                                                      "sent_at": refunded}]))  # fmt: skip


def build(conn) -> dict[str, int]:
    cid = add_customer(conn, "L")
    o = {name: add_order(conn, cid, received_at=nov(2)) for name in "ABCDEF"}
    add_return(conn, o["A"], "RA", nov(10), nov(20))  # refunded 10 days after the goods came back
    add_return(conn, o["B"], "RB", nov(10), nov(15))  # 5 days: compliant
    for name, promised, delivered in (("C", 5, 7), ("D", 8, 7)):
        conn.execute(
            orders.update().where(orders.c.id == o[name]).values(promised_date=date(2026, 11, promised))
        )
        add_shipment(conn, o[name], delivered_at=nov(delivered), shipped_at=nov(3))
    s_e, s_f = add_shipment(conn, o["E"], shipped_at=nov(3)), add_shipment(conn, o["F"], shipped_at=nov(3))
    add_incident(conn, s_e, o["E"], "damaged", nov(10))  # no case for the customer, no claim on the carrier
    incident_f = add_incident(conn, s_f, o["F"], "lost", nov(10))
    add_case(conn, o["F"], "RF")
    add_claim(conn, incident_f, s_f, o["F"], "filed", nov(11), nov(18))
    # E-Commerce Law 14: October orders, paid more than 30 days ago; J has its invoice.
    o["I"] = add_order(conn, cid, received_at=datetime(2026, 10, 5, tzinfo=UTC))
    o["J"] = add_order(conn, cid, received_at=datetime(2026, 10, 5, tzinfo=UTC))
    insert_rows(
        conn,
        order_events,
        pd.DataFrame(
            [
                {
                    "order_id": o["J"],
                    "occurred_at": datetime(2026, 10, 6, tzinfo=UTC),
                    "actor": "finance",
                    "kind": "invoice",
                    "reason": "发票 No.1",
                }
            ]
        ),
    )
    # PIPL 19: closed four years ago (K), the same but already anonymised (L), closed a year ago (M).
    old, recent = AS_OF - timedelta(days=4 * 365), AS_OF - timedelta(days=365)
    o["K"] = add_order(conn, cid, received_at=old, state="closed", events=[("closed", old)])
    o["L"] = add_order(
        conn,
        cid,
        received_at=old,
        state="closed",
        customer_name="（已匿名）",
        customer_phone=None,
        customer_email=None,
        ship_detail=None,
    )
    o["M"] = add_order(conn, cid, received_at=recent, state="closed", events=[("closed", recent)])
    return o


def test_each_legal_rule_fires_on_a_violation_and_not_on_its_look_alike(engine):
    with engine.begin() as conn:
        o = build(conn)
        november = evaluate_period(conn, "2026-11", AS_OF, SETTINGS)
        october = evaluate_period(conn, "2026-10", AS_OF, SETTINGS)
    fired = {rule: set(group["order_id"]) for rule, group in pd.concat([november, october]).groupby("rule")}
    assert fired == {
        "CPL25_REFUND_7D": {o["A"]},
        "ECL20_DELIVERY_PROMISED": {o["C"]},
        "ECL20_TRANSPORT_RISK": {o["E"]},
        "CC832_CARRIER_CLAIM": {o["E"]},
        "ECL14_INVOICE": {o["I"]},
    }
    result = assess_legal(engine, SETTINGS, "2026-11", AS_OF)
    assert result["violations"]["PIPL19_RETENTION"] == 1
    with engine.connect() as conn:
        found = pd.read_sql(select(risk_findings), conn).set_index("finding_key")
    pipl = found.loc["legal:PIPL19_RETENTION:2026-11"]
    assert pipl["owner"] == "legal@example.com" and "个人信息保护法》第十九条" in pipl["summary"]
    assert f'"order_ids": [{o["K"]}]' in pipl["details"]

    # The scheduled anonymisation removes K's personal fields, keeps its events and records one more.
    assert anonymise_expired(engine, SETTINGS, AS_OF)["anonymised"] == 1
    with engine.connect() as conn:
        k = conn.execute(select(orders).where(orders.c.id == o["K"])).mappings().one()
        kinds = conn.execute(select(order_events.c.kind).where(order_events.c.order_id == o["K"])
                             .order_by(order_events.c.id)).scalars().all()  # fmt: skip
        m = conn.execute(select(orders.c.customer_phone).where(orders.c.id == o["M"])).scalar_one()
    assert (k["customer_name"], k["customer_phone"], k["customer_email"], k["ship_detail"]) == (
        "（已匿名）",
        None,
        None,
        None,
    )
    assert kinds == ["state", "anonymised"] and m == "13912345678"
    assert anonymise_expired(engine, SETTINGS, AS_OF)["anonymised"] == 0
    # The next assessment re-checks the open finding: the rectification worked.
    again = assess_legal(engine, SETTINGS, "2026-11", AS_OF + timedelta(days=1))
    assert again["rechecked"]["verified"] == 1
    with engine.connect() as conn:
        state = conn.execute(
            select(risk_findings.c.state).where(
                risk_findings.c.finding_key == "legal:PIPL19_RETENTION:2026-11"
            )
        ).scalar_one()
    assert state == "verified"


def test_the_catalogue_cites_the_civil_code_not_the_contract_law():
    citations = {rule.code: rule.citation for rule in legal.RULES}
    assert citations["CPL25_REFUND_7D"] == "《中华人民共和国消费者权益保护法》第二十五条"
    assert citations["ECL20_DELIVERY_PROMISED"] == "《中华人民共和国电子商务法》第二十条"
    assert citations["ECL14_INVOICE"] == "《中华人民共和国电子商务法》第十四条"
    assert citations["CC832_CARRIER_CLAIM"] == "《中华人民共和国民法典》第八百三十二条"
    assert citations["PIPL19_RETENTION"] == "《中华人民共和国个人信息保护法》第十九条"
    assert not any("合同法" in rule.citation for rule in legal.RULES)


def test_an_invoice_recorded_for_an_order_satisfies_the_e_commerce_law_14_rule(engine):
    from risk_data import add_receivable

    from tasks.settlement.invoices import record_invoices
    from yidi.schema_settlement import receivables

    october = datetime(2026, 10, 5, tzinfo=UTC)
    with engine.begin() as conn:
        cid = add_customer(conn, "INV")
        first, second = (add_order(conn, cid, received_at=october) for _ in range(2))
        for oid in (first, second):
            add_receivable(conn, oid, cid, 10_000, 0, date(2026, 10, 6))
        numbers = dict(conn.execute(select(orders.c.id, orders.c.order_no)).all())
        fired = evaluate_period(conn, "2026-10", AS_OF, SETTINGS)
        assert sorted(fired.loc[fired["rule"] == "ECL14_INVOICE", "order_id"]) == sorted([first, second])

        issued = pd.DataFrame({"order_no": [numbers[first], "YD-NOT-OURS"], "invoice_no": ["04403260001", "1"]})
        result = record_invoices(conn, issued, now=AS_OF, actor="finance")
        assert result == {"recorded": 1, "already": 0, "unknown": ["YD-NOT-OURS"]}
        again = record_invoices(conn, issued.iloc[:1], now=AS_OF, actor="finance")
        assert again == {"recorded": 0, "already": 1, "unknown": []}
        on_ledger = dict(conn.execute(select(receivables.c.order_id, receivables.c.invoice_no)).all())
        trail = conn.execute(select(order_events.c.order_id, order_events.c.reason)
                             .where(order_events.c.kind == "invoice")).all()  # fmt: skip
        fired = evaluate_period(conn, "2026-10", AS_OF, SETTINGS)
    assert on_ledger == {first: "04403260001", second: None}
    assert [tuple(t) for t in trail] == [(first, "invoice 04403260001")]
    assert list(fired.loc[fired["rule"] == "ECL14_INVOICE", "order_id"]) == [second]
