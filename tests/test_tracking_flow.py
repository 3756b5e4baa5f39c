"""The poll-carriers flow and `yidi tracking poll` on the session's real Prefect server, with the shared rate limit."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from prefect_support import artifacts_of
from sqlalchemy import select
from typer.testing import CliRunner

from connectors.pacing import RatePacer
from demo.standins.kuaidi100 import start
from demo.standins.parcel_routes import SimClock
from demo.tracking import make_shipped_orders, standin_registrations
from yidi.db import get_engine, init_db
from yidi.schema import orders
from yidi.settings import get_settings

pytestmark = pytest.mark.prefect
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def ensure_limit(name: str, limit: int, decay: float) -> None:
    """What `make up` does (app.local_stack.ensure_global_limits), through the API."""
    from flows.tracking import ensure_rate_limit

    ensure_rate_limit(name, decay) if limit == round(decay) else _ensure_exact(name, limit, decay)


def _ensure_exact(name: str, limit: int, decay: float) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit, slot_decay_per_second=decay)
            )


@pytest.fixture
def tracking_env(prefect_server, tmp_path, monkeypatch):
    policy_file = tmp_path / "yidi.toml"
    policy_file.write_text(
        "[tracking]\nrequests_per_second = 400.0\nretry_backoff_seconds = 0.01\nrate_limited_backoff_seconds = 0.01\n"
        'rate_limit_name = "kuaidi100-query-test"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("YIDI_CONFIG", str(policy_file))
    monkeypatch.setenv("YIDI_KUAIDI100_CUSTOMER", "standin-customer")
    monkeypatch.setenv("YIDI_KUAIDI100_KEY", "standin-key")
    get_settings.cache_clear()
    policy = get_settings().tracking
    for name, spec in policy.global_limits.items():
        ensure_limit(name, int(spec["limit"]), float(spec["slot_decay_per_second"]))
    init_db()
    clock = SimClock(T0)
    with start(clock=clock) as carrier:
        yield get_engine(), carrier, clock


def test_poll_carriers_flow_reports_statuses_and_exceptions(tracking_env):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
    )

    from flows.tracking import poll_carriers

    engine, carrier, clock = tracking_env
    with engine.begin() as conn:
        ships = make_shipped_orders(conn, 40, shipped_at=T0)
        scenarios = {
            num: ("damaged" if i % 10 == 0 else "normal") for i, num in enumerate(ships["waybill_no"])
        }
        carrier.register_many(standin_registrations(conn, scenarios=scenarios))
    clock.advance(hours=60)
    carrier.fail_next(1, "http503")  # a transient error inside the run: retried, nobody notices
    state = poll_carriers(as_of=clock.now(), query_url=carrier.query_url, return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert summary["due"] == 40 and summary["outcomes"] == {"ok": 40}
    assert summary["exceptions"] == {"damaged": 4}
    assert sum(summary["statuses"].values()) == 40
    with engine.connect() as conn:
        states = list(conn.execute(select(orders.c.state)).scalars())
    # 60 hours after shipping every normal route has been signed for; the 4 damaged parcels stop as exceptions.
    assert summary["statuses"] == {"delivered": 40}
    assert {s: states.count(s) for s in set(states)} == {"delivered": 36, "exception": 4}
    with get_client(sync_client=True) as client:
        published = artifacts_of(state)
        report, table = [published["poll-carriers"]], [published["tracking-exceptions"]]
        steps: set[str] = set()
        for _ in range(50):  # task runs reach the server as events, a moment after the flow returns
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            )
            steps = {r.name.rsplit("-", 1)[0] for r in runs}
            if {"apply-landed-pushes", "poll-batch", "detect-time-exceptions"} <= steps:
                break
            time.sleep(0.2)
    # The step list ran as this flow's task runs (the batches from the step list's threads included).
    assert {"apply-landed-pushes", "poll-batch", "detect-time-exceptions"} <= steps, steps
    assert report and "canonical status" in report[0].data
    rows = table[0].data if isinstance(table[0].data, list) else json.loads(table[0].data)
    assert len(rows) == 4 and all(r["type"] == "damaged" for r in rows)
    assert not any("13" in str(r.get("evidence", ""))[:3] for r in rows)


def test_pacer_draws_from_the_prefect_rate_limit(tracking_env):
    ensure_limit("pacer-test", 5, 50.0)
    pacer = RatePacer(1000, limit_name="pacer-test", chunk=5)
    started = time.perf_counter()
    for _ in range(30):
        pacer.acquire()
    elapsed = time.perf_counter() - started
    # 30 slots from a limit of 5 refilling at 50/s need at least (30 - 5) / 50 = 0.5 s; the local pace alone 0.03 s.
    assert elapsed >= 0.45
    assert pacer.limit_acquisitions == 6


def test_yidi_tracking_poll_one_waybill(tracking_env):
    from app.cli.main import cli

    engine, carrier, clock = tracking_env
    with engine.begin() as conn:
        ships = make_shipped_orders(conn, 3, shipped_at=T0, carriers=["yunda"])
        carrier.register_many(standin_registrations(conn))
    clock.advance(hours=20)
    runner = CliRunner()
    num = ships["waybill_no"][1]
    args = ["tracking", "poll", "--waybill", num, "--as-of", (clock.now()).isoformat(), "--query-url", carrier.query_url]
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["due"] == 1
    again = runner.invoke(cli, args)  # inside the minimum interval: nothing queried, stored status shown
    assert again.exit_code == 0, again.output
    assert "polled 0 due" in again.output and num in again.output and "in_transit" in again.output
    assert carrier.stats()["requests"] == 1
    missing = runner.invoke(cli, ["tracking", "poll", "--waybill", "NOPE"])
    assert missing.exit_code == 1
    listed = runner.invoke(cli, ["tracking", "incidents", "--status", "all", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


def test_old_command_names_still_work_for_one_release(tracking_env):
    from app.cli.main import cli

    engine, carrier, clock = tracking_env
    with engine.begin() as conn:
        ships = make_shipped_orders(conn, 2, shipped_at=T0, carriers=["yunda"])
        carrier.register_many(standin_registrations(conn))
    clock.advance(hours=20)
    runner = CliRunner()
    num = ships["waybill_no"][0]
    old = ["track", "--waybill", num, "--as-of", clock.now().isoformat(), "--query-url", carrier.query_url]
    result = runner.invoke(cli, [*old, "--no-prefect", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["due"] == 1
    listed = runner.invoke(cli, ["incidents", "--status", "all", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
    assert "track " not in runner.invoke(cli, ["--help"]).output


def test_tracking_demo_moves_shipments_and_opens_incidents(tracking_env):
    from demo.tracking import tracking_demo
    from yidi.schema_tracking import tracking_incidents, tracking_push_receipts

    engine, _, _ = tracking_env
    with engine.begin() as conn:
        make_shipped_orders(conn, 40, shipped_at=T0, expected_delivery_date=datetime(2026, 3, 4).date())
    result = tracking_demo(cycles=3, hours_per_cycle=36, requests_per_second=400, push_share=0.25)
    assert result["shipments"] == 40 and len(result["cycles"]) == 3
    # every push the carrier sent (a quarter of the parcels subscribed) was landed by the receiver
    pushed = sum(cycle["pushes"] for cycle in result["cycles"])
    assert result["receiver"]["landed"] == pushed and pushed >= 10
    with engine.connect() as conn:
        states = set(conn.execute(select(orders.c.state)).scalars())
        kinds = set(conn.execute(select(tracking_incidents.c.incident_type)).scalars())
        receipts = conn.execute(select(tracking_push_receipts.c.status)).scalars().all()
    assert {"delivered", "exception"} <= states
    assert kinds & {"damaged", "lost", "delay", "refused"}
    assert receipts and set(receipts) == {"applied"}
    # issue 18: two trades closed while their parcels travel are intercepted and come back into stock by the third
    # step (back within 21-43 h of the request); the refund that came when the parcel was out for delivery or
    # signed for was too late
    interceptions = result["interceptions"]
    assert (interceptions["requested"], interceptions["returned"]) == (2, 2)
    assert interceptions["too_late"] == 1
    # these shipments were made without fulfilment's allocations, so there is nothing to restock here (the stock
    # coming back is tested in tests/test_interception.py)
    assert interceptions["restocked_units"] == 0
    assert "closed" in states


def test_poll_carriers_ends_failed_when_the_carrier_api_is_down(tracking_env):
    """Seen (issue 15): a run that could not reach a system it needs stayed green."""
    from datetime import timedelta

    from flows.tracking import CarrierUnreachable, poll_carriers

    engine, carrier, clock = tracking_env
    with engine.begin() as conn:
        ships = make_shipped_orders(conn, 12, shipped_at=T0)
        carrier.register_many(standin_registrations(conn, scenarios={n: "normal" for n in ships["waybill_no"]}))
    clock.advance(hours=60)
    carrier.down(timedelta(hours=1))
    state = poll_carriers(as_of=clock.now(), query_url=carrier.query_url, return_state=True)
    assert state.is_failed()
    with pytest.raises(CarrierUnreachable, match="carrier API unreachable"):
        state.result()
    with engine.connect() as conn:
        assert set(conn.execute(select(orders.c.state)).scalars()) == {"shipped"}  # nothing half-done


def test_poll_carriers_without_a_kuaidi100_account_is_completed_and_says_it_skipped(tracking_env, monkeypatch):
    """Issue 15: on a fresh `make up` no carrier account is set; the scheduled poll must not be red."""
    from flows.tracking import poll_carriers

    engine, _carrier, clock = tracking_env
    monkeypatch.delenv("YIDI_KUAIDI100_CUSTOMER")
    monkeypatch.delenv("YIDI_KUAIDI100_KEY")
    with engine.begin() as conn:
        make_shipped_orders(conn, 3, shipped_at=T0)
    state = poll_carriers(as_of=clock.now(), return_state=True)
    assert state.is_completed()
    assert state.result() == {"skipped": {"kuaidi100": 3}}
    with engine.connect() as conn:
        assert set(conn.execute(select(orders.c.state)).scalars()) == {"shipped"}  # untouched, polled once configured
