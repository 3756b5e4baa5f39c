"""prefect.yaml: every deployment loads its flow, names follow one spelling per area, renamed flows keep their old
names working until the next release."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from prefect.flows import Flow, is_entrypoint_async, load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema_from_entrypoint

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
BY_NAME = {d["name"]: d for d in DEPLOYMENTS}
# Renamed in 0.2 (issue 11): old deployment name -> new deployment name.
RENAMED = {"ingest-orders": "intake-orders", "enter-phone-order": "intake-phone-order",
           "fulfill-orders": "fulfilment-handoff"}


def load(deployment: dict) -> Flow:
    entrypoint = deployment["entrypoint"]  # a script path (flows/x.py:f) or a module path (demo.flows:f)
    return load_flow_from_entrypoint(str(ROOT / entrypoint) if ".py:" in entrypoint else entrypoint)


def test_deployment_names_are_unique():
    assert len(BY_NAME) == len(DEPLOYMENTS)


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_every_deployment_loads_its_flow_as_prefect_deploy_does(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    entrypoint = BY_NAME[name]["entrypoint"]
    flow = load(BY_NAME[name])
    assert isinstance(flow, Flow)
    # `prefect deploy` also reads the flow's definition from the source (parameters for the Run form, async or not).
    if ".py:" not in entrypoint:  # a module path: prefect deploy imports it; its source is the module's file
        module, name = entrypoint.split(":")
        entrypoint = f"{module.replace('.', '/')}.py:{name}"
    assert not is_entrypoint_async(entrypoint)
    schema = parameter_schema_from_entrypoint(entrypoint)
    assert set(schema.properties) == set(inspect.signature(flow.fn).parameters)


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED.items()))
def test_an_old_deployment_name_runs_the_renamed_flow_under_its_old_address(old, new, monkeypatch):
    monkeypatch.chdir(ROOT)
    old_flow, new_flow = load(BY_NAME[old]), load(BY_NAME[new])
    assert (old_flow.name, new_flow.name) == (old, new)  # FLOW/DEPLOYMENT stays old/old and new/new
    # The same parameters, and the old flow runs the new flow's own function (not a copy that could drift).
    assert inspect.signature(old_flow.fn) == inspect.signature(new_flow.fn)
    assert f"return {new_flow.fn.__name__}.fn(" in inspect.getsource(old_flow.fn)
    assert "schedules" not in BY_NAME[old]  # on demand only: the schedule runs the new one, never both


def test_no_script_entrypoint_is_named_like_one_of_our_packages():
    """A worker loads ``demo/flows.py:f`` as a module named ``flows`` that searches ``demo/`` for submodules, so its
    ``from flows.aftersales import …`` found ``demo/aftersales.py`` and the lifecycle-demo deployment failed with a
    circular import on every worker (found running it through ``make up DB=postgres``): such a flow is deployed by
    its module path instead."""
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    clashing = [d["entrypoint"] for d in DEPLOYMENTS
                if ".py:" in d["entrypoint"] and Path(d["entrypoint"].split(":")[0]).stem in packages]
    assert clashing == []
    assert BY_NAME["lifecycle-demo"]["entrypoint"] == "demo.flows:lifecycle_demo"


def test_no_deployment_or_flow_name_spells_an_area_another_way(monkeypatch):
    monkeypatch.chdir(ROOT)
    current = [d for d in DEPLOYMENTS if d["name"] not in RENAMED]
    names = [d["name"] for d in current] + [load(d).name for d in current]
    for wrong in ("ingest", "fulfil-", "fulfill", "settle-", "track-"):
        assert not [n for n in names if wrong in n], wrong


def test_auto_review_follows_intake_by_its_new_and_its_old_name():
    trigger = BY_NAME["auto-review"]["triggers"][0]
    assert trigger["match_related"]["prefect.resource.name"] == ["intake-orders", "ingest-orders"]


@pytest.mark.prefect
def test_a_flow_run_under_an_old_name_does_the_new_flows_work(prefect_server, sqlite_engine, tmp_path, monkeypatch):
    from demo.standins.orders_data import demo_neutral_orders
    from demo.standins.spreadsheets import template_frame, write_csv
    from flows.renamed import ingest_orders

    monkeypatch.setenv("YIDI_DATABASE_URL", str(sqlite_engine.url))
    path = write_csv(template_frame(demo_neutral_orders(4)), tmp_path / "drop.csv", "gbk")
    state = ingest_orders(files=[str(path)], return_state=True)
    assert state.is_completed()
    assert state.result()[f"file:{path}"]["new"] == 4
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        assert client.read_flow(run.flow_id).name == "ingest-orders"


@pytest.mark.prefect
def test_make_up_clears_a_schedule_that_prefect_yaml_no_longer_lists(prefect_server):
    """A 0.1 server has ingest-orders/ingest-orders on a 5-minute schedule; after 0.2's deploy it must run only on
    demand, or intake would run twice every 5 minutes (prefect deploy itself never removes a schedule)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule

    from app.local_stack import clear_unlisted_schedules

    with get_client(sync_client=True) as client:
        old = client.create_deployment(
            flow_id=client.create_flow_from_name("ingest-orders"), name="ingest-orders",
            schedules=[DeploymentScheduleCreate(schedule=CronSchedule(cron="*/5 * * * *"))])
        new = client.create_deployment(
            flow_id=client.create_flow_from_name("intake-orders"), name="intake-orders",
            schedules=[DeploymentScheduleCreate(schedule=CronSchedule(cron="*/5 * * * *"))])
        assert clear_unlisted_schedules() == ["ingest-orders/ingest-orders"]
        assert client.read_deployment(old).schedules == []
        assert [s.schedule.cron for s in client.read_deployment(new).schedules] == ["*/5 * * * *"]
        assert clear_unlisted_schedules() == []  # and again: nothing left to clear
