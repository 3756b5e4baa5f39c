"""The intake-orders flow and the intake-phone-order form flow on a real Prefect server."""

from __future__ import annotations

import json
import threading
import time

import pytest
from intake_support import TB, WC, count, frame, neutral, set_secrets
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run

from demo.standins.spreadsheets import template_frame, write_csv
from demo.standins.taobao import TaobaoStandin
from demo.standins.woocommerce import WooCommerceStandin
from yidi.db import get_engine, init_db
from yidi.schema import intake_records, orders
from yidi.settings import get_settings

pytestmark = pytest.mark.prefect


@pytest.fixture
def intake_home(tmp_path, monkeypatch):
    """A store and a policy file whose channels point at stand-ins (the test fills in the URLs)."""
    set_secrets(monkeypatch)
    monkeypatch.setenv("YIDI_DATABASE_URL", f"sqlite:///{tmp_path / 'flow.db'}")
    engine = get_engine()
    init_db(engine)

    def configure(text: str) -> None:
        path = tmp_path / "yidi.toml"
        path.write_text(text, encoding="utf-8")
        monkeypatch.setenv("YIDI_CONFIG", str(path))
        get_settings.cache_clear()

    yield engine, configure
    engine.dispose()


def test_intake_orders_runs_channels_independently_retries_transient_failures_and_reports(
    prefect_server, intake_home, tmp_path
):
    from flows.intake import intake_orders

    engine, configure = intake_home
    inbox = tmp_path / "inbox"
    write_csv(template_frame(neutral(8), prefix="F"), inbox / "phone.csv", "gbk")
    with TaobaoStandin(**TB, orders=neutral(40)) as top, WooCommerceStandin(
        consumer_key=WC["consumer_key"], consumer_secret="cs_the_real_one", orders=neutral(10, seed=3)
    ) as shop:
        configure(f"""
[intake]
task_retries = 2
retry_delay_seconds = 0.01
[intake.taobao]
enabled = true
url = "{top.url}"
app_key_env = "T_TB_KEY"
app_secret_env = "T_TB_SECRET"
session_env = "T_TB_SESSION"
window_minutes = 1440
lag_seconds = 0
attempts = 1
backoff_seconds = 0.01
[intake.woocommerce]
enabled = true
url = "{shop.url}"
consumer_key_env = "T_WC_KEY"
consumer_secret_env = "T_WC_SECRET"
attempts = 1
[intake.spreadsheet]
inbox_dir = "{inbox}"
settle_seconds = 0
""")
        top.faults.add("http503", times=1)  # the platform's first attempt fails: Prefect retries the task
        state = intake_orders(return_state=True)
        woo_requests = shop.requests
    assert state.is_failed()  # the website's credentials are wrong: the run says so ...
    assert "woocommerce" in state.message and "channel(s) failed" in str(state.message), state.message
    # ... while the other channels did their work.
    channels = frame(engine, "SELECT channel, count(*) n FROM orders GROUP BY 1").set_index("channel")["n"]
    assert channels.to_dict() == {"taobao": 40, "phone": 8}
    assert woo_requests == 1  # a permanent error is not retried
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["intake-summary"]),
                                           flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    data = artifacts[0].data
    rows = {row["channel"]: row for row in (json.loads(data) if isinstance(data, str) else data)}
    # channels as staff call them (seen, issue 15: "spreadsheet" for phone and fax orders)
    assert set(rows) == {"taobao (platform)", "website (WooCommerce)", "phone/fax (order templates)"}
    taobao = rows["taobao (platform)"]
    assert taobao["new"] == 40 and rows["phone/fax (order templates)"]["new"] == 8
    assert "refused the credentials" in rows["website (WooCommerce)"]["error"]
    assert taobao["remote"] + taobao["local"] + taobao["unknown"] == 40
    assert "cs_the_real_one" not in str(rows) and TB["app_secret"] not in str(rows)  # no secrets in artifacts


def _paused_run(name: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
            for run in runs:
                if run.name and client.read_flow(run.flow_id).name == name:
                    return run
            time.sleep(0.3)
    raise AssertionError(f"no paused {name} run")


def test_phone_order_form_waits_for_input_and_takes_it_in(prefect_server, intake_home):
    from flows.intake import intake_phone_order

    engine, configure = intake_home
    configure("")
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(intake_phone_order(timeout_hours=0.05)), daemon=True)
    worker.start()
    run = _paused_run("intake-phone-order")
    resume_flow_run(run.id, run_input={
        "channel": "fax", "customer_name": "周杰", "phone": "023-6385 6789", "address": "重庆市万州区高笋塘商圈5号",
        "payment_method": "货到付款", "lines": [{"item_code": "SKU-0004", "quantity": 3, "unit_price_yuan": "39.90"}],
    })
    worker.join(timeout=60)
    assert result.get("status") == "accepted", result
    row = frame(engine, "SELECT * FROM orders").iloc[0]
    assert (row["channel"], row["region"], row["payment_method"], row["order_total_fen"]) == ("fax", "local", "cod",
                                                                                             11970)
    assert count(engine, intake_records) == 1 and count(engine, orders) == 1


STAFF = """
[staff]
people = [
  { name = "wang.fang", login = "wfang", roles = ["operations", "reviewer"] },
  { name = "chen.jie", login = "cjie", roles = ["auditor"] },
]
"""


def _paused_again(run_id, after_state: str | None, timeout: float = 60) -> tuple[str, str]:
    """(state id, form description) once the run waits for input in a state other than ``after_state``."""
    from prefect.input.run_input import keyset_from_paused_state

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(run_id).state
            if state.is_paused() and str(state.id) != after_state:
                try:
                    keyset = keyset_from_paused_state(state)
                    return str(state.id), json.loads(client.read_flow_run_input(run_id, keyset["description"]))
                except Exception:  # noqa: BLE001 - the form is saved just after the run pauses
                    pass
            time.sleep(0.3)
    raise AssertionError("the phone order form did not pause again")


def test_the_phone_order_form_takes_only_a_listed_keyer_and_keying_then_approving_is_refused(
        prefect_server, engine, tmp_path, monkeypatch):  # fmt: skip
    """Issue 20: the form's entered_by is checked against the staff list (an auditor may not key orders in); a
    refusal brings the form back with what was typed, nothing taken in; the keyer is recorded and may then not
    approve the order (key_and_approve)."""
    from flows.intake import intake_phone_order
    from tasks.review.decisions import apply_decision
    from tasks.review.rules import InvalidDecision
    from yidi.lifecycle import OrderState, transition_orders

    policy = tmp_path / "yidi.toml"
    policy.write_text(STAFF, encoding="utf-8")
    monkeypatch.setenv("YIDI_CONFIG", str(policy))
    monkeypatch.setenv("YIDI_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(intake_phone_order(timeout_hours=0.05,
                                                                               entered_by="mallory")), daemon=True)
    worker.start()
    run = _paused_run("intake-phone-order")
    first, _ = _paused_again(run.id, None)
    typed = {"channel": "phone", "customer_name": "周杰", "phone": "13900001111", "address": "重庆市万州区高笋塘商圈5号",
             "lines": [{"item_code": "SKU-0004", "quantity": 3, "unit_price_yuan": "39.90"}]}  # fmt: skip
    for who in ("mallory", "cjie"):  # unknown; listed but an auditor
        resume_flow_run(run.id, run_input={**typed, "entered_by": who})
        first, description = _paused_again(run.id, first)
        assert "Input refused — nothing was taken in" in description
        assert ("not listed staff" if who == "mallory" else "lacks the operations or reviewer or finance or manager "
                                                            "role") in description  # fmt: skip
        assert count(engine, intake_records) == 0 and count(engine, orders) == 0
    resume_flow_run(run.id, run_input={**typed, "entered_by": "wfang"})
    worker.join(timeout=60)
    assert result.get("status") == "accepted", result
    record = frame(engine, "SELECT source_ref, content FROM intake_records").iloc[0]
    assert record["source_ref"] == "form:wang.fang" and json.loads(record["content"])["entered_by"] == "wang.fang"
    order_id = int(frame(engine, "SELECT id FROM orders")["id"].iloc[0])
    with engine.begin() as conn:
        transition_orders(conn, [order_id], OrderState.PENDING_REVIEW, reason="test", actor="test")
    with pytest.raises(InvalidDecision, match="key_and_approve"):
        apply_decision(engine, order_id, "approve", "wang.fang", settings=get_settings())
    assert frame(engine, "SELECT state FROM orders")["state"].tolist() == ["pending_review"]
