"""Month end (issue 12): existing orders imported from the old system, then a month of provider, bank and COD files
reconciled file by file and in one go, on both databases: the same states and cases as of the month's last day,
no case opened and closed in between, and the close re-run later (after December's first bill) gives the same
result without disturbing the store.

Expected values come from the scenario, not from the code: which orders were paid, remitted, refunded, and which
were due before 30 November and never paid.
"""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
from sqlalchemy import func, select

from demo.standins.payment_files import (
    utc,
    write_alipay_bill,
    write_bank_statement,
    write_cod_remittance,
    write_wechatpay_bill,
)
from flows.compose import in_process
from flows.onboarding import order_import
from flows.settlement import reconciliation
from tasks.settlement.report import case_list_as_of
from tasks.settlement.rules import end_of_business_day
from yidi.bulk import insert_rows, read_frame
from yidi.schema import customers, intake_records, order_events, orders, shipments
from yidi.schema_settlement import dunning_actions, receivables, settlement_case_events, settlement_cases
from yidi.settings import get_settings

HEADER = ("订单号,下单时间,订单状态,客户编码,客户名称,联系电话,商品名称,数量,单价（元）,订单金额,付款方式,付款条件,"
          "账期天数,到期日,已付金额,付款日期,承运商,运单号,发货日期,签收日期,售后单号")  # fmt: skip
# What the old system knew on 1 November: open, shipped, paid and after-sales orders.
FIRST_EXPORT = [
    "YD20261020001,2026-10-20 10:00,已签收,C2,重庆两江机电有限公司,02367000001,伺服电机,2,1500.00,3000.00,银行转账,月结,30,2026-11-21,0,,顺丰,SF2026001,2026-10-21,2026-10-22,",
    "YD20261025002,2026-10-25 15:30,已签收,C2,重庆两江机电有限公司,02367000001,编码器,4,300.00,1200.00,银行转账,月结,30,2026-11-24,,,顺丰,SF2026002,2026-10-25,2026-10-27,",
    "YD20261028003,2026-10-28 09:00,已签收,,王芳,13800000003,水泵,1,560.00,560.00,货到付款,,,,,,顺丰,SF2026003,2026-10-28,2026-10-30,",
    "YD20261030004,2026-10-30 11:00,已签收,,赵强,13800000004,阀门,3,110.00,330.00,货到付款,,,,,,顺丰,SF2026004,2026-10-30,2026-10-31,",
    "YD20261015005,2026-10-15 08:00,已结清,C1,张三丰,13800000001,轴承,8,100.00,800.00,支付宝,款到发货,,,800.00,2026-10-15,顺丰,SF2026005,2026-10-16,2026-10-18,",
    "YD20261010006,2026-10-10 14:00,售后中,C1,张三丰,13800000001,电钻,1,450.00,450.00,支付宝,款到发货,,,450.00,2026-10-10,顺丰,SF2026006,2026-10-11,2026-10-13,AS20261101",
    "YD20261101007,2026-11-01 08:00,已审核,C1,张三丰,13800000001,扳手套装,1,800.00,800.00,支付宝,款到发货,,,,,,,,,",
    "YD20261101008,2026-11-01 08:30,已审核,,刘洋,13800000008,螺丝刀,2,130.00,260.00,微信,款到发货,,,,,,,,,",
]
# The old system's export on 12 November: the same orders again (unchanged) and the ones placed since.
SECOND_EXPORT = FIRST_EXPORT + [
    "YD20261110009,2026-11-10 10:00,已审核,,陈晨,13800000009,焊机,1,1999.00,1999.00,支付宝,款到发货,,,,,,,,,",
    "YD20261110010,2026-11-10 16:00,已审核,,周杰,13800000010,砂轮,4,130.00,520.00,支付宝,款到发货,,,,,,,,,",
    "YD20261111011,2026-11-11 09:00,已审核,,吴敏,13800000011,卷尺,3,100.00,300.00,微信,款到发货,,,,,,,,,",
    "YD20261111012,2026-11-11 12:00,已审核,,郑爽,13800000012,胶带,10,15.00,150.00,支付宝,款到发货,,,,,,,,,",
]


def write_export(path, rows) -> str:
    path.write_bytes(("\n".join([HEADER, *rows]) + "\n").encode("gbk"))  # the old system exports GBK
    return str(path)


def pay(order_no, amount_fen, at, kind="payment"):
    return {"merchant_order_no": order_no, "kind": kind, "amount_fen": amount_fen, "txn_time": at}


def month_files(folder) -> list[tuple[date, object]]:
    """November's files with the day they are reconciled as of. The Alipay bills of 10–11 November come late,
    after the bank statement of the 13th (the case the issue saw appear and vanish)."""
    d = folder
    return [
        # Alipay charged 8.00 where the contract (0.6 %) says 4.80: a fee case
        (date(2026, 11, 1), write_alipay_bill(pd.DataFrame([{**pay("YD20261101007", 80000, utc(2026, 11, 1, 8, 5)),
                                                             "fee_fen": 800}]),
                                              d / "alipay-1101.zip", day=date(2026, 11, 1))),
        (date(2026, 11, 2), write_wechatpay_bill(pd.DataFrame([pay("YD20261101008", 26000, utc(2026, 11, 2, 9))]),
                                                 d / "wechat-1102.csv")),
        (date(2026, 11, 3), write_alipay_bill(pd.DataFrame([pay("YD20261010006", -45000, utc(2026, 11, 3, 10),
                                                                "refund")]), d / "alipay-1103.zip",
                                              day=date(2026, 11, 3))),
        (date(2026, 11, 5), write_cod_remittance(pd.DataFrame({"waybill_no": ["SF2026003"], "amount_fen": [56000],
                                                               "txn_time": [utc(2026, 11, 5, 10)]}),
                                                 d / "sf-1105.csv", fee_rate=0.01, fee_min_fen=500)),
        (date(2026, 11, 13), write_bank_statement(pd.DataFrame([{"kind": "debit", "amount_fen": -8800,
                                                                 "txn_time": utc(2026, 11, 13, 11),
                                                                 "payer_name": "重庆快运有限公司", "memo": "运费"}]),
                                                  d / "icbc-1113.csv", template_key="icbc", day=date(2026, 11, 13))),
        (date(2026, 11, 13), write_alipay_bill(pd.DataFrame([pay("YD20261110009", 199900, utc(2026, 11, 10, 10, 5))]),
                                               d / "alipay-1110.zip", day=date(2026, 11, 10))),
        (date(2026, 11, 13), write_alipay_bill(pd.DataFrame([pay("YD20261111012", 15000, utc(2026, 11, 11, 12, 3))]),
                                               d / "alipay-1111.zip", day=date(2026, 11, 11))),
        (date(2026, 11, 13), write_wechatpay_bill(pd.DataFrame([pay("YD20261111011", 30000, utc(2026, 11, 11, 9, 2))]),
                                                  d / "wechat-1111.csv")),
        (date(2026, 11, 18), write_bank_statement(
            pd.DataFrame([{"kind": "credit", "amount_fen": 300000, "txn_time": utc(2026, 11, 18, 14),
                           "payer_name": "重庆两江机电有限公司", "memo": "货款 YD20261020001"}]),
            d / "icbc-1118.csv", template_key="icbc", day=date(2026, 11, 18))),
    ]  # fmt: skip


def setup_store(engine, tmp_path, *, second_import_now=None):
    with engine.begin() as conn:
        insert_rows(conn, customers, pd.DataFrame({
            "code": ["C1", "C2"], "name": ["张三丰", "重庆两江机电有限公司"], "kind": ["consumer", "business"],
            "payment_terms": ["prepaid", "net"], "net_days": [0, 30], "email": ["c1@example.com", "c2@example.com"],
            "phone": ["13800000001", "02367000001"]}))  # fmt: skip
    first = order_import(in_process, path=write_export(tmp_path / "orders-1101.csv", FIRST_EXPORT),
                         now=utc(2026, 11, 1, 9), actor="test", engine=engine)  # fmt: skip
    assert (first["imported"], first["quarantined"], first["shipments"]) == (8, 0, 6)
    return first


def second_import(engine, tmp_path):
    result = order_import(in_process, path=write_export(tmp_path / "orders-1112.csv", SECOND_EXPORT),
                          now=utc(2026, 11, 12, 9), actor="test", engine=engine)  # fmt: skip
    assert (result["imported"], result["unchanged"], result["quarantined"]) == (4, 8, 0)


def reconcile(engine, files, as_of: date) -> dict:
    return reconciliation(in_process, files=list(files), as_of=as_of, now=end_of_business_day(as_of),
                          actor="test", engine=engine)  # fmt: skip


def states(engine) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(select(orders.c.order_no, orders.c.state, orders.c.payment_state)).all()
    return {r.order_no: (r.state, r.payment_state) for r in rows}


def open_cases(engine) -> set:
    with engine.connect() as conn:
        frame = read_frame(conn, select(settlement_cases.c.case_class, orders.c.order_no, settlement_cases.c.amount_fen,
                                        settlement_cases.c.status)
                           .select_from(settlement_cases.outerjoin(orders, orders.c.id == settlement_cases.c.order_id))
                           .where(settlement_cases.c.status != "resolved"))  # fmt: skip
    return {tuple(r) for r in frame.itertuples(index=False)}


def listed(frame: pd.DataFrame) -> set:
    return {(r.case_class, r.order_no if isinstance(r.order_no, str) else None, r.amount_fen)
            for r in frame.itertuples()}  # fmt: skip


def case_actions(engine) -> list[str]:
    with engine.connect() as conn:
        return [r.action for r in conn.execute(select(settlement_case_events.c.action))]


EXPECTED_STATES = {
    "YD20261020001": ("settled", "paid"),  # net 30 paid by bank transfer naming the order
    "YD20261025002": ("delivered", "unpaid"),  # due 24 November, never paid
    "YD20261028003": ("settled", "paid"),  # COD remitted by waybill
    "YD20261030004": ("delivered", "unpaid"),  # COD never remitted
    "YD20261015005": ("settled", "paid"),  # paid in the old system
    "YD20261010006": ("after_sales", "refunded"),  # after-sales refund of what was paid before the import
    "YD20261101007": ("approved", "paid"),
    "YD20261101008": ("approved", "paid"),
    "YD20261110009": ("approved", "paid"),  # its bill came three days late
    "YD20261110010": ("approved", "unpaid"),  # prepaid online, never paid
    "YD20261111011": ("approved", "paid"),
    "YD20261111012": ("approved", "paid"),
}
EXPECTED_CASES = {
    ("unpaid_past_terms", "YD20261025002", 120000, "open"),
    ("unpaid_past_terms", "YD20261110010", 52000, "open"),
    ("cod_not_remitted", "YD20261030004", 33000, "open"),
    ("fee_mismatch", None, 320, "open"),
}
MONTH_END = date(2026, 11, 30)


def test_a_month_file_by_file_and_in_one_go_gives_the_same_states_and_cases(engine, tmp_path):
    setup_store(engine, tmp_path)
    files = month_files(tmp_path)
    imported_second = False
    for as_of, path in files:
        if as_of >= date(2026, 11, 12) and not imported_second:
            second_import(engine, tmp_path)
            imported_second = True
        result = reconcile(engine, [path], as_of)
        assert [f["status"] for f in result["files"]] == ["ingested"], result["files"]
        if path.name == "icbc-1113.csv":
            # past due, but their providers' bills for the days they could have been paid on are not in yet
            assert {c[1] for c in open_cases(engine)} & {"YD20261110009", "YD20261110010", "YD20261111011",
                                                         "YD20261111012"} == set()  # fmt: skip
            with engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(dunning_actions)
                                    .where(dunning_actions.c.step_no > 0)).scalar() == 0  # fmt: skip
    close = reconcile(engine, [], MONTH_END)
    assert states(engine) == EXPECTED_STATES
    assert open_cases(engine) == EXPECTED_CASES
    assert "resolved" not in case_actions(engine)  # no case opened and closed on the way
    assert close["report"]["as_of"].startswith("2026-11-30")
    ageing = close["report"]["overdue_fen"]
    assert ageing == 120000 + 52000 + 33000  # the two unpaid orders and the COD the carrier has not remitted
    with engine.connect() as conn:
        dunned = {r.party_key: r.step_name for r in conn.execute(select(dunning_actions.c.party_key,
                                                                        dunning_actions.c.step_name))}  # fmt: skip
    assert "reminder" in set(dunned.values())

    # the same month in one go, on a second store: the same states and cases
    with engine.connect() as conn:
        first_list = case_list_as_of(conn, get_settings(), MONTH_END)
    assert listed(first_list) == {c[:3] for c in EXPECTED_CASES}

    # December's first bill pays the last unpaid online order; the November close re-run gives November again
    december = write_alipay_bill(pd.DataFrame([pay("YD20261110010", 52000, utc(2026, 12, 1, 9))]),
                                 tmp_path / "alipay-1201.zip", day=date(2026, 12, 1))  # fmt: skip
    reconcile(engine, [december], date(2026, 12, 1))
    assert states(engine)["YD20261110010"] == ("approved", "paid")
    before = snapshot(engine)
    again = reconcile(engine, [], MONTH_END)
    assert snapshot(engine) == before  # a past close leaves the store as it is
    assert "skipped" in again["cases"]
    assert again["report"]["overdue_fen"] == ageing
    with engine.connect() as conn:
        later_list = case_list_as_of(conn, get_settings(), MONTH_END)
    assert listed(later_list) == listed(first_list)


def test_a_month_in_one_go_matches_file_by_file(engine, tmp_path):
    setup_store(engine, tmp_path)
    second_import(engine, tmp_path)
    files = [path for _, path in month_files(tmp_path)]
    result = reconcile(engine, files, MONTH_END)
    assert [f["status"] for f in result["files"]] == ["ingested"] * len(files)
    assert states(engine) == EXPECTED_STATES
    assert open_cases(engine) == EXPECTED_CASES
    assert "resolved" not in case_actions(engine)


def snapshot(engine) -> dict:
    tables = {
        "orders": select(orders.c.id, orders.c.state, orders.c.payment_state, orders.c.version),
        "receivables": select(receivables).order_by(receivables.c.id),
        "cases": select(settlement_cases).order_by(settlement_cases.c.id),
        "events": select(func.count()).select_from(order_events),
        "dunning": select(func.count()).select_from(dunning_actions),
    }
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(stmt)] for name, stmt in tables.items()}


def test_the_import_keeps_numbers_terms_shipments_and_the_old_state_as_an_imported_event(engine, tmp_path):
    setup_store(engine, tmp_path)
    with engine.connect() as conn:
        order = conn.execute(select(orders).where(orders.c.order_no == "YD20261028003")).mappings().one()
        ship = conn.execute(select(shipments).where(shipments.c.order_id == order["id"])).mappings().one()
        event = conn.execute(select(order_events).where(order_events.c.order_id == order["id"])).mappings().one()
    assert (order["state"], order["payment_method"], order["order_total_fen"]) == ("delivered", "cod", 56000)
    assert (ship["carrier"], ship["waybill_no"], ship["cod_amount_fen"], ship["status"]) == (
        "shunfeng", "SF2026003", 56000, "delivered")  # fmt: skip
    assert ship["delivered_at"] == utc(2026, 10, 30)
    assert (event["kind"], event["to_state"]) == ("imported", "delivered")
    assert "已签收" in event["reason"] and "orders-1101.csv" in event["reason"]
    # the ledger keeps the due date the old system agreed (30 days from shipment would be 20 November)
    reconcile(engine, [], date(2026, 11, 1))
    with engine.connect() as conn:
        ledger = read_frame(conn, select(orders.c.order_no, receivables.c.due_date, receivables.c.payment_terms,
                                         receivables.c.outstanding_fen)
                            .select_from(receivables.join(orders, orders.c.id == receivables.c.order_id)))  # fmt: skip
    due = {r.order_no: (str(r.due_date), r.payment_terms, r.outstanding_fen) for r in ledger.itertuples()}
    assert due["YD20261020001"] == ("2026-11-21", "net", 300000)
    assert due["YD20261015005"][2] == 0  # paid in the old system
    # the same file again changes nothing
    again = order_import(in_process, path=tmp_path / "orders-1101.csv", now=utc(2026, 11, 2), engine=engine)
    assert (again["imported"], again["unchanged"], again["quarantined"]) == (0, 8, 0)


def test_bad_orders_are_quarantined_whole_with_their_rows_and_reason(engine, tmp_path):
    with engine.begin() as conn:
        insert_rows(conn, orders, pd.DataFrame({"order_no": ["YD20260000999"], "channel": ["website"],
                                                "channel_order_id": ["W-1"], "order_total_fen": [100]}))  # fmt: skip
    path = tmp_path / "orders.xlsx"
    frame = pd.DataFrame({
        "order_no": ["A1", "A1", "A2", "A3", "YD20260000999", "A5"],
        "order_time": ["2026-10-01", "2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04", "not a date"],
        "status": ["delivered", "delivered", "approved", "shipped", "approved", "approved"],
        "customer": ["甲", "甲", "乙", "丙", "丁", "戊"],
        "item": ["x", "y", "z", "w", "v", "u"], "qty": ["1", "2", "1", "1", "1", "1"],
        "unit_price": ["10.00", "5.00", "abc", "8.00", "1.00", "1.00"],
        "order_total": ["20.00", "20.00", "", "8.00", "1.00", "1.00"],
        "waybill_no": ["", "", "", "SF1", "", ""],
    })  # fmt: skip
    frame.to_excel(path, index=False)
    result = order_import(in_process, path=path, now=utc(2026, 11, 1), actor="test", engine=engine)
    assert (result["imported"], result["quarantined"]) == (1, 4)
    with engine.connect() as conn:
        quarantined = read_frame(conn, select(intake_records.c.source_key, intake_records.c.reason,
                                              intake_records.c.content)
                                 .where(intake_records.c.channel == "import"))  # fmt: skip
        lines = conn.execute(select(func.count()).select_from(orders).where(orders.c.order_no == "A1")).scalar()
    assert lines == 1
    reasons = dict(zip(quarantined["source_key"], quarantined["reason"], strict=True))
    assert set(reasons) == {"A2", "A3", "YD20260000999", "A5"}
    assert "unit_price is not an amount" in reasons["A2"]
    assert "运单号 (waybill_no) without 承运商 (carrier)" in reasons["A3"]
    assert "already used by a website order" in reasons["YD20260000999"]
    assert "下单时间 (order_time)" in reasons["A5"]
    kept = json.loads(quarantined.set_index("source_key").loc["A2", "content"])  # the rows as read, whole
    assert [row["unit_price"] for row in kept] == ["abc"] and kept[0]["customer"] == "乙"
    # loading it again adds no second quarantine record
    order_import(in_process, path=path, now=utc(2026, 11, 2), actor="test", engine=engine)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(intake_records)).scalar() == 4


def test_cli_load_orders_and_a_month_end_close(tmp_path):
    from typer.testing import CliRunner

    from app.cli.main import cli

    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    customers_file = tmp_path / "customers.csv"
    customers_file.write_text("code,name,payment_terms,net_days\nC1,张三丰,prepaid,0\nC2,重庆两江机电有限公司,net,30\n")
    assert runner.invoke(cli, ["load", "customers", str(customers_file)]).exit_code == 0
    export = write_export(tmp_path / "orders.csv", FIRST_EXPORT + ["X1,2026-11-01,已发货,,某人,1,货,1,1,1,,,,,,,,SF9,,,"])
    result = runner.invoke(cli, ["load", "orders", export, "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert (counts["imported"], counts["quarantined"]) == (8, 1)
    result = runner.invoke(cli, ["load", "orders", export])
    assert "0 imported, 8 already imported (unchanged), 1" in " ".join(result.output.split())

    cod = write_cod_remittance(pd.DataFrame({"waybill_no": ["SF2026003"], "amount_fen": [56000],
                                             "txn_time": [utc(2026, 11, 5, 10)]}),
                               tmp_path / "sf-1105.csv", fee_rate=0.01, fee_min_fen=500)  # fmt: skip
    result = runner.invoke(cli, ["settlement", "reconcile", str(cod), "--no-prefect", "--as-of", "2026-11-30",
                                 "--period", "2026-11"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "as of 2026-11-30 24:00 Asia/Shanghai" in result.output
    result = runner.invoke(cli, ["settlement", "cases", "list", "--as-of", "2026-11-30", "--json"])
    assert result.exit_code == 0, result.output
    listed = {(c["case_class"], c["order_no"]) for c in json.loads(result.stdout)}
    # no provider bills were ever received here, so the online orders are not waited for
    assert listed == {("unpaid_past_terms", "YD20261020001"), ("unpaid_past_terms", "YD20261025002"),
                      ("unpaid_past_terms", "YD20261101007"), ("unpaid_past_terms", "YD20261101008"),
                      ("cod_not_remitted", "YD20261030004")}  # fmt: skip
    result = runner.invoke(cli, ["reconcile", "--no-prefect", "--as-of", "2026-11-31"])
    assert result.exit_code == 1 and "is not YYYY-MM-DD" in result.output


def test_an_online_order_waits_for_every_account_s_bill_of_its_payment_window():
    from tasks.settlement.discrepancies import awaiting_bills

    policy = get_settings().settlement.model_copy(update={"unpaid_grace_days": 1})
    policy = policy.model_copy(update={"accounts": policy.accounts.model_copy(update={"alipay": ["A1", "A2"]})})
    orders_frame = pd.DataFrame({
        "payment_method": ["alipay", "alipay", "bank_transfer", "wechatpay", "alipay"],
        "payment_terms": ["prepaid", "prepaid", "net", "prepaid", "installment"],
        "order_date": [date(2026, 11, 10)] * 5,
        "first_due_date": [date(2026, 11, 11)] * 5,
    })  # fmt: skip
    days = pd.DataFrame({"source": ["alipay"] * 5, "account": ["A1", "A1", "A1", "A2", "A2"],
                         "bill_day": [date(2026, 11, d) for d in (10, 11, 12, 10, 11)]})  # fmt: skip
    # window 10–12 November (due the 11th + 1 day of grace): A2's bill of the 12th is missing
    assert awaiting_bills(orders_frame, days, policy).tolist() == [True, True, False, False, False]
    days = pd.concat([days, pd.DataFrame({"source": ["alipay"], "account": ["A2"], "bill_day": [date(2026, 11, 12)]})])
    # every day in for both accounts; WeChat Pay never sent a bill here, so its orders are not waited for
    assert awaiting_bills(orders_frame, days, policy).tolist() == [False] * 5


def test_imported_orders_addresses_are_classified_like_intake(engine, tmp_path):
    """Requirement S1: every order is remote, local or unknown from its address, imported ones too."""
    path = tmp_path / "addresses.csv"
    path.write_text(
        "订单号,下单时间,订单状态,客户名称,收货地址,省,市,区县,订单金额\n"
        "B1,2026-10-01,已审核,甲,沙坪坝区三峡广场1号,,,,10.00\n"  # a Chongqing district without 重庆
        "B2,2026-10-01,已审核,乙,四川省成都市武侯区人民南路四段1号,,,,10.00\n"
        "B3,2026-10-01,已审核,丙,asdf 随便写写 ###,,,,10.00\n"
        "B4,2026-10-01,已审核,丁,解放碑步行街8号,重庆市,重庆市,渝中区,10.00\n",
        encoding="utf-8",
    )
    result = order_import(in_process, path=path, now=utc(2026, 11, 1), actor="test", engine=engine)
    assert (result["imported"], result["quarantined"]) == (4, 0)
    with engine.connect() as conn:
        rows = conn.execute(select(orders.c.order_no, orders.c.region, orders.c.ship_province, orders.c.ship_city,
                                   orders.c.ship_district, orders.c.ship_detail)).all()  # fmt: skip
    got = {r.order_no: tuple(r)[1:] for r in rows}
    assert got["B1"] == ("local", "重庆市", "重庆市", "沙坪坝区", "三峡广场1号")
    assert got["B2"] == ("remote", "四川省", "成都市", "武侯区", "人民南路四段1号")
    assert got["B3"][0] == "unknown" and got["B3"][4] == "asdf 随便写写 ###"  # nothing the customer wrote is lost
    assert got["B4"] == ("local", "重庆市", "重庆市", "渝中区", "解放碑步行街8号")


def test_an_empty_wechat_bill_records_its_day_as_received(engine, tmp_path):
    """A day without WeChat Pay transactions still closes that day: the bill's day is the one its file name states
    (the 交易账单 does not print it), and with no rows the merchant is our one WeChat Pay account."""
    from yidi.schema_settlement import provider_bill_days

    nothing = pd.DataFrame(columns=["merchant_order_no", "kind", "amount_fen", "txn_time"])
    empty = write_wechatpay_bill(nothing, tmp_path / "wechatpay-2026-11-20.csv")
    one = write_wechatpay_bill(pd.DataFrame([pay("YD1", 1000, utc(2026, 11, 21, 2))]), tmp_path / "wx_20261121.csv")
    result = reconcile(engine, [empty, one], date(2026, 11, 22))
    assert [(f["status"], f.get("rows")) for f in result["files"]] == [("ingested", 0), ("ingested", 1)]
    with engine.connect() as conn:
        days = {tuple(r) for r in conn.execute(select(provider_bill_days.c.source, provider_bill_days.c.account,
                                                      provider_bill_days.c.bill_day))}  # fmt: skip
    assert days == {("wechatpay", "1900012345", date(2026, 11, 20)), ("wechatpay", "1900012345", date(2026, 11, 21))}


def test_a_payment_recorded_before_the_import_and_seen_again_in_a_bill_is_counted_once(engine, tmp_path):
    """YD20261015005 was paid 800.00 by Alipay on 15 October in the old system (imported as paid on 1 November).
    The Alipay bill of 15 October, reconciled later, shows that same payment: it is matched, but the order is paid
    once (no overpaid case); a second payment dated after the import is new money and is an overpayment."""
    setup_store(engine, tmp_path)
    october = write_alipay_bill(pd.DataFrame([pay("YD20261015005", 80000, utc(2026, 10, 15, 2))]),
                                tmp_path / "alipay-1015.zip", day=date(2026, 10, 15))  # fmt: skip
    reconcile(engine, [october], date(2026, 11, 20))
    assert states(engine)["YD20261015005"] == ("settled", "paid")
    assert {c[0] for c in open_cases(engine) if c[1] == "YD20261015005"} == set()
    with engine.connect() as conn:
        order_id = conn.execute(select(orders.c.id).where(orders.c.order_no == "YD20261015005")).scalar_one()
        event = conn.execute(select(order_events.c.reason, order_events.c.details)
                             .where(order_events.c.order_id == order_id, order_events.c.kind == "payment")).one()
        ledger = conn.execute(select(receivables.c.paid_fen, receivables.c.outstanding_fen)
                              .where(receivables.c.order_id == order_id)).all()  # fmt: skip
    assert "800.00 yuan already counted as paid before the import" in event.reason
    details = json.loads(event.details) if isinstance(event.details, str) else event.details
    assert (details["paid_fen"], details["counted_in_import_fen"]) == (80000, 80000)
    assert [tuple(r) for r in ledger] == [(80000, 0)]

    # the customer pays again after the cut-over: that is money yidi has not seen, an overpayment
    again = write_alipay_bill(pd.DataFrame([pay("YD20261015005", 80000, utc(2026, 11, 21, 2))]),
                              tmp_path / "alipay-1121.zip", day=date(2026, 11, 21))  # fmt: skip
    reconcile(engine, [again], date(2026, 11, 22))
    assert states(engine)["YD20261015005"] == ("settled", "overpaid")
    # two lines of the order's total: the customer paid twice, a duplicate payment (it takes the place of overpaid)
    assert {c[0] for c in open_cases(engine) if c[1] == "YD20261015005"} == {"duplicate_payment"}
