"""Platform (TOP) and website (WooCommerce) channels against their stand-ins over real HTTP, into the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest
from intake_support import (
    TB,
    WC,
    count,
    cursor_of,
    frame,
    neutral,
    set_secrets,
    store,
    taobao_connector,
    woo_connector,
)

from connectors.base import ChannelError, TransientChannelError
from connectors.taobao import TopError, sign_params
from demo.standins.taobao import TaobaoStandin
from demo.standins.woocommerce import WooCommerceStandin
from tasks.intake.landing import run_channel
from yidi.schema import intake_records, orders

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def _secrets(monkeypatch):
    set_secrets(monkeypatch)


N = 150  # platform orders served by the stand-in
W = 80  # website orders


@pytest.fixture
def top():
    with TaobaoStandin(**TB, orders=neutral(N)) as server:
        yield server


@pytest.fixture
def shop():
    with WooCommerceStandin(**WC, orders=neutral(W, seed=5)) as server:
        yield server


# --- signing ------------------------------------------------------------------------------------------------------

SIGN_PARAMS = {
    "method": "taobao.trades.sold.increment.get", "app_key": "12345678", "session": "test",
    "timestamp": "2026-11-27 10:00:00", "format": "json", "v": "2.0", "sign_method": "md5", "fields": "tid,status",
    "start_modified": "2026-11-27 09:00:00", "end_modified": "2026-11-27 09:30:00", "page_no": "1",
    "page_size": "100",
}  # fmt: skip


def test_top_signatures_match_the_published_algorithms():
    assert sign_params(SIGN_PARAMS, "helloworld", "md5") == "83AF77171C6DF8B81FA5BD0E5AD5F027"
    hmac_params = {**SIGN_PARAMS, "sign_method": "hmac"}
    assert sign_params(hmac_params, "helloworld", "hmac") == "4C6E5213B72F9EB5C33D986C4EEB8980"
    # sign itself and byte parameters are not signed; order of insertion does not matter
    shuffled = dict(reversed(list(SIGN_PARAMS.items())))
    shuffled.update(sign="WHATEVER", image=b"\x89PNG")
    assert sign_params(shuffled, "helloworld", "md5") == "83AF77171C6DF8B81FA5BD0E5AD5F027"


# --- platform ------------------------------------------------------------------------------------------------------


def test_taobao_intake_pages_backwards_and_rereading_changes_nothing(sqlite_engine, top):
    summary = run_channel(sqlite_engine, taobao_connector(top.url, page_size=40))
    assert (summary.read, summary.new, summary.quarantined, summary.error) == (N, N, 0, None)
    assert summary.remote + summary.local + summary.unknown == N and summary.local > 0 and summary.unknown > 0
    pages = [int(c["page_no"]) for c in top.calls if c["end_modified"] == top.calls[-1]["end_modified"]]
    assert pages[0] == 1 and pages[1:] == sorted(pages[1:], reverse=True)  # count, then last page back to 1
    before = store(sqlite_engine)
    cursor = json.loads(cursor_of(sqlite_engine, "taobao"))["modified_until"]
    assert datetime.fromisoformat(cursor) > datetime.now(UTC) - timedelta(minutes=1)

    # Re-reading (cursor lost: everything again) lands nothing and changes nothing.
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM channel_cursors")
    again = run_channel(sqlite_engine, taobao_connector(top.url, page_size=40))
    assert (again.read, again.new, again.updated, again.unchanged) == (N, 0, 0, N)
    assert store(sqlite_engine) == before


def test_taobao_duplicates_in_pages_and_between_windows_store_one_order_each(sqlite_engine, top):
    top.faults.add("duplicate", times=-1, match={"page_no": 2})  # page 2 repeats page 3's first trade
    summary = run_channel(sqlite_engine, taobao_connector(top.url, page_size=15, window_minutes=600))
    assert summary.new == N and summary.read > N
    # The next run re-reads the overlap before the cursor: same records, nothing new.
    top.modify(sorted(top.trades)[0], modified=datetime.now(UTC) - timedelta(seconds=30))
    again = run_channel(sqlite_engine, taobao_connector(top.url, page_size=50, overlap_minutes=120))
    assert (again.read, again.new, again.updated, again.unchanged) == (1, 0, 0, 1)  # modified time only
    assert count(sqlite_engine, orders) == N
    keys = frame(sqlite_engine, "SELECT channel_order_id, count(*) n FROM orders GROUP BY 1 HAVING count(*) > 1")
    assert keys.empty


def test_taobao_page_failing_mid_way_then_throttled_is_retried_and_nothing_is_lost(sqlite_engine, top):
    top.faults.add("http500", match={"page_no": 2})
    top.faults.add("malformed", match={"page_no": 3})
    top.faults.add("throttle", times=2)
    top.ban_seconds = 0
    top.faults.add("reset", match={"page_no": 4})
    top.faults.add("timeout", match={"page_no": 1}, delay=1.5)  # the client gives up after 1 s and asks again
    summary = run_channel(sqlite_engine, taobao_connector(top.url, page_size=25, timeout_seconds=1))
    assert summary.new == N and summary.error is None
    assert sorted(kind for kind, _ in top.faults.log) == ["http500", "malformed", "reset", "throttle", "throttle",
                                                          "timeout"]
    assert count(sqlite_engine, orders) == N


def test_taobao_page_failing_for_good_keeps_the_cursor_and_a_rerun_completes(sqlite_engine, top):
    top.faults.add("http500", times=-1, match={"page_no": 2})
    with pytest.raises(TransientChannelError, match="HTTP 500"):
        run_channel(sqlite_engine, taobao_connector(top.url, page_size=25, attempts=2, batch_records=1))
    stored = count(sqlite_engine, orders)
    assert 0 < stored < N  # pages after page 2 (read first) are committed ...
    cursor = cursor_of(sqlite_engine, "taobao")  # ... but the window's cursor did not advance past the gap
    top.faults.clear()
    summary = run_channel(sqlite_engine, taobao_connector(top.url, page_size=25))
    assert count(sqlite_engine, orders) == N and summary.new == N - stored
    assert cursor_of(sqlite_engine, "taobao") != cursor


def test_taobao_changed_order_updates_records_the_change_and_sends_it_back_to_review(sqlite_engine, top):
    run_channel(sqlite_engine, taobao_connector(top.url))
    tids = sorted(top.trades)
    changed, closed, note_only = tids[0], tids[1], tids[2]
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql("UPDATE orders SET state = 'approved' WHERE channel_order_id IN (?, ?)",
                             (str(changed), str(note_only)))
    city_before = frame(sqlite_engine, "SELECT ship_city FROM orders WHERE channel_order_id = :t",
                        t=str(changed))["ship_city"][0]
    top.modify(changed, receiver_state="四川省", receiver_city="绵阳市", receiver_district="涪城区",
               receiver_address="临园路东段1号")
    top.modify(closed, status="TRADE_CLOSED")
    top.modify(note_only, buyer_message="请周六送货", modified=datetime.now(UTC) - timedelta(minutes=3))  # late
    summary = run_channel(sqlite_engine, taobao_connector(top.url))
    assert (summary.updated, summary.cancelled, summary.rereview, summary.new) == (3, 1, 1, 0)
    rows = frame(sqlite_engine, "SELECT channel_order_id, state, ship_city, region, version FROM orders "
                                "WHERE channel_order_id IN (:a, :b, :c)", a=str(changed), b=str(closed),
                 c=str(note_only)).set_index("channel_order_id")
    assert rows.loc[str(changed), "state"] == "pending_review" and rows.loc[str(changed), "ship_city"] == "绵阳市"
    assert rows.loc[str(closed), "state"] == "cancelled"
    assert rows.loc[str(note_only), "state"] == "approved"  # a note alone does not need another review
    events = frame(sqlite_engine, "SELECT e.kind, e.reason, e.details, e.to_state FROM order_events e JOIN orders o "
                                  "ON o.id = e.order_id WHERE o.channel_order_id = :t ORDER BY e.id", t=str(changed))
    change = events[events["kind"] == "change"].iloc[0]
    details = json.loads(change["details"])
    assert details["ship_city"] == [city_before, "绵阳市"] and "ship_city" in change["reason"]
    assert events["to_state"].dropna().tolist() == ["received", "pending_review"]

    # An older version arriving late never overwrites the newer one.
    top.modify(changed, receiver_city="成都市", modified=datetime.now(UTC) - timedelta(hours=2))
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM channel_cursors")
    run_channel(sqlite_engine, taobao_connector(top.url))
    assert frame(sqlite_engine, "SELECT ship_city FROM orders WHERE channel_order_id = :t",
                 t=str(changed))["ship_city"][0] == "绵阳市"


def test_a_shipped_order_changed_at_the_source_in_its_status_keeps_its_lines_and_their_allocations(sqlite_engine, top):
    """Seen under `make sandbox`: confirming the shipment on TOP changes the trade's status (and modified time), the
    next intake updates the order, and replacing its lines failed on the allocations that point at them (FOREIGN KEY
    constraint failed): every intake run of the channel Failed from then on. A change that leaves the lines as they
    were keeps them; the order's version still goes up and the change is recorded."""
    run_channel(sqlite_engine, taobao_connector(top.url))
    tid = sorted(top.trades)[0]
    with sqlite_engine.begin() as conn:
        oid, line_id = conn.exec_driver_sql(
            "SELECT o.id, l.id FROM orders o JOIN order_lines l ON l.order_id = o.id WHERE o.channel_order_id = ? "
            "ORDER BY l.line_no LIMIT 1", (str(tid),)).one()  # fmt: skip
        conn.exec_driver_sql("UPDATE orders SET state = 'shipped' WHERE id = ?", (oid,))
        conn.exec_driver_sql("INSERT INTO allocations (order_id, order_line_id, item_code, warehouse, quantity, status) "
                             "VALUES (?, ?, 'SKU-X', 'CQ-XY', 1, 'shipped')", (oid, line_id))  # fmt: skip
    lines_before = frame(sqlite_engine, "SELECT id, item_code, quantity FROM order_lines WHERE order_id = :o ORDER BY id",
                         o=oid)  # fmt: skip
    top.modify(tid, status="WAIT_BUYER_CONFIRM_GOODS")  # what taobao.logistics.offline.send leaves behind
    summary = run_channel(sqlite_engine, taobao_connector(top.url))
    assert (summary.updated, summary.new) == (1, 0)
    after = frame(sqlite_engine, "SELECT id, item_code, quantity FROM order_lines WHERE order_id = :o ORDER BY id", o=oid)
    assert after.equals(lines_before)  # the same rows, ids and all: the allocation still points at its line
    assert frame(sqlite_engine, "SELECT state, version FROM orders WHERE id = :o", o=oid).iloc[0].tolist() == [
        "shipped", 2]


def test_taobao_wrong_signature_or_session_is_a_clear_error_and_stores_nothing(sqlite_engine, top, monkeypatch):
    monkeypatch.setenv("T_TB_SECRET", "not-the-secret")
    with pytest.raises(TopError, match="25 Invalid Signature.*app secret"):
        run_channel(sqlite_engine, taobao_connector(top.url))
    monkeypatch.setenv("T_TB_SECRET", TB["app_secret"])
    monkeypatch.setenv("T_TB_SESSION", "expired")
    with pytest.raises(TopError, match="27 Invalid session.*re-authorise"):
        run_channel(sqlite_engine, taobao_connector(top.url, sign_method="hmac"))
    monkeypatch.delenv("T_TB_KEY")
    with pytest.raises(ChannelError, match="T_TB_KEY"):
        run_channel(sqlite_engine, taobao_connector(top.url))
    assert store(sqlite_engine) == dict.fromkeys(store(sqlite_engine), 0)
    assert cursor_of(sqlite_engine, "taobao") is None


def test_taobao_persistent_malformed_json_fails_as_transient(sqlite_engine, top):
    top.faults.add("malformed", times=-1)
    with pytest.raises(TransientChannelError, match="malformed JSON"):
        run_channel(sqlite_engine, taobao_connector(top.url, attempts=2))
    assert count(sqlite_engine, intake_records) == 0


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    os.environ.update({env!r})
    from intake_support import taobao_connector
    from tasks.intake.landing import run_channel
    from yidi.db import make_engine
    run_channel(make_engine({db!r}), taobao_connector({url!r}, page_size=20, timeout_seconds=30,
                                                     batch_records=1))
""")


def test_process_killed_mid_run_then_restarted_loses_nothing_and_duplicates_nothing(sqlite_engine, top, tmp_path):
    db_url = str(sqlite_engine.url)
    top.faults.add("timeout", match={"page_no": 3}, delay=20)  # the child blocks here, mid-window
    env = {k: os.environ[k] for k in os.environ if k.startswith(("T_TB", "YIDI_HOME"))}
    script = KILL_SCRIPT.format(tests=os.path.dirname(__file__), env=env, db=db_url, url=top.url)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        deadline = time.monotonic() + 60
        while not any(kind == "timeout" for kind, _ in top.faults.log):
            assert child.poll() is None, "the child ended before reaching the blocked page"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        partial = count(sqlite_engine, orders)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert partial > 0  # pages after page 3 (read first) were committed before the kill
    summary = run_channel(sqlite_engine, taobao_connector(top.url, page_size=20))
    assert count(sqlite_engine, orders) == N
    assert summary.new == N - partial
    dupes = frame(sqlite_engine, "SELECT content_hash FROM intake_records GROUP BY channel, content_hash "
                                 "HAVING count(*) > 1")
    assert dupes.empty and count(sqlite_engine, intake_records) == N


# --- website --------------------------------------------------------------------------------------------------------


def test_woocommerce_pages_with_link_headers_and_maps_the_published_fields(engine, shop):
    summary = run_channel(engine, woo_connector(shop.url, per_page=25))
    assert (summary.read, summary.new, summary.quarantined) == (W, W, 0)
    first = shop.orders[min(shop.orders)]
    row = frame(engine, "SELECT * FROM orders WHERE channel = 'website' AND channel_order_id = :i",
                i=str(first["id"])).iloc[0]
    assert row["customer_phone"] == first["billing"]["phone"]
    assert row["order_total_fen"] == round(float(first["total"]) * 100)
    assert row["source_status"] == "processing" and row["state"] == "received"
    assert count(engine, orders) == W


def test_woocommerce_refund_and_cancellation_are_changes(sqlite_engine, shop):
    run_channel(sqlite_engine, woo_connector(shop.url))
    ids = sorted(shop.orders)
    shop.refund(ids[0], 1000, reason="少发一件")
    shop.modify(ids[1], status="cancelled")
    summary = run_channel(sqlite_engine, woo_connector(shop.url))
    assert (summary.updated, summary.cancelled) == (2, 1)
    states = frame(sqlite_engine, "SELECT channel_order_id, state FROM orders WHERE channel_order_id IN (:a, :b)",
                   a=str(ids[0]), b=str(ids[1])).set_index("channel_order_id")["state"]
    assert states[str(ids[1])] == "cancelled" and states[str(ids[0])] == "received"
    details = frame(sqlite_engine, "SELECT e.details FROM order_events e JOIN orders o ON o.id = e.order_id "
                                   "WHERE o.channel_order_id = :a AND e.kind = 'change'", a=str(ids[0]))["details"][0]
    assert json.loads(details)["source_extra"]["refunded_fen"] == 1000


def test_woocommerce_query_auth_throttling_and_5xx_are_retried(sqlite_engine, shop):
    shop.faults.add("throttle", match={"page": 2})
    shop.faults.add("http503", match={"page": 3})
    summary = run_channel(sqlite_engine, woo_connector(shop.url, per_page=20, auth="query"))
    assert summary.new == W
    assert [kind for kind, _ in shop.faults.log] == ["throttle", "http503"]


def test_woocommerce_wrong_credentials_is_a_clear_error_and_stores_nothing(sqlite_engine, shop, monkeypatch):
    monkeypatch.setenv("T_WC_SECRET", "cs_wrong")
    with pytest.raises(ChannelError, match="refused the credentials .*HTTP 401"):
        run_channel(sqlite_engine, woo_connector(shop.url))
    assert store(sqlite_engine) == dict.fromkeys(store(sqlite_engine), 0)


def test_sql_looking_and_very_long_strings_in_every_text_field(engine, shop):
    """Stored verbatim when they fit, quarantined with the field named when longer than the store keeps."""
    sql = "Robert'); DROP TABLE orders;--"
    base = shop.orders[min(shop.orders)]
    hostile = json.loads(json.dumps(base))
    hostile["id"] = 99001
    for part in ("billing", "shipping"):
        for key in ("first_name", "last_name", "company", "address_1", "address_2", "city", "postcode"):
            hostile[part][key] = sql[:12] if key == "postcode" else sql
    hostile["billing"]["phone"] = hostile["shipping"]["phone"] = "1' OR '1'='1"
    hostile["billing"]["email"] = "x'--@example.com"
    hostile["customer_note"] = sql * 400  # 12,000 characters: the note column is unlimited text
    hostile["payment_method"] = sql
    for item in hostile["line_items"]:
        item["name"], item["sku"] = sql, "SKU';--"
    too_long = json.loads(json.dumps(base))
    too_long["id"] = 99002
    too_long["shipping"]["first_name"] = "长" * 5000
    shop.add_order(hostile)
    shop.add_order(too_long)
    summary = run_channel(engine, woo_connector(shop.url))
    assert summary.new == W + 1 and summary.quarantined == 1
    row = frame(engine, "SELECT * FROM orders WHERE channel_order_id = '99001'").iloc[0]
    assert row["customer_name"] == f"{sql} {sql}"  # first and last name, stored verbatim
    assert row["buyer_note"] == sql * 400 and row["payment_method"] == sql
    assert frame(engine, "SELECT item_code FROM order_lines WHERE order_id = :i", i=int(row["id"]))[
        "item_code"].eq("SKU';--").all()
    reason = frame(engine, "SELECT reason FROM intake_records WHERE status = 'quarantined'")["reason"][0]
    assert "customer name is 5,000 characters" in reason and "at most 200" in reason
    assert count(engine, orders) == W + 1  # the table is still there
