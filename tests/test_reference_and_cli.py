"""Reference data loading (GBK/UTF-8, Chinese/English headers, csv/xlsx) and the yidi CLI end to end."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli.main import cli
from yidi.bulk import insert_rows, read_frame
from yidi.db import get_engine
from yidi.lifecycle import OrderState, transition_orders
from yidi.masking import mask_address, mask_name, mask_phone
from yidi.reference import ReferenceFileError, load_reference_file
from yidi.schema import catalog_items, customers, orders
from yidi.textfiles import UnreadableText, decode_bytes, detect_stream_encoding, read_table

CHINESE_CATALOG = '商品编码,名称,规格,型号,单位,单价,重量,类型\nSKU-1,火锅底料,500g 牛油,HG-500,袋,"1,039.90",0.55,商品\nSV-1,上门安装,省外,SV-I,次,300,,服务\n'

runner = CliRunner()


def script_heads() -> list[str]:
    from alembic.script import ScriptDirectory

    from yidi.db import MIGRATIONS_DIR

    return sorted(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


@pytest.mark.parametrize("encoding", ["gbk", "utf-8", "utf-8-sig", "gb18030"])
def test_catalog_with_chinese_headers_in_every_encoding(engine, tmp_path, encoding):
    path = tmp_path / "catalog.csv"
    path.write_bytes(CHINESE_CATALOG.encode(encoding))
    with engine.begin() as conn:
        assert load_reference_file(conn, "catalog", path) == 2
        assert load_reference_file(conn, "catalog", path) == 0  # re-loading changes nothing
        items = read_frame(conn, select(catalog_items).order_by("code")).set_index("code")
    assert items.loc["SKU-1", "name"] == "火锅底料"
    assert items.loc["SKU-1", "list_price_fen"] == 103990
    assert items.loc["SV-1", "kind"] == "service"
    assert items.loc["SKU-1", "unit"] == "袋"


def test_customers_from_xlsx_with_english_headers(engine, tmp_path):
    path = tmp_path / "customers.xlsx"
    pd.DataFrame(
        {
            "code": ["C1", "C2"],
            "name": ["重庆宏达机电设备有限公司", "张伟"],
            "phone": ["023-65001234", "13812348000"],
            "important": ["是", "否"],
            "credit_limit": ["300,000.00", ""],
            "payment_terms": ["net", None],
            "net_days": ["30", None],
        }
    ).to_excel(path, index=False)
    with engine.begin() as conn:
        assert load_reference_file(conn, "customers", path) == 2
        stored = read_frame(conn, select(customers).order_by("code")).set_index("code")
    assert bool(stored.loc["C1", "is_important"]) is True
    assert stored.loc["C1", "credit_limit_fen"] == 30_000_000
    assert stored.loc["C2", "payment_terms"] == "prepaid"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("名称,单价\n火锅底料,39.9\n", "missing column"),
        ("商品编码,名称,单价\nA,甲,abc\n", "not a number in row(s) 2"),
        ("商品编码,名称,单价\nA,甲,1\nA,乙,2\n", "duplicate code"),
        ("商品编码,名称,单价,类型\nA,甲,1,礼品卡\n", "unknown values"),
        ("商品编码,名称,单价\nA,,1\n", "empty in row(s) 2"),
    ],
)
def test_bad_reference_files_are_refused_with_the_row(sqlite_engine, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ReferenceFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        with sqlite_engine.begin() as conn:
            load_reference_file(conn, "catalog", path)


def test_text_detection_is_strict():
    assert decode_bytes("重庆".encode("gbk")) == ("重庆", "gb18030")
    assert decode_bytes("重庆".encode("utf-8-sig")) == ("重庆", "utf-8-sig")
    assert decode_bytes("重庆".encode()) == ("重庆", "utf-8")
    with pytest.raises(UnreadableText, match="offset"):
        decode_bytes(b"\x81\x20\xff\xfe")
    frame = read_table(" 名称 , 单价 \n 火锅 , 1 \n,\n".encode("gbk"), "x.csv")
    assert list(frame.columns) == ["名称", "单价"] and frame.iloc[0].tolist() == ["火锅", "1"]
    assert len(frame) == 1  # the empty row is dropped


@pytest.mark.parametrize("data", [
    "订单号,渠道😀é\n".encode() * 3,  # valid: 2, 3 and 4-byte characters cut by every block size below
    "重庆".encode("utf-8-sig") * 3,
    "订单号,渠道\n".encode() + b"\xe4\xb8",  # the last character cut short
    b"\xed\xa0\x80" + "订单".encode(),  # a surrogate
    b"\xc0\xaf" + "订单".encode(),  # an overlong form
    "订单号,渠道\n重庆".encode("gbk"),
    b"\x81\x20\xff\xfe",
])
def test_a_large_file_is_decided_as_its_whole_bytes_would_be(data):
    """``detect_stream_encoding`` checks UTF-8 block by block with Arrow's validator: whatever the block size, it
    decides as the strict decoder does on the whole file (``decode_bytes``)."""
    try:
        expected = decode_bytes(data)[1]
    except UnreadableText:
        expected = None
    for block in (1, 2, 3, 5, 7, 1 << 20):
        try:
            found = detect_stream_encoding(io.BytesIO(data), block=block)
        except UnreadableText:
            found = None
        assert found == expected, block


def test_masking_hides_personal_data():
    assert mask_phone("13812348000") == "138****8000"
    assert mask_phone("023-6500-1234") == "023-****-1234"
    assert mask_name("张三丰") == "张**"
    assert mask_address("解放碑步行街88号3栋1201") == "解放碑步行街********"
    assert "1201" not in mask_address("解放碑步行街88号3栋1201")


def _seed_order(engine) -> int:
    with engine.begin() as conn:
        insert_rows(
            conn,
            orders,
            pd.DataFrame(
                {
                    "order_no": ["YD00000001"],
                    "channel": ["website"],
                    "channel_order_id": ["1001"],
                    "customer_name": ["李娜"],
                    "order_total_fen": [12345],
                }
            ),
        )
        order_id = conn.execute(select(orders.c.id)).scalar()
        transition_orders(
            conn, [order_id], OrderState.PENDING_REVIEW, reason="passed checks", actor="user:test"
        )
    return order_id


def test_cli_init_load_show_export(tmp_path):
    result = runner.invoke(cli, ["init", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["heads"] == script_heads()

    catalog = tmp_path / "catalog.csv"
    catalog.write_bytes(CHINESE_CATALOG.encode("gbk"))
    result = runner.invoke(cli, ["load", "catalog", str(catalog), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inserted_or_changed"] == 2

    order_id = _seed_order(get_engine())
    result = runner.invoke(cli, ["order", "show", "website:1001", "--json"])
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["order"]["id"] == order_id and view["order"]["order_total"] == "123.45"
    assert [e["to_state"] for e in view["timeline"]] == ["pending_review"]
    result = runner.invoke(cli, ["order", "show", "YD00000001"])
    assert result.exit_code == 0 and "pending_review" in result.output and "user:test" in result.output

    result = runner.invoke(cli, ["order", "show", "nope"])
    assert result.exit_code == 1 and "no order" in result.output

    out = tmp_path / "orders.csv"
    result = runner.invoke(cli, ["export", "orders", "--format", "csv", "--output", str(out), "--unmasked"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM so Excel reads Chinese
    assert pd.read_csv(out, encoding="utf-8-sig")["customer_name"].tolist() == [
        "李娜"
    ]  # staff export: unmasked
    xlsx = tmp_path / "events.xlsx"
    assert runner.invoke(cli, ["export", "order_events", "-f", "xlsx", "-o", str(xlsx)]).exit_code == 0
    assert pd.read_excel(xlsx)["to_state"].tolist() == ["pending_review"]
    result = runner.invoke(cli, ["export", "no_such_table"])
    assert result.exit_code == 1 and "no table" in result.output


def test_cli_reports_an_uninitialised_store_and_a_bad_policy(tmp_path, monkeypatch):
    result = runner.invoke(cli, ["order", "show", "1"])
    assert result.exit_code == 4 and "yidi init" in result.output
    policy = tmp_path / "bad.toml"
    policy.write_text("[review]\ndeadline_working_days = -3\n")
    monkeypatch.setenv("YIDI_CONFIG", str(policy))
    result = runner.invoke(cli, ["config", "show"])
    assert result.exit_code == 3 and "review.deadline_working_days" in result.output


def test_cli_config_show_json():
    result = runner.invoke(cli, ["config", "show", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["review"]["deadline_working_days"] == 2
