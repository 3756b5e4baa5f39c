"""prefect.yaml: every deployment loads its flow, names follow one spelling per area, renamed flows keep their old
names working until the next release."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.flows import Flow, load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
BY_NAME = {d["name"]: d for d in DEPLOYMENTS}
# Renamed in 0.2 (issue 11): old deployment name -> new deployment name.
RENAMED = {"ingest-orders": "intake-orders", "enter-phone-order": "intake-phone-order",
           "fulfill-orders": "fulfilment-handoff"}


def load(deployment: dict) -> Flow:
    return load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))


def test_deployment_names_are_unique():
    assert len(BY_NAME) == len(DEPLOYMENTS)


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_every_deployment_loads_its_flow(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    flow = load(BY_NAME[name])
    assert isinstance(flow, Flow)


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED.items()))
def test_an_old_deployment_name_runs_the_renamed_flow_under_its_old_address(old, new, monkeypatch):
    monkeypatch.chdir(ROOT)
    old_flow, new_flow = load(BY_NAME[old]), load(BY_NAME[new])
    assert (old_flow.name, new_flow.name) == (old, new)  # FLOW/DEPLOYMENT stays old/old and new/new
    # The same function, not a copy that could drift (each entrypoint load executes its file anew, so compare
    # where the code is defined rather than object identity).
    old_code, new_code = old_flow.fn.__code__, new_flow.fn.__code__
    assert (old_code.co_filename, old_code.co_firstlineno) == (new_code.co_filename, new_code.co_firstlineno)
    assert Path(new_code.co_filename).name != "renamed.py"
    assert "schedules" not in BY_NAME[old]  # on demand only: the schedule runs the new one, never both


def test_no_deployment_or_flow_name_spells_an_area_another_way(monkeypatch):
    monkeypatch.chdir(ROOT)
    current = [d for d in DEPLOYMENTS if d["name"] not in RENAMED]
    names = [d["name"] for d in current] + [load(d).name for d in current]
    for wrong in ("ingest", "fulfil-", "fulfill", "settle-", "track-"):
        assert not [n for n in names if wrong in n], wrong


def test_auto_review_follows_intake_by_its_new_and_its_old_name():
    trigger = BY_NAME["auto-review"]["triggers"][0]
    assert trigger["match_related"]["prefect.resource.name"] == ["intake-orders", "ingest-orders"]
