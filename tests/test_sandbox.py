"""The live sandbox's services (issue 15, Build 8; `make sandbox`): every stand-in up, the policy file and the
worker's environment pointing the channels at them, new orders on each tick. The flows run here in process against
the sandbox exactly as the scheduled deployments do under `make sandbox` (same policy, same environment)."""

from __future__ import annotations

import json
from pathlib import Path

from demo.sandbox import Sandbox, env_file


def test_the_sandbox_configures_every_channel_and_new_orders_arrive_on_each_tick(tmp_path, monkeypatch):
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from flows.compose import in_process
    from flows.intake import order_intake
    from flows.notifications import notification_pass
    from yidi.db import get_engine, init_db
    from yidi.schema import orders
    from yidi.settings import reload_settings

    monkeypatch.setenv("YIDI_HOME", str(tmp_path))
    monkeypatch.setenv("YIDI_DATABASE_URL", f"sqlite:///{tmp_path / 'sandbox.db'}")
    with Sandbox(tmp_path, orders_per_tick=6) as sandbox:
        env = json.loads(env_file(tmp_path).read_text(encoding="utf-8"))  # what `make sandbox` hands the worker
        assert env["YIDI_CONFIG"] == str(tmp_path / "sandbox" / "yidi.toml")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = reload_settings()
        assert (settings.intake.taobao.url, settings.notifications.sms_gateway_url) == (sandbox.top.url,
                                                                                        sandbox.sms.url)
        assert settings.fulfilment.carrier_api_url == sandbox.carrier.url
        assert settings.tracking.query_url == sandbox.kuaidi100.query_url
        engine = get_engine()
        init_db(engine)
        sandbox.seed_store()
        channels = ["taobao", "woocommerce", "email"]
        for tick in (1, 2):  # each tick: 6 new orders, 2 per channel, and the next intake run takes exactly those
            assert sandbox.feed() == {"taobao": 2, "woocommerce": 2, "email": 2}
            landed = order_intake(in_process, channels=channels, engine=engine)
            assert {name: (landed[name]["new"], landed[name].get("error")) for name in channels} == {
                name: (2, None) for name in channels}, f"tick {tick}"
        # Every order's receipt notice ([notifications].notify_on_receipt, P2: each medium the order has a contact
        # for) reaches the sandbox's relays: a text for each of the 12 orders (every demo customer has a mobile
        # number), a mail for each order that carries an email address (the channel's record may not).
        with engine.connect() as conn:
            with_email = conn.execute(select(func.count()).select_from(orders).where(
                orders.c.customer_email.is_not(None), orders.c.customer_email != "")).scalar_one()  # fmt: skip
        report = notification_pass(in_process, engine=engine, settings=settings).as_dict()
        assert report["by_medium"] == {"email:sent": with_email, "sms:sent": 12} and report["failed"] == 0
        assert (len(sandbox.smtp.received()), len(sandbox.sms.messages)) == (with_email, 12)
        # The seeded catalog and customers: the automated review decides every order, none for an unknown item.
        # The sandbox's review policy approves the clean ones at once ([review] auto_approve_clean); of these 12, one
        # pays cash on delivery (PAYMENT_SPECIAL_REVIEW: a person looks), the 11 others passed every check.
        from review_data import run_auto_review

        from yidi.schema_review import review_findings

        assert settings.review.auto_approve_clean
        decided = run_auto_review(engine, build_docs=False, keep_results=False)
        assert (decided["checked"], decided["auto_approved"], decided["pending_review"], decided["auto_rejected"]) == (
            12, 11, 1, 0)
        assert decided["by_reason"].get("PAYMENT_SPECIAL_REVIEW") == 1
        with engine.connect() as conn:
            codes = set(conn.execute(select(review_findings.c.reason_code)).scalars())
        assert not codes & {"ITEM_UNKNOWN", "CUSTOMER_UNKNOWN"}, codes
        # The providers' files for the orders it paid, into the inbox the reconcile deployments read; the
        # reconciliation takes each file once and matches every line to its order.
        from flows.settlement import reconciliation
        from tasks.settlement.files import inbox_files
        from yidi.workdays import BUSINESS_TZ

        # the 12 orders of the sandbox's seed: 7 paid with Alipay, 2 with WeChat Pay, 2 bank transfers not refused
        assert sandbox.drop_payment_files() == {"alipay": 7, "wechatpay": 2, "bank_transfer": 2}
        today = datetime.now(UTC).astimezone(BUSINESS_TZ).date()
        assert sorted(path.parent.name for path in inbox_files(settings)) == ["alipay", "bank-icbc", "wechatpay"]
        report = reconciliation(in_process, files=inbox_files(settings), engine=engine, period=str(today))["report"]
        assert (report["files_ingested"], report["files_rejected"], report["new_lines"], report["matched_lines"],
                report["match_rate"]) == (3, 0, 11, 11, 1.0)  # fmt: skip
        assert report["by_rule"] == {"merchant_order_no": 9, "memo_order_no": 2}  # the bank memo names the order
        # the next drop has nothing new to pay; the next scheduled run finds only files it already took
        assert sandbox.drop_payment_files() == {}
        again = reconciliation(in_process, files=inbox_files(settings), engine=engine, period=str(today))["report"]
        assert (again["files_ingested"], again["files_duplicate"], again["new_lines"]) == (0, 3, 0)
    assert not env_file(tmp_path).exists()  # stopped: the worker's environment is gone with the services


def test_make_sandbox_starts_the_services_for_the_worker_and_make_down_stops_them(tmp_path, monkeypatch):
    """`make sandbox` starts `python -m demo.sandbox` as a service (pid file, log) before the stack; the worker's
    environment then carries the sandbox's policy and credentials; `make down` stops it and that environment goes."""
    import time

    from app import local_stack

    monkeypatch.setenv("YIDI_HOME", str(tmp_path))
    monkeypatch.setenv("YIDI_SANDBOX_TICK", "0.5")
    monkeypatch.setenv("YIDI_SANDBOX_PAYMENT_TICKS", "2")
    monkeypatch.setattr(local_stack, "up", lambda: None)  # the Prefect part is `make up`'s, tested on its own
    scheduled = []  # the sandbox's schedules need the server: tested on one below
    monkeypatch.setattr(local_stack, "schedule_sandbox", lambda cadence: scheduled.append(cadence) or cadence)
    local_stack.sandbox()
    try:
        worker_env = local_stack.prefect_env()
        assert worker_env["YIDI_CONFIG"] == str(tmp_path / "sandbox" / "yidi.toml")
        assert worker_env["YIDI_TAOBAO_APP_KEY"] and worker_env["YIDI_WC_CONSUMER_SECRET"].startswith("cs_")
        log = tmp_path / "run" / "sandbox.log"
        deadline = time.monotonic() + 30
        while "tick 2: new orders" not in log.read_text(encoding="utf-8") and time.monotonic() < deadline:
            time.sleep(0.2)  # a real service on a real clock: its ticks are what is being tested
        assert "tick 2: new orders {'taobao': 2, 'woocommerce': 2, 'email': 2}" in log.read_text(encoding="utf-8")
        while "tick 2: payment files dropped" not in log.read_text(encoding="utf-8") and time.monotonic() < deadline:
            time.sleep(0.2)
        # every second tick the providers' "day" ends; no worker runs intake here, so no order is paid yet
        assert "tick 2: payment files dropped {}" in log.read_text(encoding="utf-8")
        while "tick 2: warehouse" not in log.read_text(encoding="utf-8") and time.monotonic() < deadline:
            time.sleep(0.2)
        # and the warehouse's day: nothing to produce or receive yet, every stocked item restocked (20 rows)
        assert "tick 2: warehouse {'produced': 0, 'received': 0, 'restocked': 20}" in log.read_text(encoding="utf-8")
        # the deployments on the sandbox's clock: the order path every other tick, reconciled once per sandbox day
        # (0.5 s × 2 ticks), the push receiver up for the carrier's pushes
        assert scheduled[0]["intake-orders"] == 1.0 and scheduled[0]["reconcile-settlements-on-demand"] == 1.0
        assert local_stack.ours_alive("callbacks")
    finally:
        local_stack.down()
    assert not local_stack.ours_alive("sandbox") and not local_stack.ours_alive("callbacks")
    assert not env_file(tmp_path).exists()
    assert "YIDI_CONFIG" not in local_stack.sandbox_env()


def test_make_sandbox_puts_the_deployments_on_its_clock_and_a_plain_make_up_clears_the_on_demand_one(prefect_server,
                                                                                                   monkeypatch):
    """The sandbox's clock (``demo.sandbox.sandbox_cadence``): each scheduled deployment gets one interval schedule
    of it, still one when the sandbox starts twice; the payment files come once per sandbox "day" (tick × payment
    ticks), so the on-demand reconcile deployment runs on that day. prefect.yaml gives the on-demand deployment no
    schedule, so a plain `make up` removes it (``prefect deploy`` replaces the others' schedules with its own)."""
    from datetime import timedelta

    from prefect.client.orchestration import get_client

    from app import local_stack
    from flows.intake import intake_orders
    from flows.settlement import reconcile_settlements

    monkeypatch.setenv("YIDI_SANDBOX_TICK", "30")
    monkeypatch.setenv("YIDI_SANDBOX_PAYMENT_TICKS", "4")
    with get_client(sync_client=True) as client:
        reconcile = client.create_deployment(client.create_flow(reconcile_settlements), "reconcile-settlements-on-demand")
        intake = client.create_deployment(client.create_flow(intake_orders), "intake-orders")
        for _ in range(2):  # started twice: still one schedule each
            applied = local_stack.schedule_sandbox(local_stack.sandbox_cadence())
        assert applied["reconcile-settlements-on-demand"] == 120.0 and applied["intake-orders"] == 60.0
        for deployment_id, seconds in ((reconcile, 120), (intake, 60)):
            schedules = client.read_deployment(deployment_id).schedules
            assert [(s.schedule.interval, s.active) for s in schedules] == [(timedelta(seconds=seconds), True)]
        # (the session's server may hold other tests' deployments: this one is what matters)
        assert "reconcile-settlements/reconcile-settlements-on-demand" in local_stack.clear_unlisted_schedules()
        assert client.read_deployment(reconcile).schedules == []


def test_the_sandbox_reviewer_approves_unless_the_form_shows_a_credit_finding():
    """The stand-in reviewer decides from the form's text as a person would: a credit finding (over the limit,
    overdue) is rejected with a reason and a proposed solution (the form refuses a rejection without them);
    everything else the automated review left for a person (cash on delivery, installments) is approved."""
    from demo.sandbox import StandInReviewer

    form = {"orders": ["YD-1", "YD-2"], "description": (
        "Decide each order …\n\n#### YD-1 · ¥1,280.00 · taobao · cod · due 2026-12-07 10:00 (Asia/Shanghai)\n\n"
        "- `PAYMENT_SPECIAL_REVIEW` \\[needs_review\\] 货到付款 / cash on delivery\n\n"
        "#### YD-2 · ¥88,000.00 · email · bank_transfer · due 2026-12-07 10:00 (Asia/Shanghai)\n\n"
        "- `CREDIT_LIMIT_EXCEEDED` \\[needs_review\\] 超出信用额度 / over the credit limit")}
    decisions = StandInReviewer(Path("/nonexistent")).decide(form)
    assert decisions[0] == {"order_no": "YD-1", "decision": "approve"}
    assert decisions[1]["decision"] == "reject" and decisions[1]["reason"] and decisions[1]["proposed_solution"]
