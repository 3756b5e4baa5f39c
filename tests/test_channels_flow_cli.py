"""The channels flows and commands (issue 18): `confirm-shipments` as a Prefect flow with its artifacts, and
`yidi channels confirm|sync --no-prefect` running the same steps in process."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from prefect_support import artifacts_of, run_log_text
from typer.testing import CliRunner

from demo.standins.taobao import TaobaoStandin
from demo.standins.woocommerce import WooCommerceStandin
from tests.channels_data import add_channel_order, add_parcel, top_trade
from yidi.bulk import insert_rows
from yidi.db import get_engine, init_db
from yidi.schema_channels import channel_listings

TID = 3_900_000_000_000_000_901


@pytest.fixture
def secrets(monkeypatch):
    for name, value in {"YIDI_TAOBAO_APP_KEY": "k", "YIDI_TAOBAO_APP_SECRET": "s", "YIDI_TAOBAO_SESSION": "x",
                        "YIDI_WC_CONSUMER_KEY": "ck", "YIDI_WC_CONSUMER_SECRET": "cs"}.items():
        monkeypatch.setenv(name, value)


def _seed(engine):
    with engine.begin() as conn:
        taobao = add_channel_order(conn, "taobao", str(TID), [("A-STOCK", 1)], raw=top_trade(TID, [TID * 10 + 1]))
        add_parcel(conn, taobao, [1], waybill_no="ZT5001")
        website = add_channel_order(conn, "website", "5001", [("A-STOCK", 1)])
        add_parcel(conn, website, [1], carrier="shunfeng", waybill_no="SF5001")
        add_channel_order(conn, "taobao", "42", [("A-STOCK", 1)], state="approved",
                          paid_at=pd.Timestamp("2026-01-05T00:00:00Z").to_pydatetime())  # long overdue


def test_confirm_shipments_flow_tells_both_channels_and_publishes_artifacts(prefect_server, secrets):
    from flows.channels import confirm_shipments

    init_db()
    _seed(get_engine())
    with TaobaoStandin(app_key="k", app_secret="s", session="x") as top, \
            WooCommerceStandin(consumer_key="ck", consumer_secret="cs") as woo:
        top.add_trade(top_trade(TID, [TID * 10 + 1]))
        woo.add_order({"id": 5001, "status": "processing"})
        state = confirm_shipments(top_url=top.url, woo_url=woo.url, return_state=True)
        assert state.is_completed()
        summary = state.result()
        assert (summary["planned"], summary["confirmed"], summary["pending"]) == (2, 2, 0)
        assert summary["deadlines"]["missed"] == 1
        assert len(top.confirmations) == 1 and woo.orders[5001]["status"] == "completed"
    artifacts = artifacts_of(state)
    assert {"channel-confirmations", "shipping-deadlines"} <= set(artifacts)
    assert "| 2 | 2 | 0 | 0 | 0 | 0 | 0 |" in str(artifacts["channel-confirmations"].data)


def test_cli_confirm_and_sync_without_prefect(secrets):
    from app.cli.main import cli

    init_db()
    engine = get_engine()
    _seed(engine)
    from tests.fulfilment_data import add_stock, seed_reference

    with engine.begin() as conn:
        seed_reference(conn)
        add_stock(conn, [("CQ-XY", "A-STOCK", 7)])
        insert_rows(conn, channel_listings, pd.DataFrame([{"channel": "taobao", "item_code": "A-STOCK",
                                                           "listing_id": "101"}]))
    with TaobaoStandin(app_key="k", app_secret="s", session="x") as top:
        top.add_trade(top_trade(TID, [TID * 10 + 1]))
        top.add_listing(101)
        runner = CliRunner()
        confirmed = runner.invoke(cli, ["channels", "confirm", "--no-prefect", "--channel", "taobao",
                                        "--top-url", top.url])
        assert confirmed.exit_code == 0, confirmed.output
        assert "1 confirmed" in confirmed.output and "1 missed" in confirmed.output
        assert "(Asia/Shanghai)" in confirmed.output
        assert all(len(line) <= 80 for line in confirmed.output.splitlines())
        synced = runner.invoke(cli, ["channels", "sync", "--no-prefect", "--channel", "taobao", "--top-url", top.url,
                                     "--json"])
        assert synced.exit_code == 0, synced.output
        assert json.loads(synced.output)["pushed"] == 1 and top.items[101]["num"] == 7


def test_a_fresh_stack_without_channel_credentials_is_completed_and_says_what_it_skipped(prefect_server, monkeypatch):
    """Issue 15: on a fresh `make up` no shop credentials are set; the scheduled runs must not be red."""
    from flows.channels import confirm_shipments, sync_channel_stock

    for name in ("YIDI_TAOBAO_APP_KEY", "YIDI_TAOBAO_APP_SECRET", "YIDI_TAOBAO_SESSION", "YIDI_WC_CONSUMER_KEY",
                 "YIDI_WC_CONSUMER_SECRET"):
        monkeypatch.delenv(name, raising=False)
    init_db()
    _seed(get_engine())  # one taobao and one website parcel with a waybill
    state = confirm_shipments(return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert summary["skipped"] == {"taobao": 1, "website": 1}
    assert (summary["planned"], summary["confirmed"], summary["failed"], summary["pending"]) == (2, 0, 0, 2)
    out = run_log_text(state, "taobao: not configured, skipped (1 left pending)")
    assert "taobao: not configured, skipped (1 left pending)" in out
    assert "website: not configured, skipped (1 left pending)" in out
    stock = sync_channel_stock(return_state=True)
    assert stock.is_completed()
    assert stock.result()["skipped"] == ["taobao", "website"] and stock.result()["pushed"] == 0
    assert "taobao: not configured, skipped\n" in run_log_text(stock, "taobao: not configured, skipped") + "\n"


def test_cli_confirm_names_the_channels_it_skipped_with_their_counts(monkeypatch):
    """Without shop credentials the command says which channels it skipped and how many wait for each."""
    from app.cli.main import cli

    for name in ("YIDI_TAOBAO_APP_KEY", "YIDI_TAOBAO_APP_SECRET", "YIDI_TAOBAO_SESSION", "YIDI_WC_CONSUMER_KEY",
                 "YIDI_WC_CONSUMER_SECRET"):
        monkeypatch.delenv(name, raising=False)
    init_db()
    _seed(get_engine())  # one taobao and one website parcel with a waybill
    runner = CliRunner()
    confirmed = runner.invoke(cli, ["channels", "confirm", "--no-prefect"])
    assert confirmed.exit_code == 0, confirmed.output
    assert "skipped: 2 channel(s) not configured" in confirmed.output
    assert "  taobao: not configured, skipped (1 left pending)" in confirmed.output
    assert "  website: not configured, skipped (1 left pending)" in confirmed.output
    synced = runner.invoke(cli, ["channels", "sync", "--no-prefect"])
    assert synced.exit_code == 0, synced.output
    assert "skipped: 2 channel(s) not configured" in synced.output
    assert all(len(line) <= 80 for line in (confirmed.output + synced.output).splitlines())


def test_cli_listings_loads_a_sheet_once_and_lists_what_it_refused(tmp_path):
    from app.cli.main import cli
    from tests.fulfilment_data import seed_reference

    init_db()
    engine = get_engine()
    with engine.begin() as conn:
        seed_reference(conn)
    sheet = tmp_path / "listings.csv"
    sheet.write_text("channel,item_code,listing_id,sku_id\n"
                     "taobao,A-STOCK,101,5001\n"
                     "website,A-STOCK,77,\n"
                     "taobao,B-STOCK,102,\n"
                     "jd,A-STOCK,9,\n"            # no stock sync for jd
                     "taobao,Z-UNKNOWN,103,\n"    # not in the catalog
                     "taobao,A-STOCK,104,\n"      # the same listing twice
                     "website,B-STOCK,,\n",       # no listing id
                     encoding="utf-8")
    runner = CliRunner()
    first = runner.invoke(cli, ["channels", "listings", str(sheet)])
    assert first.exit_code == 1, first.output  # refused rows: a person looks
    assert "listings: 7 rows, 3 loaded or changed, 0 unchanged, 4 refused" in first.output
    assert "  row 4: channel jd has no stock sync (known: taobao, website)" in first.output
    assert "  row 5: item Z-UNKNOWN is not in the catalog" in first.output
    assert "  row 6: a second row for the same channel and item" in first.output
    assert "  row 7: missing listing_id" in first.output
    assert all(len(line) <= 80 for line in first.output.splitlines())
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT channel, item_code, listing_id, sku_id FROM channel_listings "
                                    "ORDER BY channel, item_code").all()
    assert [tuple(r) for r in rows] == [("taobao", "A-STOCK", "101", "5001"), ("taobao", "B-STOCK", "102", None),
                                        ("website", "A-STOCK", "77", None)]
    sheet.write_text("channel,item_code,listing_id,sku_id\ntaobao,A-STOCK,101,5001\ntaobao,B-STOCK,202,\n",
                     encoding="utf-8")
    again = runner.invoke(cli, ["channels", "listings", str(sheet), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == {"rows": 2, "loaded": 1, "unchanged": 1, "refused": []}
