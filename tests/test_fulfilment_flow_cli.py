"""The fulfilment-handoff and stocktake flows on the session's Prefect server against the stand-ins, the same step
list without Prefect (``yidi fulfilment run --no-prefect``), and the CLI: ``yidi load stock``, ``yidi fulfilment
stocktake`` (bad rows refused with reasons), ``yidi fulfilment stock``; the old names still answer."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fulfilment_data import NOW, add_orders, add_stock, seed_reference
from prefect_support import artifacts_of
from sqlalchemy import select
from typer.testing import CliRunner

from demo.standins import carrier_shipping, supplier
from yidi.bulk import read_frame
from yidi.db import get_engine, init_db
from yidi.schema import orders, shipments
from yidi.schema_fulfilment import stock_batches, stock_movements


@pytest.mark.prefect
def test_fulfilment_handoff_flow_runs_against_the_standins(prefect_server, tmp_path):

    from flows.fulfilment import fulfilment_handoff, stocktake

    init_db()
    engine = get_engine()
    with engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 10)])
        # five addresses, so five parcels (one customer's orders to one address merge: tests/test_parcels.py)
        add_orders(conn, [{"lines": [("A-STOCK", 1)], "city": city} for city in ("成都市", "绵阳市", "德阳市", "乐山市", "宜宾市")]
                   + [{"lines": [("A-STOCK", 1)], "province": "台湾"}])  # fmt: skip
    with carrier_shipping.start() as carrier, supplier.start() as sup:
        carrier.fail_next("lost")
        state = fulfilment_handoff(carrier_api_url=carrier.url, supplier_api_url=sup.url, as_of=NOW, return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert summary["allocation"]["allocated"] == 5 and summary["allocation"]["exceptions"] == 1
    assert summary["waybills"]["created"] == 5 and summary["waybills"]["replayed"] == 1
    assert (summary["parcels"]["parcels"], summary["parcels"]["orders"]) == (0, 0)
    with engine.connect() as conn:
        assert read_frame(conn, select(orders.c.state))["state"].value_counts().to_dict() == {"shipped": 5, "approved": 1}
        assert len(read_frame(conn, select(shipments))) == 5
    count = tmp_path / "count.csv"
    count.write_text("warehouse,item_code,counted_qty\nCQ-XY,A-STOCK,4\nCQ-XY,GHOST,1\n", encoding="utf-8")
    st = stocktake(str(count), return_state=True)
    assert st.is_completed() and st.result()["rejected"] == 1
    artifacts = artifacts_of(state, st)
    assert {"fulfilment-summary", "fulfilment-shipments", "fulfilment-exceptions", "stocktake-summary"} <= set(artifacts)
    shipped_table = str(artifacts["fulfilment-shipments"].data)
    assert "138****8000" in shipped_table and "13812348000" not in shipped_table  # personal data masked


def test_cli_loads_stock_once_and_imports_a_stocktake(tmp_path):
    from app.cli.main import cli

    init_db()
    with get_engine().begin() as conn:
        seed_reference(conn)
    runner = CliRunner()
    receipts = tmp_path / "入库单.csv"
    receipts.write_text("仓库,商品编码,数量,批次号,有效期至\nCQ-XY,B-STOCK,20,HG2611,2027-05-31\nCQ-LJ,A-STOCK,3,,\n",
                        encoding="gbk")  # fmt: skip
    first = runner.invoke(cli, ["load", "stock", str(receipts)])
    assert first.exit_code == 0, first.output
    assert "2 receipt row(s), 23 units" in first.output
    again = runner.invoke(cli, ["load", "stock", str(receipts)])
    assert again.exit_code == 1 and "loaded already" in again.output
    bad = tmp_path / "bad.csv"
    bad.write_text("warehouse,item_code,quantity\nCQ-XY,NOPE,1\nCQ-XY,A-STOCK,-1\n", encoding="utf-8")
    refused = runner.invoke(cli, ["load", "stock", str(bad)])
    assert refused.exit_code == 1 and "quantity must be a positive number in row(s) 3" in refused.output
    with get_engine().connect() as conn:
        assert len(read_frame(conn, select(stock_movements))) == 2  # the refused file changed nothing
        batch = read_frame(conn, select(stock_batches)).iloc[0]
        assert batch["batch_no"] == "HG2611" and str(batch["expiry_date"]) == "2027-05-31"
    count = tmp_path / "盘点.csv"
    count.write_text("仓库,商品编码,批次号,实盘数量,损坏数量\nCQ-XY,B-STOCK,HG2611,18,2\nCQ-LJ,A-STOCK,,-1,\n"
                     "CQ-LJ,A-STOCK,,3,\n", encoding="gbk")  # fmt: skip
    result = runner.invoke(cli, ["fulfilment", "stocktake", str(count), "--json"])
    assert result.exit_code == 1  # some rows refused
    summary = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert (summary["applied"], summary["rejected"]) == (1, 2)
    assert "conflicting counts" in result.output and "negative count" in result.output
    stock = runner.invoke(cli, ["fulfilment", "stock", "--json"])
    rows = {(r["warehouse"], r["item_code"]): r for r in json.loads(stock.stdout)}
    assert rows[("CQ-XY", "B-STOCK")]["on_hand"] == 18 and rows[("CQ-XY", "B-STOCK")]["damaged"] == 2
    assert rows[("CQ-XY", "B-STOCK")]["available"] == 16


def test_fulfilment_run_without_prefect_runs_the_same_steps_in_process():
    from app.cli.main import cli

    init_db()
    engine = get_engine()
    with engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 10)])
        add_orders(conn, [{"lines": [("A-STOCK", 1)]} for _ in range(3)] + [{"lines": [("A-STOCK", 1)], "province": "台湾"}])
    with carrier_shipping.start() as carrier, supplier.start() as sup:
        carrier.fail_next("lost")
        result = CliRunner().invoke(cli, ["fulfilment", "run", "--no-prefect", "--carrier-url", carrier.url,
                                          "--supplier-url", sup.url, "--as-of", NOW.isoformat(), "--json"])  # fmt: skip
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["allocation"]["allocated"] == 3 and summary["allocation"]["exceptions"] == 1
        # One customer, one address: the three orders ship as one parcel, after the hold (the time to undo it).
        assert (summary["parcels"]["parcels"], summary["parcels"]["orders"]) == (1, 3)
        assert summary["waybills"]["created"] == 0 and carrier.created == {}
        later = CliRunner().invoke(cli, ["fulfilment", "run", "--no-prefect", "--carrier-url", carrier.url,
                                         "--supplier-url", sup.url, "--as-of", (NOW + timedelta(minutes=15)).isoformat()])
        assert later.exit_code == 0, later.output
        text = " ".join(later.output.split())  # the console wraps at 80 columns
        assert "3 waybills created, 0 to retry" in text and "parcels: 0 merged" in text
        assert len(carrier.created) == 1  # one waybill for the parcel (its lost answer recovered with the same key)
    with engine.connect() as conn:
        assert read_frame(conn, select(orders.c.state))["state"].value_counts().to_dict() == {"shipped": 3, "approved": 1}
        assert read_frame(conn, select(shipments.c.waybill_no))["waybill_no"].nunique() == 1


def test_the_old_command_names_still_work_for_one_release(tmp_path):
    from app.cli.main import cli

    init_db()
    with get_engine().begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 5)])
    runner = CliRunner()
    old_group = runner.invoke(cli, ["fulfil", "stock", "--json"])
    assert old_group.exit_code == 0, old_group.output
    assert {(r["warehouse"], r["item_code"]) for r in json.loads(old_group.stdout)} == {("CQ-XY", "A-STOCK")}
    count = tmp_path / "count.csv"
    count.write_text("warehouse,item_code,counted_qty\nCQ-XY,A-STOCK,5\n", encoding="utf-8")
    old_top_level = runner.invoke(cli, ["stocktake", str(count), "--json"])
    assert old_top_level.exit_code == 0, old_top_level.output
    assert json.loads(old_top_level.stdout[: old_top_level.stdout.rindex("}") + 1])["unchanged"] == 1
    listed = runner.invoke(cli, ["--help"]).output
    assert "fulfilment" in listed and "fulfil " not in listed and "stocktake" not in listed
