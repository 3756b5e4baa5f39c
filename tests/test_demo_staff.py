"""Issue 20: the demo lists its staff (demo data) and runs its guarded steps as them, through the real checks; the
bootstrap (anyone accepted while nobody is listed) is for a first install only."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from demo.data import DEMO_STAFF
from demo.flows import point_notifications_at
from demo.summary import yidi_command
from yidi.settings import get_settings
from yidi.staff import NotPermitted, act_as

pytestmark = pytest.mark.prefect


@pytest.fixture
def demo_policy(tmp_path, monkeypatch):
    monkeypatch.setenv("YIDI_HOME", str(tmp_path))
    monkeypatch.delenv("YIDI_CONFIG", raising=False)
    point_notifications_at(tmp_path, 2525, "http://127.0.0.1:9/sms/send")  # sets YIDI_CONFIG (the demo's way)
    yield tmp_path
    get_settings.cache_clear()


def test_the_demo_policy_lists_its_staff_and_the_bootstrap_is_over(demo_policy):
    staff = get_settings().staff
    assert [(p.name, p.login, p.roles) for p in staff.people] == [
        ("演示审核员", "demo-reviewer", ["reviewer"]), ("演示仓管员", "demo-operations", ["operations"]),
        ("演示财务", "demo-finance", ["finance"]), ("演示经理", "demo-manager", ["manager"]),
        ("演示审计员", "demo-auditor", ["auditor"])]  # fmt: skip
    assert len(DEMO_STAFF) == 5
    with pytest.raises(NotPermitted, match="'root' is not listed staff"):
        act_as(staff, "review", "root")
    assert act_as(staff, "review", "demo-reviewer").text == "reviewer:演示审核员"
    with pytest.raises(NotPermitted, match="lacks the manager or auditor role"):
        act_as(staff, "stocktake_verify", "demo-operations")
    # the commands the demo prints run with its policy, so --as works on the demo store afterwards
    assert f"YIDI_CONFIG={demo_policy / 'yidi.toml'}" in yidi_command(demo_policy)


def test_the_demo_stocktake_is_imported_and_verified_by_two_listed_people(prefect_server, engine, demo_policy,
                                                                         monkeypatch):  # fmt: skip
    from demo.flows import write_reference_files
    from demo.fulfilment import demo_stocktake, write_demo_fulfilment_files
    from tasks.fulfilment.receipts import load_stock_file
    from tasks.fulfilment.stock import sync_warehouses
    from yidi.reference import load_reference_file
    from yidi.schema_fulfilment import stock_movements, stocktakes

    monkeypatch.setenv("YIDI_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    catalog, _customers = write_reference_files(demo_policy)
    stock, _prices, count = write_demo_fulfilment_files(demo_policy / "inbox")
    with engine.begin() as conn:
        load_reference_file(conn, "catalog", catalog)
        sync_warehouses(conn, get_settings().fulfilment)
        load_stock_file(conn, stock, actor="demo")
    summary = demo_stocktake(count)
    assert summary["verified"]["verified_by"] == "auditor:演示审计员"
    with engine.connect() as conn:
        row = conn.execute(select(stocktakes.c.actor, stocktakes.c.verified_by)).one()
        adjusted = set(conn.execute(select(stock_movements.c.actor).where(stock_movements.c.kind == "adjustment"))
                       .scalars())  # fmt: skip
    assert tuple(row) == ("operations:演示仓管员", "auditor:演示审计员")
    assert adjusted == {"operations:演示仓管员"}
