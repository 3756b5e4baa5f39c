"""Prefect: our offline settings, and a real flow run on the session's Prefect test server."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import func, select

from demo.flows import write_reference_files
from flows.reference import load_reference_data
from yidi.db import get_engine, init_db
from yidi.schema import catalog_items, customers


def test_offline_settings_hold_without_any_export():
    """A fresh interpreter that only imports yidi sees analytics off and batch recording on."""
    code = (
        "import os; [os.environ.pop(k, None) for k in list(os.environ) if k.startswith('PREFECT_') or k=='DO_NOT_TRACK'];"
        "import yidi; from prefect.settings import get_current_settings as g; s=g();"
        "print(s.server.analytics_enabled, s.server.ui.show_promotional_content,"
        " s.server.services.task_run_recorder.batch_size, os.environ['DO_NOT_TRACK'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.split() == ["False", "False", "200", "1"]


@pytest.mark.prefect
def test_reference_flow_runs_on_a_real_server(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client

    init_db()
    catalog_path, customers_path = write_reference_files(tmp_path)
    state = load_reference_data(str(catalog_path), str(customers_path), return_state=True)
    assert state.is_completed()
    assert state.result() == {"catalog": 16, "customers": 400}
    with get_engine().connect() as conn:
        assert conn.execute(select(func.count()).select_from(catalog_items)).scalar() == 16
        assert conn.execute(select(func.count()).select_from(customers)).scalar() == 400
        provinces = conn.execute(select(func.count(customers.c.province.distinct()))).scalar()
    assert provinces >= 31  # every province of the mainland
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.state.is_completed()
