"""Settlement reconciliation end to end on the store: ingestion faults, matching rules, payment states, cases,
receivables, dunning, idempotent reruns; the flows on the Prefect test server; the CLI."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pytest
from prefect_support import artifacts_of
from sqlalchemy import func, select, update

from demo.standins.payment_files import (
    Faults,
    utc,
    write_alipay_bill,
    write_bank_statement,
    write_cod_remittance,
    write_wechatpay_bill,
)
from flows.compose import in_process
from flows.settlement import reconciliation
from tasks.settlement.cases import change_case
from yidi.bulk import insert_rows, read_frame
from yidi.lifecycle import timeline
from yidi.schema import customers, notification_outbox, order_events, orders, shipments
from yidi.schema_settlement import (
    dunning_actions,
    payment_lines,
    payment_matches,
    receivables,
    settlement_cases,
    statement_files,
)

NOW = utc(2026, 11, 20, 9, 30, 0)
DAY = pd.Timedelta(days=1)


def reconcile(engine, **kwargs) -> dict:
    """The `reconcile-settlements` step list in this process, on this test's store."""
    return reconciliation(in_process, engine=engine, **kwargs)

ORDERS = [
    # order_no, customer, method, total_fen, state, days before NOW
    ("YD2026110001", 1, "alipay", 10000, "delivered", 3),
    ("YD2026110002", 1, "wechatpay", 20000, "approved", 2),
    ("YD2026110003", 2, "bank_transfer", 300000, "delivered", 15),
    ("YD2026110004", 3, "bank_transfer", 500000, "delivered", 12),
    ("YD2026110005", 3, "bank_transfer", 600000, "delivered", 11),
    ("YD2026110006", 1, "cod", 70000, "delivered", 6),
    ("YD2026110007", 2, "installment", 300000, "approved", 5),
    ("YD2026110008", 1, "alipay", 80000, "approved", 2),
    ("YD2026110009", 1, "bank_transfer", 50000, "approved", 40),
    ("YD2026110010", 3, "cod", 30000, "delivered", 30),
]
CUSTOMERS = [
    ("C1", "张三丰", "consumer", "prepaid", 0),
    ("C2", "重庆两江机电有限公司", "business", "net", 30),
    ("C3", "成都蓉城电气有限公司", "business", "net", 30),
]


def build_store(engine, order_rows=ORDERS):
    with engine.begin() as conn:
        insert_rows(
            conn,
            customers,
            pd.DataFrame(
                {
                    "code": [c[0] for c in CUSTOMERS],
                    "name": [c[1] for c in CUSTOMERS],
                    "kind": [c[2] for c in CUSTOMERS],
                    "payment_terms": [c[3] for c in CUSTOMERS],
                    "net_days": [c[4] for c in CUSTOMERS],
                    "email": [f"{c[0].lower()}@example.com" for c in CUSTOMERS],
                    "phone": ["13800000001", "13800000002", "13800000003"],
                }
            ),
        )
        add_orders(conn, order_rows)
        ids = order_ids(conn)
        insert_rows(
            conn,
            shipments,
            pd.DataFrame(
                {
                    "shipment_no": ["S3", "S4", "S5", "S6", "S10"],
                    "order_id": [
                        ids["YD2026110003"],
                        ids["YD2026110004"],
                        ids["YD2026110005"],
                        ids["YD2026110006"],
                        ids["YD2026110010"],
                    ],
                    "carrier": ["shunfeng"] * 5,
                    "waybill_no": ["SF300", "SF400", "SF500", "SF600", "SF1000"],
                    "idempotency_key": ["k3", "k4", "k5", "k6", "k10"],
                    "status": ["delivered"] * 5,
                    "cod_amount_fen": [0, 0, 0, 70000, 30000],
                    "shipped_at": [
                        NOW - 14 * DAY,
                        NOW - 10 * DAY,
                        NOW - 10 * DAY,
                        NOW - 5 * DAY,
                        NOW - 29 * DAY,
                    ],
                    "delivered_at": [
                        NOW - 12 * DAY,
                        NOW - 8 * DAY,
                        NOW - 8 * DAY,
                        NOW - 3 * DAY,
                        NOW - 27 * DAY,
                    ],
                }
            ),
        )
    return ids


def add_orders(conn, rows):
    names = {i + 1: c[1] for i, c in enumerate(CUSTOMERS)}
    insert_rows(
        conn,
        orders,
        pd.DataFrame(
            {
                "order_no": [r[0] for r in rows],
                "channel": "website",
                "channel_order_id": [f"W-{r[0]}" for r in rows],
                "customer_id": [r[1] for r in rows],
                "customer_name": [names[r[1]] for r in rows],
                "customer_email": "buyer@example.com",
                "customer_phone": "13900000000",
                "payment_method": [r[2] for r in rows],
                "installments": [3 if r[2] == "installment" else 1 for r in rows],
                "order_total_fen": [r[3] for r in rows],
                "goods_total_fen": [r[3] for r in rows],
                "state": [r[4] for r in rows],
                "order_time": [NOW - r[5] * DAY for r in rows],
            }
        ),
    )


def order_ids(conn) -> dict[str, int]:
    return {row.order_no: row.id for row in conn.execute(select(orders.c.order_no, orders.c.id))}


def order_state(engine, order_no):
    with engine.connect() as conn:
        row = conn.execute(
            select(orders.c.state, orders.c.payment_state).where(orders.c.order_no == order_no)
        ).one()
    return row.state, row.payment_state


def cases(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return read_frame(
            conn,
            select(
                settlement_cases.c.id, settlement_cases.c.case_class, settlement_cases.c.status,
                settlement_cases.c.amount_fen, settlement_cases.c.summary, settlement_cases.c.details,
                settlement_cases.c.resolved_by, orders.c.order_no,
            ).select_from(settlement_cases.outerjoin(orders, orders.c.id == settlement_cases.c.order_id)),
        )  # fmt: skip


def pay(order_no, amount, kind="payment", minutes=0, **extra):
    return {"merchant_order_no": order_no, "kind": kind, "amount_fen": amount,
            "txn_time": NOW - DAY + pd.Timedelta(minutes=minutes), **extra}  # fmt: skip


def day_files(tmp_path, faults: Faults = Faults()):
    """A realistic day: online bills, a bank statement, a COD remittance."""
    alipay = write_alipay_bill(
        pd.DataFrame(
            [
                pay("YD2026110001", 10000),
                pay("YD2026110008", 80000, minutes=5),
                pay("YD2026110008", -90000, "refund", 60),
            ]
        ),
        tmp_path / "inbox" / "alipay" / "alipay-1119.zip",
        faults=faults,
    )
    wechat = write_wechatpay_bill(
        pd.DataFrame([pay("YD2026110002", 20000), pay("YD2026110002", 20000, minutes=7)]),
        tmp_path / "inbox" / "wechatpay" / "wx-1119.csv",
    )
    bank = write_bank_statement(
        pd.DataFrame(
            [
                pay(None, 300000, "credit", payer_name="重庆两江机电有限公司", memo="货款 YD2026110003"),
                pay(None, 1100000, "credit", 3, payer_name="成都蓉城电气", memo="货款"),
                pay(None, 100000, "credit", 9, payer_name="重庆两江机电", memo="分期 1/3"),
                pay(None, -5000, "debit", 12, payer_name="重庆快运有限公司", memo="运费"),
                pay(
                    None, 123400, "credit", -60, payer_name="陌生人", memo="转账"
                ),  # 25 h ago: past the grace
                pay(None, 880, "credit", 20, payer_name="支付宝（中国）网络技术有限公司", memo="支付宝提现"),
            ]
        ),
        tmp_path / "inbox" / "bank-icbc" / "icbc-1119.csv",
        template_key="icbc",
    )
    cod = write_cod_remittance(
        pd.DataFrame({"waybill_no": ["SF600"], "amount_fen": [70000], "txn_time": [NOW - DAY]}),
        tmp_path / "inbox" / "cod-shunfeng" / "sf-1119.csv",
        fee_rate=0.01,
        fee_min_fen=500,
    )
    return [alipay, wechat, bank, cod]


def snapshot(engine) -> dict:
    """Everything reconciliation writes, for 'a rerun changes nothing'."""
    tables = {
        "payment_lines": select(payment_lines).order_by(payment_lines.c.id),
        "payment_matches": select(
            payment_matches.c.payment_line_id,
            payment_matches.c.order_id,
            payment_matches.c.amount_fen,
            payment_matches.c.rule,
        ),  # fmt: skip
        "orders": select(orders.c.id, orders.c.state, orders.c.payment_state, orders.c.version),
        "receivables": select(receivables).order_by(receivables.c.id),
        "cases": select(settlement_cases).order_by(settlement_cases.c.id),
        "events": select(func.count()).select_from(order_events),
        "dunning": select(func.count()).select_from(dunning_actions),
        "outbox": select(func.count()).select_from(notification_outbox),
    }
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(stmt)] for name, stmt in tables.items()}


# ----------------------------------------------------------------------------------------------- the day


def test_a_day_reconciles_and_a_rerun_changes_nothing(engine, tmp_path):
    build_store(engine)
    files = day_files(tmp_path)
    result = reconcile(engine, files=files, now=NOW, actor="test")
    assert [f["status"] for f in result["files"]] == ["ingested"] * 4
    assert result["matching"]["by_rule"] == {
        "merchant_order_no": 5, "memo_order_no": 1, "amount_name_date": 1, "amount_name_date_multi": 1,
        "cod_waybill": 1,
    }  # fmt: skip
    assert result["matching"]["ignored_lines"] == 2  # the outgoing freight payment and the Alipay withdrawal

    assert order_state(engine, "YD2026110001") == ("settled", "paid")  # delivered + paid → settled
    assert order_state(engine, "YD2026110003") == ("settled", "paid")  # memo order number
    assert order_state(engine, "YD2026110004") == (
        "settled",
        "paid",
    )  # one transfer for two orders (many-to-one)
    assert order_state(engine, "YD2026110005") == ("settled", "paid")
    assert order_state(engine, "YD2026110006") == ("settled", "paid")  # COD by waybill
    assert order_state(engine, "YD2026110007") == (
        "approved",
        "partly_paid",
    )  # first instalment by amount + name
    assert order_state(engine, "YD2026110002") == ("approved", "overpaid")
    assert order_state(engine, "YD2026110008") == ("approved", "refunded")

    found = cases(engine)
    by_class = found.groupby("case_class")["order_no"].apply(lambda s: sorted(s.dropna())).to_dict()
    assert by_class["duplicate_payment"] == ["YD2026110002"]
    assert by_class["refund_without_return"] == ["YD2026110008"]
    assert by_class["short_paid"] == ["YD2026110008"]  # refund larger than the payment
    assert by_class["unpaid_past_terms"] == ["YD2026110009"]
    assert by_class["cod_not_remitted"] == ["YD2026110010"]
    assert set(by_class) == {"duplicate_payment", "refund_without_return", "short_paid", "unpaid_past_terms",
                             "cod_not_remitted", "payment_without_order"}  # fmt: skip
    stranger = found[found["case_class"] == "payment_without_order"]
    assert stranger["amount_fen"].tolist() == [123400] and "陌生人" in stranger["summary"].iloc[0]
    assert (found["status"] == "open").all()

    # every matched order has a payment event in its timeline; settled ones a state event too
    with engine.connect() as conn:
        yd4 = order_ids(conn)["YD2026110004"]
        events = timeline(conn, yd4)
    assert events["kind"].tolist()[-2:] == ["payment", "state"]
    assert "unpaid → paid" in events["reason"].iloc[-2]
    assert json.loads(events["details"].iloc[-2])["new_lines"][0]["rule"] == "amount_name_date_multi"

    before = snapshot(engine)
    again = reconcile(engine, files=files, now=NOW + timedelta(hours=2), actor="test")
    assert [f["status"] for f in again["files"]] == ["duplicate"] * 4
    assert again["cases"] == {"opened": 0, "updated": 0, "auto_resolved": 0, "reopened": 0}
    assert snapshot(engine) == before


def test_same_bill_twice_and_a_reexport_add_nothing(sqlite_engine, tmp_path):
    build_store(sqlite_engine)
    first = write_alipay_bill(pd.DataFrame([pay("YD2026110001", 10000)]), tmp_path / "a.zip")
    copy = tmp_path / "copy" / "same-bill-again.zip"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    result = reconcile(sqlite_engine, files=[first, copy], now=NOW, actor="test")
    assert [f["status"] for f in result["files"]] == ["ingested", "duplicate"]
    # a re-export (another export time, so other bytes) of the same transactions: no new lines
    reexport = write_alipay_bill(pd.DataFrame([pay("YD2026110001", 10000)]), tmp_path / "b.csv", zipped=False)
    result = reconcile(sqlite_engine, files=[reexport], now=NOW, actor="test")
    assert result["files"][0]["status"] == "ingested" and result["files"][0]["new_lines"] == 0
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(payment_lines)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(payment_matches)).scalar() == 1


def test_bad_files_are_rejected_whole_and_recorded(sqlite_engine, tmp_path):
    build_store(sqlite_engine)
    faults = {
        "truncated": Faults(truncate=True),
        "encoding": Faults(encoding="mojibake"),
        "other_account": Faults(other_account="20889999999999990156"),
        "totals_mismatch": Faults(wrong_totals=True),
    }
    bad = [
        write_alipay_bill(pd.DataFrame([pay("YD2026110001", 10000)]), tmp_path / "inbox" / "alipay" / f"{name}.zip",
                          faults=fault)
        for name, fault in faults.items()
    ]  # fmt: skip
    good = write_wechatpay_bill(pd.DataFrame([pay("YD2026110002", 20000)]), tmp_path / "wx.csv")
    result = reconcile(sqlite_engine, files=[*bad, good], now=NOW, actor="test")
    *rejected, accepted = result["files"]
    for name, outcome in zip(faults, rejected, strict=True):
        assert outcome["status"] == "rejected" and outcome["reason"] == name, outcome
        assert f"{name}.zip" in outcome["error"]
    assert accepted["status"] == "ingested"  # the other file is reconciled regardless
    with sqlite_engine.connect() as conn:
        files = read_frame(conn, select(statement_files.c.file_name, statement_files.c.status))
        lines = read_frame(conn, select(payment_lines.c.source))
    assert files.set_index("file_name")["status"].to_dict() == {
        "truncated.zip": "rejected", "encoding.zip": "rejected", "other_account.zip": "rejected",
        "totals_mismatch.zip": "rejected", "wx.csv": "ingested",
    }  # fmt: skip
    assert lines["source"].tolist() == ["wechatpay"]  # nothing of the refused files
    assert order_state(sqlite_engine, "YD2026110002") == ("approved", "paid")


def test_thousands_separators_and_full_width_amounts_reconcile(sqlite_engine, tmp_path):
    build_store(sqlite_engine)
    bank = write_bank_statement(
        pd.DataFrame(
            [pay(None, 300000, "credit", payer_name="重庆两江机电有限公司", memo="货款 YD2026110003")]
        ),
        tmp_path / "icbc.csv",
        template_key="icbc",
        faults=Faults(thousands_separators=True, full_width=True),
    )
    assert "３，０００．００".encode("gbk") in bank.read_bytes()
    reconcile(sqlite_engine, files=[bank], now=NOW, actor="test")
    assert order_state(sqlite_engine, "YD2026110003") == ("settled", "paid")


def test_payment_before_its_order_is_matched_once_the_order_appears(sqlite_engine, tmp_path):
    build_store(sqlite_engine)
    early = write_alipay_bill(pd.DataFrame([pay("YD2026111100", 45600)]), tmp_path / "a.zip")
    reconcile(sqlite_engine, files=[early], now=NOW - timedelta(hours=20), actor="test")
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(payment_lines.c.match_status)).scalar() == "unmatched"
    assert cases(sqlite_engine).query("case_class == 'payment_without_order'").empty  # still within the grace

    with sqlite_engine.begin() as conn:
        add_orders(conn, [("YD2026111100", 1, "alipay", 45600, "approved", 0)])
    reconcile(sqlite_engine, files=[], now=NOW, actor="test")
    assert order_state(sqlite_engine, "YD2026111100") == ("approved", "paid")
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(payment_lines.c.match_status)).scalar() == "matched"


def test_an_unmatched_payment_case_clears_itself_when_the_order_arrives(sqlite_engine, tmp_path):
    build_store(sqlite_engine)
    early = write_alipay_bill(pd.DataFrame([pay("YD2026111200", 45600)]), tmp_path / "a.zip")
    reconcile(sqlite_engine, files=[early], now=NOW + timedelta(days=2), actor="test")
    case = cases(sqlite_engine).query("case_class == 'payment_without_order'")
    assert case["status"].tolist() == ["open"]
    with sqlite_engine.begin() as conn:
        add_orders(conn, [("YD2026111200", 1, "alipay", 45600, "approved", 0)])
    result = reconcile(sqlite_engine, files=[], now=NOW + timedelta(days=2, hours=1), actor="test")
    assert result["cases"]["auto_resolved"] == 1
    cleared = cases(sqlite_engine).query("case_class == 'payment_without_order'")
    assert cleared["status"].tolist() == ["resolved"] and cleared["resolved_by"].tolist() == ["system"]


def test_refund_larger_than_the_payment(sqlite_engine, tmp_path):
    build_store(sqlite_engine)
    with sqlite_engine.begin() as conn:
        conn.execute(update(orders).where(orders.c.order_no == "YD2026110008").values(state="cancelled"))
    bill = write_wechatpay_bill(
        pd.DataFrame([pay("YD2026110008", 80000), pay("YD2026110008", -95000, "refund", 30)]),
        tmp_path / "wx.csv",
    )
    reconcile(sqlite_engine, files=[bill], now=NOW, actor="test")
    assert order_state(sqlite_engine, "YD2026110008") == ("cancelled", "refunded")
    found = cases(sqlite_engine)
    short = found[found["case_class"] == "short_paid"]
    assert short["amount_fen"].tolist() == [15000]
    assert json.loads(short["details"].iloc[0])["refund_exceeds_payments"] is True
    # the order was cancelled, so the refund itself is explained: no refund_without_return case
    assert found[found["case_class"] == "refund_without_return"].empty


def test_a_resolved_case_stays_resolved_on_rerun(sqlite_engine, tmp_path):
    engine = sqlite_engine
    build_store(engine)
    files = day_files(tmp_path)
    reconcile(engine, files=files, now=NOW, actor="test")
    duplicate = cases(engine).query("case_class == 'duplicate_payment'")
    case_id = int(duplicate["id"].iloc[0])
    with engine.begin() as conn:
        change_case(
            conn,
            case_id,
            to_status="explained",
            note="customer asked, refund being prepared",
            actor="user:li",
        )
        change_case(conn, case_id, to_status="resolved", note="refunded ¥200 by WeChat", actor="user:li")
    # the data still shows the duplicate, and more money arrives: the case stays resolved
    more = write_wechatpay_bill(pd.DataFrame([pay("YD2026110002", 20000, minutes=90)]), tmp_path / "wx-2.csv")
    reconcile(engine, files=[more], now=NOW + timedelta(hours=3), actor="test")
    reconcile(engine, files=[more], now=NOW + timedelta(hours=4), actor="test")
    after = cases(engine).set_index("id").loc[case_id]
    assert after["status"] == "resolved" and after["resolved_by"] == "user:li"
    with engine.connect() as conn:
        from yidi.schema_settlement import settlement_case_events

        history = read_frame(
            conn, select(settlement_case_events).where(settlement_case_events.c.case_id == case_id)
        )
    assert history["action"].tolist() == ["opened", "explained", "resolved"]


def test_fee_different_from_contract_and_cod_short_remittance(sqlite_engine, tmp_path):
    build_store(sqlite_engine)
    bill = write_alipay_bill(
        pd.DataFrame([pay("YD2026110001", 10000, fee_fen=100), pay("YD2026110002", 20000, fee_fen=120)]),
        tmp_path / "a.zip",
    )
    reconcile(sqlite_engine, files=[bill], now=NOW, actor="test")
    fee = cases(sqlite_engine).query("case_class == 'fee_mismatch'")
    assert len(fee) == 1 and fee["amount_fen"].tolist() == [40]  # 1.00 charged, 0.60 agreed (0.6%)
    assert "按合同应为 0.60" in fee["summary"].iloc[0]


def test_receivables_ageing_and_dunning_ladder(sqlite_engine, tmp_path):
    build_store(sqlite_engine)
    reconcile(sqlite_engine, files=[], now=NOW, actor="test")
    with sqlite_engine.connect() as conn:
        ledger = read_frame(conn, select(receivables))
        ids = order_ids(conn)
    by_order = ledger.set_index(["order_id", "installment_no"])
    assert by_order.loc[(ids["YD2026110007"], 1), "payment_terms"] == "installment"
    assert len(ledger[ledger["order_id"] == ids["YD2026110007"]]) == 3  # three instalments
    assert by_order.loc[(ids["YD2026110007"], 1), "amount_fen"] == 100000
    # net 30 from shipment: YD2026110003 shipped 14 days ago is not due yet
    assert str(by_order.loc[(ids["YD2026110003"], 1), "due_date"]) == str((NOW - 14 * DAY + 30 * DAY).date())
    # prepaid order 40 days old: due a day after ordering, 39 days overdue → the 15-day step for C1
    with sqlite_engine.connect() as conn:
        actions = read_frame(conn, select(dunning_actions))
        notices = read_frame(conn, select(notification_outbox))
    c1 = actions[actions["party_key"] == "customer:1"]
    assert c1["step_name"].tolist() == ["final_notice"]  # 39 days: the 30-day step, not every step at once
    # [[settlement.dunning_steps]]: C1's final notice by email and text with its escalation to the account manager,
    # and a reminder by email for the party fewer than 15 days overdue
    assert sorted(map(tuple, notices[["template", "medium"]].values)) == [
        ("settlement_escalation", "email"), ("settlement_final_notice", "email"), ("settlement_final_notice", "sms"),
        ("settlement_reminder", "email"),
    ]  # fmt: skip
    assert set(notices.loc[notices["template"] == "settlement_final_notice", "medium"]) == {"email", "sms"}
    ctx = json.loads(notices.loc[notices["template"] == "settlement_final_notice", "context"].iloc[0])
    # every overdue order of the customer, oldest first (nothing was paid in this store)
    assert ctx["order_nos"].split("、")[0] == "YD2026110009" and ctx["overdue_total"] == "1,600.00"
    # a later run takes the next step, once (a rerun taking nothing again is the day test's snapshot)
    reconcile(sqlite_engine, files=[], now=NOW + timedelta(days=25), actor="test")
    with sqlite_engine.connect() as conn:
        steps = read_frame(conn, select(dunning_actions.c.party_key, dunning_actions.c.step_name))
    assert steps[steps["party_key"] == "customer:1"]["step_name"].tolist() == ["final_notice", "credit_hold"]


def test_ageing_buckets():
    from tasks.settlement.rules import ageing, ageing_table
    from yidi.settings import load_settings

    policy = load_settings().settlement
    today = NOW.date()
    frame = pd.DataFrame(
        {
            "status": "open",
            "outstanding_fen": [100, 200, 300, 400, 500, 600],
            "due_date": [
                None,
                today,
                today - timedelta(days=1),
                today - timedelta(days=31),
                today - timedelta(days=90),
                today - timedelta(days=91),
            ],  # fmt: skip
        }
    )
    table = ageing_table(ageing(frame, policy, today), policy).set_index("bucket")
    assert table["outstanding_fen"].to_dict() == {
        "current": 300, "1-30": 300, "31-60": 400, "61-90": 500, "over 90": 600,
    }  # fmt: skip


# ----------------------------------------------------------------------------------------------- flows, CLI


@pytest.mark.prefect
def test_reconcile_flow_and_weekly_analysis_on_the_prefect_server(prefect_server, tmp_path, monkeypatch):

    from flows.settlement import reconcile_settlements, settlement_analysis
    from yidi.db import get_engine, init_db
    from yidi.settings import yidi_home

    init_db()
    engine = get_engine()
    build_store(engine)
    inbox = yidi_home() / "settlement" / "inbox"
    day_files(inbox.parent)  # the settlement inbox, one folder per source
    bad = write_alipay_bill(pd.DataFrame([pay("YD2026110001", 10000)]), inbox / "alipay" / "short.zip",
                            faults=Faults(truncate=True))  # fmt: skip
    state = reconcile_settlements(period=str((NOW - DAY).date()), return_state=True)
    assert state.is_failed()  # one file refused: the run says so…
    assert "short.zip" in str(state.result(raise_on_failure=False))
    assert order_state(engine, "YD2026110001")[1] == "paid"  # …after reconciling the rest
    artifacts = artifacts_of(state)
    assert {
        "settlement-summary",
        "settlement-match-rate",
        "settlement-discrepancies",
        "settlement-ageing",
    } <= set(artifacts)
    dunning = json.loads(artifacts["settlement-dunning"].data) if "settlement-dunning" in artifacts else []
    assert all("张三丰" not in json.dumps(row, ensure_ascii=False) for row in dunning)  # masked
    # the refused file still lies in the inbox: the next scheduled run lists it but does not fail again
    assert bad.exists()
    state = reconcile_settlements(source="alipay", return_state=True)
    assert state.is_completed()
    assert state.result()["report"]["files_rejected_before"] == 1
    workbook = state.result()["report"]["workbook"]
    sheets = pd.read_excel(workbook, sheet_name=None)
    assert {"汇总", "匹配率", "差异分类", "账龄", "催收清单"} <= set(sheets)
    analysis = settlement_analysis(weeks=4)
    assert analysis["weeks"] == 4 and analysis["workbook"].endswith(".xlsx")


@pytest.mark.prefect
def test_cli_reconcile_file(prefect_server, tmp_path):
    from typer.testing import CliRunner

    from app.cli.main import cli
    from yidi.db import get_engine, init_db

    init_db()
    build_store(get_engine())
    bill = write_alipay_bill(pd.DataFrame([pay("YD2026110001", 10000)]), tmp_path / "a.zip")
    runner = CliRunner()
    out = runner.invoke(cli, ["settlement", "reconcile", str(bill), "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout[out.stdout.index("{") :])
    assert payload["status"] == "completed" and payload["report"]["files_ingested"] == 1
    bad = write_alipay_bill(
        pd.DataFrame([pay("YD2026110002", 10000)]), tmp_path / "b.zip", faults=Faults(wrong_totals=True)
    )
    out = runner.invoke(cli, ["settlement", "reconcile", str(bad)])
    assert out.exit_code == 1 and "totals_mismatch" in out.output
    out = runner.invoke(cli, ["settlement", "reconcile", "--period", "last week"])
    assert out.exit_code == 1 and "period" in out.output
    out = runner.invoke(cli, ["settlement", "cases", "list", "--status", "all", "--json"])
    assert out.exit_code == 0


def test_the_old_command_names_still_work_for_one_release(tmp_path):
    from typer.testing import CliRunner

    from app.cli.main import cli
    from yidi.db import get_engine, init_db

    init_db()
    build_store(get_engine())
    bill = write_alipay_bill(pd.DataFrame([pay("YD2026110001", 10000)]), tmp_path / "a.zip")
    runner = CliRunner()
    out = runner.invoke(cli, ["reconcile", str(bill), "--no-prefect", "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout[out.stdout.index("{") :])
    assert payload["status"] == "completed" and payload["report"]["files_ingested"] == 1
    out = runner.invoke(cli, ["cases", "list", "--status", "all", "--json"])
    assert out.exit_code == 0, out.output


# ----------------------------------------------------------------------------------------------- pure matching


def _orders_frame(rows):
    frame = pd.DataFrame(
        rows,
        columns=["id", "order_no", "channel_order_id", "customer_id", "customer_name", "order_total_fen"],
    )
    return frame.assign(
        outstanding_fen=frame["order_total_fen"], next_due_fen=frame["order_total_fen"], order_time=NOW - 2 * DAY,
        due_time=NOW - DAY, state="approved", payment_method="bank_transfer",
    )  # fmt: skip


def _lines_frame(rows):
    frame = pd.DataFrame(
        rows, columns=["id", "source", "kind", "amount_fen", "merchant_order_no", "payer_name", "memo"]
    )
    for column in ("provider_txn_id", "original_txn_id", "waybill_no"):
        frame[column] = None
    return frame.assign(txn_time=NOW - DAY).astype(
        {c: "string" for c in ("merchant_order_no", "payer_name", "memo")}
    )


def test_matching_rules_many_to_one_ambiguity_and_collisions():
    from tasks.settlement.match import match_lines
    from yidi.settings import load_settings

    policy = load_settings().settlement
    orders_ = _orders_frame(
        [
            (1, "YD2026000001", "T-1", 1, "张伟", 30000),
            (2, "YD2026000002", "T-2", 1, "张伟", 50000),
            (3, "YD2026000003", "DUP-1", 2, "李娜", 80000),
            (4, "YD2026000004", "DUP-1", 3, "王芳", 80000),  # a channel id two channels share
            (5, "YD2026000005", "T-5", 4, "刘洋", 66600),
            (6, "YD2026000006", "T-6", 5, "刘洋", 66600),  # same name and amount: ambiguous
        ]
    )
    lines = _lines_frame(
        [
            (
                11,
                "bank:icbc",
                "credit",
                90000,
                None,
                "张伟",
                "付 YD2026000001、yd2026000002 货款",
            ),  # overpays two
            (12, "alipay", "payment", 80000, "DUP-1", None, None),  # ambiguous channel id: no match
            (13, "bank:icbc", "credit", 66600, None, "刘洋", "货款"),  # two equally good candidates: left
            (14, "bank:icbc", "debit", -2000, None, "某物流", "运费"),  # outgoing, names no order
        ]
    )
    result = match_lines(lines, orders_, policy)
    m = result.matches.sort_values(["payment_line_id", "order_id"])
    assert m[m["payment_line_id"] == 11][["order_id", "amount_fen"]].values.tolist() == [
        [1, 30000],
        [2, 60000],
    ]
    assert set(m["rule"]) == {"memo_order_no"} and (m["score"] == 85).all()  # 90000 ≠ 30000 + 50000
    assert 12 not in set(m["payment_line_id"]) and 13 not in set(m["payment_line_id"])
    assert result.ignored["payment_line_id"].tolist() == [14]


def test_demo_payment_files_parse_and_cover_the_troubles(tmp_path):
    from connectors.payment_files import detect_source, parse_payment_file
    from demo.settlement import demo_payments, write_demo_files
    from yidi.settings import load_settings

    settings = load_settings()
    orders_ = pd.DataFrame(
        {
            "id": range(1, 61),
            "order_no": [f"YD2026{i:06d}" for i in range(1, 61)],
            "channel_order_id": [f"T{i:08d}" for i in range(1, 61)],
            "customer_name": [["张伟", "重庆两江机电有限公司", "李娜"][i % 3] for i in range(60)],
            "payment_method": [
                ["alipay", "wechatpay", "bank_transfer", "cod", "installment"][i % 5] for i in range(60)
            ],
            "order_total_fen": [10000 + 137 * i for i in range(60)],
            "order_time": [NOW - pd.Timedelta(hours=i) for i in range(60)],
            "state": ["delivered"] * 55 + ["cancelled"] * 5,
            "installments": [3 if i % 5 == 4 else 1 for i in range(60)],
        }
    )
    cod = orders_[orders_["payment_method"] == "cod"]
    ships = pd.DataFrame(
        {"order_id": cod["id"], "carrier": "shunfeng", "waybill_no": "SF" + cod["id"].astype(str),
         "cod_amount_fen": cod["order_total_fen"], "delivered_at": cod["order_time"] + pd.Timedelta(days=2)}
    )  # fmt: skip
    frames = demo_payments(orders_, ships, seed=3, now=NOW + 5 * DAY)
    assert set(frames) == {"alipay", "wechatpay", "bank:icbc", "bank:cmb", "cod:shunfeng"}
    files = write_demo_files(frames, tmp_path / "inbox")
    parsed = {}
    for path in files:
        data = path.read_bytes()
        source = detect_source(data, path.name, settings.settlement)
        # The inbox folder says what wrote the file (alipay, wechatpay, bank-icbc, cod-shunfeng): detection must
        # recognise it from the content, not be compared with itself.
        assert source == path.parent.name.replace("-", ":", 1), path
        parsed.setdefault(source, []).append(parse_payment_file(data, path.name, source, settings.settlement))
    assert sorted(parsed) == sorted(name for name, frame in frames.items() if not frame.empty)
    for source, parts in parsed.items():
        assert len(pd.concat(parts)) == len(frames[source]), source  # every row of every file, per source
    lines = pd.concat([part for parts in parsed.values() for part in parts])
    assert set(lines["kind"]) == {"payment", "refund", "credit", "debit", "cod"}
