"""After-sales on both databases: requests land once (raw records kept, unreadable ones quarantined), the seven-day
rule on the Asia/Shanghai calendar boundary, returns inspected (good back to stock, damaged not), refunds sent
exactly once through the provider stand-ins, settlement matching refunds to cases, an exchange shipped once."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from aftersales_support import (
    add_order,
    assess,
    build_reference,
    case_of,
    local,
    order_state,
    request,
    signed_refund_policy,
)
from sqlalchemy import func, select

from demo.standins.refunds import RefundStandIn
from tasks.aftersales.refunds import make_refund_clients, send_refunds
from tasks.aftersales.returns import ReturnError, create_replacements, receive_returns
from tasks.aftersales.store import case_lines
from tasks.fulfilment.returns import restock_returns
from yidi.bulk import read_frame
from yidi.schema import notification_outbox, orders
from yidi.schema_aftersales import aftersales_cases, aftersales_inbox, refund_requests
from yidi.schema_fulfilment import stock_levels
from yidi.settings import get_settings

# Delivered 00:30 on 2 Dec in Chongqing, which is still 1 Dec in UTC: the seven days run to 9 Dec, not 8 Dec.
DELIVERED = local(2026, 12, 2, 0, 30)


@pytest.fixture
def store(engine):
    build_reference(engine)
    return engine


def test_the_seven_days_end_on_the_business_calendar_not_in_utc(store):
    add_order(store, "YD-IN", {"SKU-0009": 2}, delivered=DELIVERED)
    add_order(store, "YD-OUT", {"SKU-0009": 2}, delivered=DELIVERED)
    request(store, "YD-IN", "退货", local(2026, 12, 9, 23, 50))
    request(store, "YD-OUT", "return", local(2026, 12, 10, 0, 5))
    assert order_state(store, "YD-IN") == "after_sales"
    assert assess(store, local(2026, 12, 10, 9)) == {"return": 1, "reject": 1}
    inside, outside = case_of(store, "YD-IN"), case_of(store, "YD-OUT")
    assert (inside["decision_rule"], inside["status"], inside["freight_payer"]) == (
        "NO_REASON_RETURN_7D", "awaiting_return", "customer")
    assert inside["received_date"] == date(2026, 12, 2) and inside["refund_fen"] == 2 * 7900
    assert (outside["decision_rule"], outside["status"]) == ("NO_REASON_WINDOW_PASSED", "rejected")
    assert "第二十五条" in outside["decision_citation"]
    assert order_state(store, "YD-OUT") == "delivered"  # nothing to return: back where it was
    with store.connect() as conn:
        templates = read_frame(conn, select(notification_outbox.c.template, notification_outbox.c.context))
    decisions = templates[templates["template"] == "aftersales_decision"]
    assert len(decisions) == 4  # two cases, SMS and mail each
    assert any("NO_REASON_WINDOW_PASSED" in c for c in decisions["context"])


def test_exceptions_and_quality_problems_on_the_store(store):
    add_order(store, "YD-FOOD", {"SKU-0004": 3}, delivered=DELIVERED)
    add_order(store, "YD-DESK", {"SKU-0012": 1}, delivered=DELIVERED)
    add_order(store, "YD-Q-IN", {"SKU-0001": 1}, delivered=DELIVERED)
    add_order(store, "YD-Q-OUT", {"SKU-0001": 1}, delivered=DELIVERED)
    request(store, "YD-FOOD", "return", local(2026, 12, 3))
    request(store, "YD-DESK", "return", local(2026, 12, 3))
    request(store, "YD-Q-IN", "return", local(2026, 12, 9), quality_problem=True)
    request(store, "YD-Q-OUT", "return", local(2026, 12, 20), quality_problem=True)
    assess(store, local(2026, 12, 21))
    assert case_of(store, "YD-FOOD")["decision_rule"] == "NO_REASON_EXCEPTION_FRESH_PERISHABLE"
    assert case_of(store, "YD-DESK")["decision_rule"] == "NO_REASON_EXCEPTION_MADE_TO_ORDER"
    assert (case_of(store, "YD-Q-IN")["decision"], case_of(store, "YD-Q-IN")["freight_payer"]) == ("return", "company")
    out = case_of(store, "YD-Q-OUT")
    assert (out["decision"], out["decision_rule"], out["status"]) == ("repair", "QUALITY_REPAIR", "repairing")


@pytest.mark.parametrize(
    ("opened", "policy_change", "rule", "clause"),
    [
        (True, {"categories": {"software": ["SKU-0009"]}, "statutory_exceptions": {"digital_unsealed": ["software"]}},
         "NO_REASON_EXCEPTION_DIGITAL_UNSEALED", "第（三）项"),
        (False, {"categories": {"magazines": ["SKU-0009"]}, "statutory_exceptions": {"periodicals": ["magazines"]}},
         "NO_REASON_EXCEPTION_PERIODICALS", "第（四）项"),
        (False, {"confirmed_non_returnable_items": ["SKU-0009"]},
         "NO_REASON_EXCEPTION_CONFIRMED_NON_RETURNABLE", "第二款"),
    ],
)  # fmt: skip
def test_the_other_statutory_exceptions_refuse_the_no_reason_return_on_the_store(store, opened, policy_change, rule,
                                                                                 clause):  # fmt: skip
    """The three exceptions the shipped catalog has no goods for, each by a policy naming SKU-0009 under it: asked
    on day 1 of the seven, the no-reason return is still refused, naming the exception's clause."""
    settings = get_settings()
    changed = settings.model_copy(update={"aftersales": settings.aftersales.model_copy(update=policy_change)})
    add_order(store, "YD-EX", {"SKU-0009": 1}, delivered=DELIVERED)
    request(store, "YD-EX", "return", local(2026, 12, 3), goods_opened=opened)
    assert assess(store, local(2026, 12, 3, 11), changed) == {"reject": 1}
    case = case_of(store, "YD-EX")
    assert (case["decision_rule"], case["status"], case["refund_fen"]) == (rule, "rejected", 0)
    assert "第二十五条" in case["decision_citation"] and clause in case["decision_citation"]


def test_a_quality_problem_after_two_failed_repairs_is_returned_on_the_store(store):
    """第二十四条: outside the seven days a quality problem is repaired, until the policy's termination condition
    (termination_after_failed_repairs = 2 repairs closed without curing it) lets the customer end the contract."""
    add_order(store, "YD-REP", {"SKU-0001": 1}, delivered=DELIVERED)
    for n, day_of_month in enumerate((15, 22), start=1):
        request(store, "YD-REP", "return", local(2026, 12, day_of_month), quality_problem=True, source_id=f"rep-{n}")
        assess(store, local(2026, 12, day_of_month, 11))
        repaired = case_of(store, "YD-REP")
        assert (repaired["decision"], repaired["decision_rule"]) == ("repair", "QUALITY_REPAIR")
        with store.begin() as conn:  # the repair is done and the case closed (yidi aftersales resolve)
            conn.execute(aftersales_cases.update().where(aftersales_cases.c.id == int(repaired["id"]))
                         .values(status="closed"))  # fmt: skip
    request(store, "YD-REP", "return", local(2026, 12, 29), quality_problem=True, source_id="rep-3")
    assess(store, local(2026, 12, 29, 11))
    ended = case_of(store, "YD-REP")
    assert (ended["decision"], ended["decision_rule"], ended["status"], ended["freight_payer"]) == (
        "return", "QUALITY_RETURN_TERMINATION", "awaiting_return", "company")
    assert ended["refund_fen"] == 328000 and "第二十四条" in ended["decision_citation"]


def test_requests_land_once_and_unreadable_ones_are_quarantined_with_the_reason(store):
    add_order(store, "YD-1", {"SKU-0009": 1}, delivered=DELIVERED)
    first = request(store, "YD-1", "return", local(2026, 12, 3), source_id="woo-refund-7")
    again = request(store, "YD-1", "return", local(2026, 12, 3), source_id="woo-refund-7")
    unknown = request(store, "YD-NOPE", "return", local(2026, 12, 3))
    odd = request(store, "YD-1", "teleport", local(2026, 12, 3))
    assert (first["landed"], again["landed"], again["duplicates"]) == (1, 0, 1)
    assert (unknown["quarantined"], odd["quarantined"]) == (1, 1)
    with store.connect() as conn:
        inbox = read_frame(conn, select(aftersales_inbox.c.status, aftersales_inbox.c.reason,
                                        aftersales_inbox.c.content).order_by(aftersales_inbox.c.id))  # fmt: skip
    assert inbox["status"].tolist() == ["landed", "quarantined", "quarantined"]
    assert "YD-NOPE is not known" in inbox["reason"].iloc[1] and "teleport" in inbox["reason"].iloc[2]
    assert '"order_no": "YD-NOPE"' in inbox["content"].iloc[1]  # the raw record is kept


def _awaiting_return(store, order_no, items, kind="return", **fields):
    add_order(store, order_no, items, delivered=DELIVERED)
    request(store, order_no, kind, local(2026, 12, 4), **fields)
    assess(store, local(2026, 12, 4, 11))
    return case_of(store, order_no)


def _stock(store, item):
    with store.connect() as conn:
        row = conn.execute(select(stock_levels.c.on_hand, stock_levels.c.quarantined).where(
            stock_levels.c.warehouse == "CQ-XY", stock_levels.c.item_code == item)).first()  # fmt: skip
    return tuple(row) if row else (0.0, 0.0)


def test_good_returns_go_back_to_stock_and_damaged_ones_do_not(store):
    good = _awaiting_return(store, "YD-GOOD", {"SKU-0009": 2})
    bad = _awaiting_return(store, "YD-BAD", {"SKU-0001": 1}, quality_problem=True)
    receipts = pd.DataFrame({"case_no": [good["case_no"], bad["case_no"]], "inspection": ["good", "damaged"],
                             "reason": [None, "外壳碎裂"], "waybill_no": ["SF-R1", "SF-R2"]})  # fmt: skip
    with store.begin() as conn:
        counts = receive_returns(conn, receipts, get_settings(), local(2026, 12, 8), actor="test")
    assert (counts["restocked"], counts["quarantined"], counts["refunds"]) == (1, 1, 2)
    for _ in range(2):  # the second run moves nothing
        with store.begin() as conn:
            restock_returns(conn, local(2026, 12, 8, 11))
    assert _stock(store, "SKU-0009") == (2.0, 0.0)  # sellable again
    assert _stock(store, "SKU-0001") == (1.0, 1.0)  # on hand but quarantined: never available
    assert order_state(store, "YD-GOOD") == "returned"
    assert case_of(store, "YD-GOOD")["refund_due_date"] == date(2026, 12, 15)
    with pytest.raises(ReturnError, match="not awaiting returned goods"), store.begin() as conn:
        receive_returns(conn, receipts.iloc[:1], get_settings(), local(2026, 12, 9))


def test_a_damaged_no_reason_return_waits_for_a_person_and_is_not_refunded(store):
    case = _awaiting_return(store, "YD-NR", {"SKU-0009": 1})
    with store.begin() as conn:
        receive_returns(conn, pd.DataFrame({"case_no": [case["case_no"]], "inspection": ["damaged"],
                                            "reason": ["使用痕迹明显"], "disposition": ["scrap"]}),
                        get_settings(), local(2026, 12, 8))  # fmt: skip
        restock_returns(conn, local(2026, 12, 8))
        refunds = conn.execute(select(func.count()).select_from(refund_requests)).scalar()
    assert case_of(store, "YD-NR")["status"] == "inspection_failed" and refunds == 0
    assert _stock(store, "SKU-0009") == (0.0, 0.0)


@pytest.mark.parametrize("route", ["alipay", "wechatpay"])
def test_a_refund_is_sent_exactly_once_when_the_answer_is_lost_and_the_task_retried(store, route, tmp_path):
    case = _awaiting_return(store, "YD-R", {"SKU-0009": 2}, quality_problem=True)
    with store.connect() as conn:
        conn.execute(orders.update().where(orders.c.order_no == "YD-R").values(payment_method=route))
        conn.commit()
    with store.begin() as conn:
        receive_returns(conn, pd.DataFrame({"case_no": [case["case_no"]], "inspection": ["good"]}), get_settings(),
                        local(2026, 12, 8))  # fmt: skip
    with RefundStandIn() as provider:
        clients = make_refund_clients(signed_refund_policy(provider, tmp_path / "keys", alipay_url=provider.url,
                                                           wechatpay_url=provider.url))  # fmt: skip
        provider.faults.add("lost")  # the provider refunds, the answer never arrives
        with store.begin() as conn:
            first = send_refunds(conn, clients, get_settings(), local(2026, 12, 8, 12))
        with store.begin() as conn:  # the retry: same out_request_no / out_refund_no
            second = send_refunds(conn, clients, get_settings(), local(2026, 12, 8, 13))
        with store.begin() as conn:  # nothing left to send
            third = send_refunds(conn, clients, get_settings(), local(2026, 12, 8, 14))
    assert (first["pending"], second["succeeded"], sum(third.values())) == (1, 1, 0)
    assert [(r["trade"], r["amount_fen"]) for r in provider.refunds] == [("YD-R", 2 * 7900)]
    assert case_of(store, "YD-R")["status"] == "closed"
    with store.connect() as conn:
        sent = read_frame(conn, select(refund_requests.c.status, refund_requests.c.attempts))
        notices = conn.execute(select(func.count()).select_from(notification_outbox).where(
            notification_outbox.c.template == "aftersales_refunded")).scalar()  # fmt: skip
    assert sent.to_dict("records") == [{"status": "succeeded", "attempts": 2}]
    assert notices == 2  # SMS and mail, once


def test_an_exchange_ships_once(store, monkeypatch):
    """The replacement order is made once however often it is asked for, and fulfilment ships it once: one
    shipment, one waybill at the carrier, even when the carrier's first answer is lost."""
    from fulfilment_data import add_stock

    from demo.standins import carrier_shipping
    from flows.compose import in_process
    from flows.fulfilment import handoff
    from yidi.schema import catalog_items, shipments

    case = _awaiting_return(store, "YD-X", {"SKU-0009": 1}, kind="换货", quality_problem=True)
    assert case["decision"] == "exchange"
    with store.begin() as conn:
        counts = receive_returns(conn, pd.DataFrame({"case_no": [case["case_no"]], "inspection": ["damaged"]}),
                                 get_settings(), local(2026, 12, 8))  # fmt: skip
    assert counts["replacements"] == 1
    with store.begin() as conn:  # a second attempt (a retried task) makes no second order
        again = create_replacements(conn, [case_of(store, "YD-X")], case_lines(conn, [int(case["id"])]),
                                    local(2026, 12, 8, 1))  # fmt: skip
    assert again == 0
    with store.connect() as conn:
        made = read_frame(conn, select(orders.c.order_no, orders.c.state, orders.c.order_total_fen)
                          .where(orders.c.channel == "aftersales"))  # fmt: skip
    assert made.to_dict("records") == [{"order_no": f"YD-X-X{int(case['id'])}", "state": "approved",
                                        "order_total_fen": 0}]  # fmt: skip
    assert case_of(store, "YD-X")["replacement_order_id"] is not None
    with store.begin() as conn:  # a good one on the shelf (the damaged one went to quarantine), weighed for pricing
        add_stock(conn, [("CQ-XY", "SKU-0009", 3)])
        conn.execute(catalog_items.update().where(catalog_items.c.code == "SKU-0009").values(weight_kg=0.5))
    monkeypatch.setenv("YIDI_DATABASE_URL", store.url.render_as_string(hide_password=False))
    with carrier_shipping.start() as carrier:
        carrier.fail_next("lost")  # the waybill is made, the answer lost: asked again with the same key
        first = handoff(in_process, carrier_api_url=carrier.url, as_of=local(2026, 12, 8, 10),
                        send_purchase_orders=False)  # fmt: skip
        second = handoff(in_process, carrier_api_url=carrier.url, as_of=local(2026, 12, 8, 11),
                         send_purchase_orders=False)  # fmt: skip
        made_at_carrier = len(carrier.created)
    assert (first["allocation"]["allocated"], second["allocation"]["allocated"]) == (1, 0)
    assert made_at_carrier == 1
    with store.connect() as conn:
        shipped = read_frame(conn, select(orders.c.order_no, orders.c.state, func.count(shipments.c.id).label("n"))
                             .join(shipments, shipments.c.order_id == orders.c.id)
                             .where(orders.c.channel == "aftersales").group_by(orders.c.order_no, orders.c.state))
    assert shipped.to_dict("records") == [{"order_no": f"YD-X-X{int(case['id'])}", "state": "shipped", "n": 1}]


def test_settlement_matches_a_refund_with_a_case_and_flags_one_without(store, tmp_path):
    from demo.standins.payment_files import write_wechatpay_bill
    from flows.compose import in_process
    from flows.settlement import reconciliation
    from yidi.schema_settlement import settlement_cases

    # Both orders are on their way (shipped): only the after-sales case explains the first one's refund.
    add_order(store, "YD-CASE", {"SKU-0009": 1}, state="shipped", delivered=None, method="wechatpay")
    add_order(store, "YD-NOCASE", {"SKU-0009": 1}, state="shipped", delivered=None, method="wechatpay")
    request(store, "YD-CASE", "仅退款", local(2026, 12, 3))
    assess(store, local(2026, 12, 3, 11))
    assert case_of(store, "YD-CASE")["decision_rule"] == "REFUND_BEFORE_RECEIPT"
    with RefundStandIn() as provider:
        clients = make_refund_clients(signed_refund_policy(provider, tmp_path / "keys", wechatpay_url=provider.url))
        with store.begin() as conn:
            assert send_refunds(conn, clients, get_settings(), local(2026, 12, 3, 12))["succeeded"] == 1
    t = local(2026, 12, 2, 9)
    bill = write_wechatpay_bill(pd.DataFrame([
        {"merchant_order_no": o, "kind": k, "amount_fen": a, "txn_time": t + pd.Timedelta(hours=h)}
        for o, k, a, h in [("YD-CASE", "payment", 7900, 0), ("YD-NOCASE", "payment", 7900, 0),
                           ("YD-CASE", "refund", -7900, 27), ("YD-NOCASE", "refund", -7900, 27)]]),
        tmp_path / "wx.csv")  # fmt: skip
    reconciliation(in_process, engine=store, files=[bill], now=local(2026, 12, 4, 9), actor="test")
    with store.connect() as conn:
        found = read_frame(conn, select(settlement_cases.c.case_class, orders.c.order_no).join(
            orders, orders.c.id == settlement_cases.c.order_id))  # fmt: skip
    flagged = found[found["case_class"] == "refund_without_return"]["order_no"].tolist()
    assert flagged == ["YD-NOCASE"]


def test_the_platforms_refund_list_lands_as_requests_against_its_trades(store):
    """A real taobao.refunds.receive.get answer (tests/data/formats/): the trade is our channel order id."""
    import json
    from pathlib import Path

    from connectors.taobao_refunds import refund_requests
    from tasks.aftersales.landing import land_requests

    answer = json.loads((Path(__file__).parent / "data/formats/taobao_refunds_receive_get_response.json")
                        .read_text(encoding="utf-8"))  # fmt: skip
    records = refund_requests(answer)
    assert records == [("refund:9001", {
        "source_id": "refund:9001", "order_channel": "taobao", "channel_order_id": "8001", "kind": "return",
        "quality_problem": True, "description": "质量问题 表面有划痕", "requested_at": "2026-09-01T10:00:00+08:00"})]
    oid = add_order(store, "YD-TB", {"SKU-0009": 1}, delivered=local(2026, 8, 30), channel="taobao")
    with store.begin() as conn:
        conn.execute(orders.update().where(orders.c.id == oid).values(channel_order_id="8001"))
        first = land_requests(conn, "taobao", records, get_settings(), local(2026, 9, 1, 11))
        again = land_requests(conn, "taobao", refund_requests(answer), get_settings(), local(2026, 9, 1, 11, 30))
    assert (first["landed"], again["duplicates"]) == (1, 1)
    assess(store, local(2026, 9, 1, 12))
    case = case_of(store, "YD-TB")
    assert (case["kind"], case["decision_rule"]) == ("return", "QUALITY_RETURN_7D")
