"""The order store on both databases: bulk writes, upserts, money and time round-trips, migrations."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from yidi.bulk import (
    CONSTANT_CHECK_ROWS,
    SQLITE_ROWS_PER_STATEMENT,
    ids_for_keys,
    insert_rows,
    json_text,
    read_frame,
    upsert_returning_ids,
)
from yidi.db import current_heads, init_db
from yidi.json_columns import json_object_texts
from yidi.outbox import enqueue
from yidi.schema import catalog_items, notification_outbox, orders, shipments


def order_frame(n: int, start: int = 0) -> pd.DataFrame:
    ids = range(start, start + n)
    return pd.DataFrame(
        {
            "order_no": [f"YD{i:08d}" for i in ids],
            "channel": "website",
            "channel_order_id": [str(i) for i in ids],
            "customer_name": ["王伟'); DROP TABLE orders;--" if i % 2 else "李娜" for i in ids],
            "order_total_fen": [1999_99 + i for i in ids],
            "order_time": [datetime(2026, 11, 2, 9, 30, tzinfo=timezone(timedelta(hours=8))) for _ in ids],
            "promised_date": [date(2026, 11, 10)] * n,
        }
    )


def test_bulk_insert_round_trips_money_times_and_hostile_text(engine):
    with engine.begin() as conn:
        assert insert_rows(conn, orders, order_frame(2500)) == 2500
    with engine.connect() as conn:
        stored = read_frame(conn, select(orders).order_by(orders.c.id))
    assert len(stored) == 2500
    assert stored["order_total_fen"].iloc[3] == 1999_99 + 3  # exact integer fen
    first_time = stored["order_time"].iloc[0]
    assert first_time == datetime(2026, 11, 2, 1, 30, tzinfo=UTC) and first_time.tzinfo is not None
    assert stored["promised_date"].iloc[0] == date(2026, 11, 10)
    assert stored["customer_name"].iloc[1] == "王伟'); DROP TABLE orders;--"
    assert (stored["state"] == "received").all()  # server default


def test_columns_with_one_value_for_the_batch_round_trip_like_bound_ones(engine):
    """SQLite writes such columns of a large batch once, as literals: quotes, unicode, times, numbers and flags must
    come back exactly as when every row binds them."""
    when = datetime(2026, 11, 27, 9, 30, 15, 123456, tzinfo=UTC)
    hostile = "O'Brien'); DROP TABLE orders;-- 重庆 ' '' \\ %"
    n = CONSTANT_CHECK_ROWS
    constant = order_frame(n).assign(customer_name=hostile, order_time=when, order_total_fen=2**62,
                                     goods_total_fen=-7, source_status="a\nb", region="remote")
    varying = order_frame(3, start=n + 10).assign(
        customer_name=[hostile, "x", "y"], order_time=[when] * 2 + [None], order_total_fen=[2**62, 1, 2],
        goods_total_fen=[-7, 0, 0], source_status=["a\nb", "", "c"], region=["remote", "unknown", "local"])
    with engine.begin() as conn:
        insert_rows(conn, orders, constant)
        insert_rows(conn, orders, varying)
    with engine.connect() as conn:
        stored = read_frame(conn, select(orders).order_by(orders.c.id))
    for column in ("customer_name", "order_total_fen", "goods_total_fen", "source_status", "region"):
        assert stored[column].iloc[0] == stored[column].iloc[n], column
        assert stored[column].iloc[:n].nunique() == 1, column
    assert stored["customer_name"].iloc[0] == hostile
    assert stored["order_time"].iloc[0] == stored["order_time"].iloc[n] == when
    assert stored["order_total_fen"].iloc[0] == 2**62


def test_empty_text_stays_apart_from_null_and_odd_python_values_still_load(engine):
    """PostgreSQL loads batches as csv written by Arrow: an empty string must not turn into NULL, dates and times
    must keep their value, and a column Arrow cannot type (mixed Python objects) is still loaded, row by row."""
    frame = order_frame(4).assign(customer_name=["", None, "张三, \"老客户\"\n二行", "李娜"],
                                  buyer_note=["x", "", None, "y"])
    mixed = order_frame(2, start=10).assign(customer_name=[7, "王五"])
    with engine.begin() as conn:
        assert insert_rows(conn, orders, frame) == 4
        assert insert_rows(conn, orders, mixed, on_conflict=["channel", "channel_order_id"]) == 2
    with engine.connect() as conn:
        stored = read_frame(conn, select(orders).order_by(orders.c.id))
    assert stored["customer_name"].tolist()[:4] == ["", None, "张三, \"老客户\"\n二行", "李娜"]
    assert stored["buyer_note"].tolist()[:4] == ["x", "", None, "y"]
    assert [str(v) for v in stored["customer_name"].tolist()[4:]] == ["7", "王五"]
    assert stored["promised_date"].astype(str).tolist() == ["2026-11-10"] * 6
    assert all(t == datetime(2026, 11, 2, 1, 30, tzinfo=UTC) for t in stored["order_time"])


def test_a_text_column_concatenated_from_empty_frames_loads_its_values(engine):
    """pandas' str column built by concatenating frames, the first ones empty, is an Arrow array of several chunks,
    the first of length 0: Arrow's csv writer (PostgreSQL's COPY path) wrote garbage bytes for it until the table
    was made one chunk per column (seen on the internal audit's findings)."""
    pieces = [pd.DataFrame({"customer_name": pd.Series([], dtype="str")}) for _ in range(3)]
    pieces.append(pd.DataFrame({"customer_name": pd.Series(["王伟", "李娜"], dtype="str")}))
    names = pd.concat(pieces, ignore_index=True)["customer_name"]
    with engine.begin() as conn:
        assert insert_rows(conn, orders, order_frame(2).assign(customer_name=names.to_numpy())) == 2
        assert insert_rows(conn, orders, order_frame(2, start=10).assign(customer_name=names)) == 2
    with engine.connect() as conn:
        stored = read_frame(conn, select(orders.c.customer_name).order_by(orders.c.id))
    assert stored["customer_name"].tolist() == ["王伟", "李娜", "王伟", "李娜"]


def test_conflicts_are_skipped_or_updated_only_when_changed(engine):
    frame = order_frame(10)
    with engine.begin() as conn:
        insert_rows(conn, orders, frame)
        assert insert_rows(conn, orders, frame, on_conflict=["channel", "channel_order_id"]) == 0
        changed = frame.copy()
        changed.loc[2, "order_total_fen"] = 1
        updated = insert_rows(
            conn,
            orders,
            changed,
            on_conflict=["channel", "channel_order_id"],
            update_columns=["order_total_fen"],
        )
        assert updated == 1
        total = conn.execute(
            select(orders.c.order_total_fen).where(orders.c.channel_order_id == "2")
        ).scalar()
        assert total == 1
    with pytest.raises(IntegrityError), engine.begin() as conn:
        insert_rows(conn, orders, frame)  # no conflict handling: the unique key refuses duplicates


def test_a_key_twice_in_a_batch_or_already_stored_is_skipped_whichever_path_inserts(engine):
    """PostgreSQL inserts through MERGE, or straight COPY with ``rare_conflicts``; a key stored already or twice in
    the batch sends both back to ON CONFLICT from a savepoint: the outcome is ON CONFLICT's, nothing duplicated."""
    with engine.begin() as conn:
        assert insert_rows(conn, orders, order_frame(3), on_conflict=["channel", "channel_order_id"]) == 3
        twice = pd.concat([order_frame(2, start=10), order_frame(1, start=10).assign(order_no="YDX")])
        assert insert_rows(conn, orders, twice, on_conflict=["channel", "channel_order_id"]) == 2
        overlapping = order_frame(4, start=2).assign(order_no=lambda f: "YDR" + f["channel_order_id"])
        assert insert_rows(conn, orders, overlapping, on_conflict=["channel", "channel_order_id"],
                           rare_conflicts=True) == 3  # 2 was stored: 3, 4, 5 are new
        assert insert_rows(conn, orders, order_frame(2, start=20), on_conflict=["channel", "channel_order_id"],
                           rare_conflicts=True) == 2
        stored = read_frame(conn, select(orders.c.channel_order_id, orders.c.order_no).order_by(orders.c.id))
    assert stored["channel_order_id"].tolist() == ["0", "1", "2", "10", "11", "3", "4", "5", "20", "21"]
    assert stored["order_no"].tolist() == ["YD00000000", "YD00000001", "YD00000002", "YD00000010", "YD00000011",
                                           "YDR3", "YDR4", "YDR5", "YD00000020", "YD00000021"]


def test_a_batch_of_several_statements_counts_and_stores_every_row(engine):
    """SQLite writes a batch as multi-row statements of ``SQLITE_ROWS_PER_STATEMENT`` rows (the last one shorter),
    and a text column repeating a few values as one Python string per value: counts and rows are those of a row by
    row insert, across statement boundaries (changed rows in the first, middle and last statement, a key twice)."""
    n = 2 * SQLITE_ROWS_PER_STATEMENT + 7
    provinces = ["重庆市", "北京市", None, "上海市", ""]
    frame = order_frame(n).assign(ship_province=pd.array([provinces[i % 5] for i in range(n)], dtype="str"))
    changed_at = [1, SQLITE_ROWS_PER_STATEMENT + 1, n - 1]
    with engine.begin() as conn:
        assert insert_rows(conn, orders, frame, on_conflict=["channel", "channel_order_id"]) == n
        again = frame.copy()
        again.loc[changed_at, "order_total_fen"] = -1
        again = pd.concat([again, order_frame(1, start=n)], ignore_index=True)
        assert insert_rows(conn, orders, again, on_conflict=["channel", "channel_order_id"],
                           update_columns=["order_total_fen"]) == 4  # three updated, one new
        twice = pd.concat([order_frame(1, start=n + 1), frame, order_frame(1, start=n + 1).assign(order_no="YDX")],
                          ignore_index=True)
        assert insert_rows(conn, orders, twice, on_conflict=["channel", "channel_order_id"]) == 1
        stored = read_frame(conn, select(orders.c.channel_order_id, orders.c.order_no, orders.c.ship_province,
                                         orders.c.order_total_fen).order_by(orders.c.id))
    assert len(stored) == n + 2
    assert stored["ship_province"].tolist()[:n] == [provinces[i % 5] for i in range(n)]
    assert stored["ship_province"].tolist()[n:] == [None, None]
    assert [i for i, total in enumerate(stored["order_total_fen"].tolist()) if total == -1] == changed_at
    assert stored["order_no"].tolist()[-1] == f"YD{n + 1:08d}"


def test_an_updated_column_the_batch_lacks_takes_its_default_as_on_conflict_does(engine):
    with engine.begin() as conn:
        insert_rows(conn, orders, order_frame(1).assign(customer_name="王伟"))
        again = order_frame(1).drop(columns="customer_name").assign(order_total_fen=7)
        assert insert_rows(conn, orders, again, on_conflict=["channel", "channel_order_id"],
                           update_columns=["order_total_fen", "customer_name"]) == 1
        stored = conn.execute(select(orders.c.customer_name, orders.c.order_total_fen)).one()
    assert tuple(stored) == (None, 7)


def test_bulk_drop_chunks_are_compressed_with_lz4_on_postgresql(engine):
    """Migration 0019: intake_records.content, a chunk of a bulk drop several MB long, is TOASTed with lz4."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores text uncompressed")
    with engine.connect() as conn:
        method = conn.exec_driver_sql(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = 'intake_records'::regclass "
            "AND attname = 'content'").scalar()
    assert method == "l"


def test_a_failed_batch_leaves_nothing_behind(engine):
    frame = pd.concat([order_frame(5), order_frame(1, start=2)])  # duplicate key inside the batch
    with pytest.raises(IntegrityError), engine.begin() as conn:
        insert_rows(conn, orders, frame)
    with engine.connect() as conn:
        assert read_frame(conn, select(orders.c.id)).empty


def test_upsert_returning_ids_maps_every_key(engine):
    items = pd.DataFrame(
        {"code": ["A", "B", "C"], "name": ["甲", "乙", "丙"], "list_price_fen": [100, 200, 300]}
    )
    with engine.begin() as conn:
        first = upsert_returning_ids(conn, catalog_items, items, ["code"], update_columns=["name"])
        again = upsert_returning_ids(
            conn, catalog_items, items.assign(name="新"), ["code"], update_columns=["name"]
        )
        assert sorted(first["code"]) == ["A", "B", "C"]
        assert first.set_index("code")["id"].to_dict() == again.set_index("code")["id"].to_dict()
        names = read_frame(conn, select(catalog_items.c.name))["name"].tolist()
        assert names == ["新", "新", "新"]
        assert ids_for_keys(conn, catalog_items, pd.DataFrame({"code": ["Z"]})).empty


def test_naive_datetimes_are_refused(engine):
    frame = order_frame(1).assign(order_time=[datetime(2026, 11, 2, 9, 30)])
    with pytest.raises(Exception, match="naive|timezone|tz"), engine.begin() as conn:
        conn.execute(orders.insert(), frame.to_dict("records"))


def test_outbox_queues_each_notice_once(engine):
    notices = pd.DataFrame(
        {
            "order_id": [1, 1],
            "medium": ["sms", "email"],
            "recipient": ["13812348000", "a@example.com"],
            "template": ["order_rejected", "order_rejected"],
            "context": [{"reasons": ["电话无效"]}, {"reasons": ["电话无效"]}],
            "dedupe_key": ["rej:1:sms", "rej:1:email"],
        }
    )
    with engine.begin() as conn:
        assert enqueue(conn, notices) == 2
        assert enqueue(conn, notices) == 0  # rerun: nothing new
        assert (
            enqueue(conn, notices.assign(recipient=None, dedupe_key=["x", "y"])) == 0
        )  # no recipient: not queued
        stored = read_frame(conn, select(notification_outbox))
    assert stored["status"].tolist() == ["pending", "pending"]
    assert "电话无效" in stored["context"].iloc[0]
    with pytest.raises(ValueError, match="media"), engine.begin() as conn:
        enqueue(conn, notices.assign(medium="fax"))


def test_json_objects_built_column_wise_are_the_text_json_text_writes():
    names = pd.Series(["王伟", 'say "hi"', "back\\slash", "line\nbreak", None, "\x01", "\u3000全角", "plain"])
    texts = json_object_texts({"order_no": [f"YD{i}" for i in range(8)], "customer_name": names,
                               "company_name": "重庆某公司"}, 8)
    assert texts.tolist() == [json_text({"order_no": f"YD{i}", "customer_name": None if pd.isna(n) else n,
                                         "company_name": "重庆某公司"}) for i, n in enumerate(names)]
    assert texts[1] == '{"company_name": "重庆某公司", "customer_name": "say \\"hi\\"", "order_no": "YD1"}'


def test_init_is_idempotent_and_reports_heads(engine):
    from alembic.script import ScriptDirectory

    from yidi.db import MIGRATIONS_DIR

    before = current_heads(engine)
    assert before == sorted(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())  # every area's migration applied
    assert init_db(engine) == before


def test_shipment_idempotency_key_is_unique(engine):
    with engine.begin() as conn:
        insert_rows(conn, orders, order_frame(1))
        order_id = conn.execute(select(orders.c.id)).scalar()
        row = pd.DataFrame(
            {
                "shipment_no": ["S1"],
                "order_id": [order_id],
                "carrier": ["shunfeng"],
                "idempotency_key": ["k1"],
            }
        )
        insert_rows(conn, shipments, row)
        assert (
            insert_rows(conn, shipments, row.assign(shipment_no="S2"), on_conflict=["idempotency_key"]) == 0
        )
