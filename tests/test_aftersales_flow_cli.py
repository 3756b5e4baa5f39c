"""The after-sales step list over the inbox folders (every inbound path, a re-read adds nothing), the CLI as staff
use it, and the customer-facing outcomes: one notice each, sent once."""

from __future__ import annotations

import json
import shutil

from aftersales_support import add_order, build_reference, local, signed_refund_policy
from sqlalchemy import func, select, update
from tests_feedback_mail import COMPLAINT_MAIL
from typer.testing import CliRunner

from connectors.carrier_shipping import CarrierShippingClient
from demo.standins import carrier_shipping
from demo.standins.refunds import RefundStandIn
from flows.aftersales import after_sales_cycle, report_tables
from flows.compose import in_process
from tasks.aftersales.refunds import make_refund_clients
from yidi.bulk import read_frame
from yidi.db import get_engine, init_db
from yidi.schema import notification_outbox
from yidi.schema_aftersales import aftersales_cases, aftersales_inbox, feedback_items, service_jobs


def _inbox(tmp_path):
    root = tmp_path / "inbox"
    (root / "requests" / "woocommerce").mkdir(parents=True)
    (root / "requests" / "woocommerce" / "refunds-1.json").write_text(json.dumps([
        {"source_id": "woo-refund-11", "order_no": "YD-A", "kind": "退货", "requested_at": "2026-12-05T10:00:00+08:00"},
        {"source_id": "woo-refund-12", "order_no": "YD-GONE", "kind": "退货"},
    ], ensure_ascii=False), encoding="utf-8")  # fmt: skip
    (root / "feedback" / "email").mkdir(parents=True)
    (root / "feedback" / "email" / "m1.eml").write_bytes(COMPLAINT_MAIL)
    shutil.copy(root / "feedback" / "email" / "m1.eml", root / "feedback" / "email" / "m1-again.eml")
    (root / "feedback" / "website").mkdir(parents=True)
    (root / "feedback" / "website" / "contact.json").write_text("{not json", encoding="utf-8")
    return root


def test_the_cycle_lands_every_path_once_and_a_rerun_adds_nothing(sqlite_engine, tmp_path):
    engine = sqlite_engine
    build_reference(engine)
    add_order(engine, "YD-A", {"SKU-0009": 1}, delivered=local(2026, 12, 2))
    add_order(engine, "YD-SVC", {"SV-REPAIR": 1}, state="approved", delivered=None)
    inbox = _inbox(tmp_path)
    carrier = carrier_shipping.start()
    try:
        with RefundStandIn() as provider, CarrierShippingClient(carrier.url, backoff_seconds=0.01) as waybills:
            clients = make_refund_clients(signed_refund_policy(provider, tmp_path / "keys", alipay_url=provider.url))
            carrier.fail_next("lost")  # the carrier makes the waybill, the answer is lost: asked again, same key
            first = after_sales_cycle(in_process, engine=engine, now=local(2026, 12, 5, 11), inbox=inbox,
                                      clients=clients, carrier=waybills, actor="test")  # fmt: skip
            second = after_sales_cycle(in_process, engine=engine, now=local(2026, 12, 5, 11, 15), inbox=inbox,
                                       clients=clients, carrier=waybills, actor="test")  # fmt: skip
    finally:
        carrier.stop()
    assert first["return_waybills"] == {"issued": 1, "waiting": 0, "refused": 0}
    assert second["return_waybills"] == {"issued": 0, "waiting": 0, "refused": 0}
    assert len(carrier.created) == 1  # one return waybill at the carrier
    assert first["inbox"]["requests/woocommerce"] == {"landed": 1, "duplicates": 0, "quarantined": 1}
    assert first["inbox"]["feedback/email"] == {"landed": 1, "duplicates": 1, "quarantined": 0}
    assert first["inbox"]["feedback/website"]["quarantined"] == 1
    assert first["assessed"] == {"return": 1} and first["service"] == {"created": 1, "booked": 1}
    assert all(v["landed"] == 0 for v in second["inbox"].values())
    assert second["assessed"] == {} and second["service"] == {"created": 0, "booked": 0}
    with engine.connect() as conn:
        counts = {t.name: conn.execute(select(func.count()).select_from(t)).scalar()
                  for t in (aftersales_inbox, aftersales_cases, feedback_items, service_jobs)}  # fmt: skip
    assert counts == {"aftersales_inbox": 4, "aftersales_cases": 1, "feedback_items": 1, "service_jobs": 1}
    tables = report_tables(engine, local(2026, 12, 5, 12))
    assert tables["open-cases-by-age"] == [{"type": "return", "< 1 天": 1, "1-3 天": 0, "3-7 天": 0, "> 7 天": 0}]
    assert "13900000000" not in json.dumps(tables, ensure_ascii=False)


CUSTOMER_OUTCOMES = {
    # outcome -> (the template the customer receives, notices: SMS and mail each, the survey by SMS alone) (P2, T2)
    "request received": ("aftersales_received", 2),
    "decision": ("aftersales_decision", 2),
    "return waybill": ("aftersales_return_waybill", 2),
    "returned goods received": ("aftersales_goods_received", 2),
    "refund": ("aftersales_refunded", 2),
    "service appointment": ("service_appointment", 2),
    "answer to feedback": ("feedback_answer", 2),
    "satisfaction survey after the closed case": ("satisfaction_survey", 1),
}


def test_each_customer_facing_outcome_produces_one_notice_sent_once(tmp_path):
    from app.cli.main import cli

    init_db()
    engine = get_engine()
    build_reference(engine)
    add_order(engine, "YD-N", {"SKU-0009": 1}, delivered=local(2026, 12, 2), method="bank_transfer")
    add_order(engine, "YD-S", {"SV-INSTALL": 1}, state="approved", delivered=None)
    runner = CliRunner()

    def ok(*args):
        result = runner.invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    for _ in range(2):  # everything twice: no outcome may notify twice
        ok("aftersales", "request", "YD-N", "退货", "--quality", "--as-of", "2026-12-05T10:00:00")
    ok("aftersales", "assess", "--as-of", "2026-12-05T11:00:00")
    case_no = json.loads(ok("aftersales", "list", "--json"))[0]["case_no"]
    shown = ok("aftersales", "show", case_no)
    assert "QUALITY_RETURN_7D" in shown and "第二十四条" in shown
    # styled, not printed as markup: the first line starts with the case number
    assert shown.splitlines()[0].startswith(f"{case_no}  order YD-N") and "[bold]" not in shown
    carrier = carrier_shipping.start()
    try:
        with CarrierShippingClient(carrier.url) as waybills:
            for _ in range(2):
                after_sales_cycle(in_process, engine=engine, now=local(2026, 12, 5, 12), inbox=tmp_path / "none",
                                  clients={}, carrier=waybills, actor="test")  # fmt: skip
    finally:
        carrier.stop()
    ok("aftersales", "receive", case_no, "--inspection", "good", "--as-of", "2026-12-08T10:00")
    failed = runner.invoke(cli, ["aftersales", "receive", case_no, "--inspection", "good"])
    assert failed.exit_code == 1 and "not awaiting returned goods" in failed.output
    for _ in range(2):
        after_sales_cycle(in_process, engine=engine, now=local(2026, 12, 8, 11), inbox=tmp_path / "none", clients={},
                          actor="test")  # fmt: skip
    ok("feedback", "add", "请问发票什么时候开？", "--contact", "13900000000", "--order", "YD-N",
       "--as-of", "2026-12-08T10:00")
    ok("feedback", "close", "FB00000001", "发票已开具并发送到您的邮箱。", "--as-of", "2026-12-08T11:00")
    listed = ok("feedback", "list")
    assert "139****0000" in listed and "Beijing" in listed and "FB00000001 " in listed
    cases_listed = ok("aftersales", "list")
    assert f"{case_no} " in cases_listed and "YD-N" in cases_listed  # numbers whole, to copy into `show`
    assert max(len(line) for line in (listed + cases_listed).splitlines()) <= 80
    with engine.connect() as conn:
        sent = read_frame(conn, select(notification_outbox.c.template, notification_outbox.c.medium,
                                       notification_outbox.c.order_id))  # fmt: skip
    per_template = sent.groupby("template").size().to_dict()
    assert {outcome: per_template.get(t) for outcome, (t, _) in CUSTOMER_OUTCOMES.items()} == {
        outcome: n for outcome, (_, n) in CUSTOMER_OUTCOMES.items()}
    # a bank-transfer refund is an instruction for finance, and the customer hears about it once per medium
    assert sorted(sent[sent["template"] == "aftersales_refunded"]["medium"]) == ["email", "sms"]


def test_the_demo_returns_refunds_and_reconciles_on_the_prefect_server(prefect_server, engine, tmp_path, monkeypatch):
    """`make demo`'s after-sales stage on a small store (both databases): decisions, a return parcel tracked to
    arrival and inspected, a damaged return not restocked, refunds made once by the stand-in, a platform rating
    read, survey replies and a contact form posted to the receiver over HTTP, the refund bill reconciled with no
    refund-without-return case."""
    from demo.aftersales import aftersales_demo
    from demo.flows import point_notifications_at
    from demo.summary import aftersales_figures, aftersales_lines
    from yidi.schema import orders
    from yidi.schema_aftersales import surveys
    from yidi.schema_settlement import settlement_cases

    monkeypatch.setenv("YIDI_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    build_reference(engine)
    monkeypatch.setenv("YIDI_CONFIG", str(tmp_path / "yidi.toml"))  # restored after the test
    point_notifications_at(tmp_path, 2525, "http://127.0.0.1:9/sms/send")
    for n in range(14):
        add_order(engine, f"YD-D{n}", {"SKU-0009": 1, "SKU-0001": 1} if n % 4 else {"SKU-0004": 2},
                  delivered=local(2026, 11, 20 + n % 3), method="alipay" if n % 3 else "wechatpay",
                  channel="taobao" if n == 13 else "website")  # fmt: skip
    with engine.begin() as conn:  # the platform's trade number, which the buyer's rating names
        conn.execute(update(orders).where(orders.c.order_no == "YD-D13").values(channel_order_id="3948201774512083"))
    result = aftersales_demo()
    with engine.connect() as conn:
        decided = read_frame(conn, select(aftersales_cases.c.decision_rule, aftersales_cases.c.status,
                                          aftersales_cases.c.return_parcel_state))  # fmt: skip
        scored = read_frame(conn, select(surveys.c.score).where(surveys.c.score.is_not(None)).order_by(surveys.c.id))
        flagged = read_frame(conn, select(settlement_cases.c.case_class).where(
            settlement_cases.c.case_class == "refund_without_return"))  # fmt: skip
        feedback = read_frame(conn, select(feedback_items.c.channel, feedback_items.c.category, orders.c.order_no)
                              .outerjoin(orders, orders.c.id == feedback_items.c.order_id))  # fmt: skip
    # The demo's eight requests, one decision each: two no-reason returns (one passes inspection, one fails), one
    # past the seven days, one fresh perishable, a quality repair, a quality exchange, a warranty repair, a revisit.
    assert sorted(zip(decided["decision_rule"], decided["status"], strict=True)) == [
        ("INSTALLATION_REVISIT", "repairing"), ("NO_REASON_EXCEPTION_FRESH_PERISHABLE", "rejected"),
        ("NO_REASON_RETURN_7D", "closed"), ("NO_REASON_RETURN_7D", "inspection_failed"),
        ("NO_REASON_WINDOW_PASSED", "rejected"), ("QUALITY_EXCHANGE_7D", "replaced"), ("QUALITY_REPAIR", "repairing"),
        ("WARRANTY_REPAIR", "repairing"),
    ]  # fmt: skip
    # Three parcels to come back; the first is not scanned on the first cycle, signed for at the warehouse by the
    # second.
    assert result["first"]["return_parcels"]["no_scan_yet"] == 3  # two returns and the exchange
    assert result["second"]["return_parcels"]["arrived"] == 1
    assert sorted(decided["return_parcel_state"].dropna()) == ["arrived"]
    # Received: the good return and the exchange back to stock, the damaged one quarantined; one refund, one
    # replacement.
    received = result["received"]
    assert (received["restocked"], received["quarantined"], received["refunds"], received["replacements"]) == (
        2, 1, 1, 1)
    # One refund (the return that passed inspection), in one refund file for reconciliation.
    assert (result["refunds_made"], result["settlement"]["refund_files"]) == (1, 1) and flagged.empty
    # The platform rating (praise) against its order; the website form's suggestion; the three mails.
    assert result["platform_rating"] == {"landed": 1, "duplicates": 0, "quarantined": 0}
    assert sorted(zip(feedback["channel"], feedback["category"], strict=True)) == [
        ("email", "complaint"), ("email", "inquiry"), ("email", "praise"), ("platform", "praise"),
        ("website", "suggestion")]  # fmt: skip
    assert feedback[feedback["channel"] == "platform"]["order_no"].tolist() == ["YD-D13"]
    # The survey after the closed return answered by SMS, pushed twice by the Aliyun stand-in: stored once.
    inbound = result["inbound"]
    assert inbound["sms_pushes"] == [{"code": 0, "msg": "接收成功"}] * 2 and inbound["contact_form"] == "mail_sent"
    assert {k: inbound["counts"][k] for k in ("sms_landed", "sms_duplicates", "form_landed")} == {
        "sms_landed": 1, "sms_duplicates": 1, "form_landed": 1}
    assert scored["score"].tolist() == [5]
    # What the demo's summary tells of it, at 80 columns.
    figures = aftersales_figures(engine)
    assert (figures["tracked_to_arrival"], figures["survey_replies"], figures["refund_without_return"]) == (1, 1, 0)
    assert figures["feedback"] == [("complaint", 1), ("inquiry", 1), ("praise", 2), ("suggestion", 1)]
    told = aftersales_lines(figures)
    assert max(map(len, told)) <= 80 and told[0] == "After-sales: 8 cases; 1 unreadable inbound record kept (quarantined)"
    assert {"  1 refused: statutory exception (fresh_perishable) → rejected", "  1 refused: past the 7 days → rejected",
            "  1 exchanged (quality, within 7 days) → replaced", "  1 installation revisit → repairing",
            "  return parcels tracked to arrival (Kuaidi100): 1"} <= set(told)
