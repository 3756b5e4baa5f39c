"""Every outside format against small fixtures in the shape of real published examples
(``tests/data/formats/``; README.md there says where each shape comes from): the right rows and totals,
exact values; a wrong-totals variant of each refused for its totals."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from connectors.payment_files import parse_payment_file
from connectors.payment_files.alipay import parse_alipay_bill
from connectors.payment_files.common import PaymentFileError
from connectors.payment_files.wechatpay import parse_wechatpay_bill
from demo.standins.payment_files import utc

FORMATS = Path(__file__).parent / "data" / "formats"
ALIPAY = FORMATS / "alipay"
WECHAT = FORMATS / "wechatpay"


def _refused(reason: str, call, *args, **kwargs) -> PaymentFileError:
    with pytest.raises(PaymentFileError) as caught:
        call(*args, **kwargs)
    assert caught.value.reason == reason, str(caught.value)
    return caught.value


# --------------------------------------------------------------------------------------------- Alipay

ALIPAY_DAY_ONE = [  # (kind, amount_fen, fee_fen, order) as the fixture's rows state them
    ("payment", 12800, 77, "YD20261101000001"),
    ("payment", 5650, 34, "YD20261101000002"),
    ("payment", 1, 0, "YD20261101000003"),
    ("refund", -2800, -17, "YD20261101000001"),
    ("refund", -1, 0, "YD20261101000003"),
]


def _alipay_rows(frame):
    return list(zip(frame["kind"], frame["amount_fen"], frame["fee_fen"], frame["merchant_order_no"], strict=True))


@pytest.mark.parametrize("name", ["detail-footer-without-colon.gbk.csv", "bill-with-summary.zip"])
def test_alipay_bill_in_the_published_shape_parses_to_its_rows(name):
    frame = parse_alipay_bill(ALIPAY / name, accounts=["20880123456789010156"])
    assert _alipay_rows(frame) == ALIPAY_DAY_ONE
    assert frame["line_key"].tolist()[3] == "2026110122001458860000000101/refund/re_20261101150216001"
    assert frame["original_txn_id"].tolist()[3] == "2026110122001458860000000101"
    assert frame["txn_time"].tolist()[0] == utc(2026, 11, 1, 10, 55, 23)
    assert frame["payer_account"].tolist()[0] == "*明(138****0001)"
    assert set(frame["account"]) == {"20880123456789010156"}


def test_alipay_footer_with_colon_thousands_separators_utf8_and_crlf():
    frame = parse_alipay_bill(ALIPAY / "detail-footer-colon-thousands.utf8-crlf.csv")
    assert frame["amount_fen"].tolist() == [129900, 1200050]
    assert frame["fee_fen"].tolist() == [779, 7200]


def test_alipay_gbk_bill_saved_with_crlf_and_as_utf8_reads_the_same():
    text = (ALIPAY / "detail-footer-without-colon.gbk.csv").read_bytes().decode("gbk")
    for data in (text.replace("\n", "\r\n").encode("gbk"), text.encode("utf-8"), b"\xef\xbb\xbf" + text.encode()):
        assert _alipay_rows(parse_alipay_bill(data, name="x.csv")) == ALIPAY_DAY_ONE


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("商家实收共184.51元", "商家实收共185.51元", "trade 商家实收 total"),
        ("#交易合计：3笔", "#交易合计：4笔", "trade count"),
        ("商家实收退款共-28.01元", "商家实收退款共-28.00元", "refund 商家实收 total"),
        ("#退款合计：2笔", "#退款合计：1笔", "refund count"),
    ],
)
def test_alipay_bill_whose_footer_disagrees_is_refused_for_its_totals(old, new, words):
    text = (ALIPAY / "detail-footer-without-colon.gbk.csv").read_bytes().decode("gbk")
    assert old in text
    error = _refused("totals_mismatch", parse_alipay_bill, text.replace(old, new).encode("gbk"), name="x.csv")
    assert words in error.problem


class _Cp437Name(zipfile.ZipInfo):
    """Keeps a member name's original bytes (Alipay's GBK names carry no UTF-8 flag)."""

    def _encodeFilenameFlags(self):
        return self.filename.encode("cp437"), self.flag_bits


def _rezip(summary_edit):
    source = zipfile.ZipFile(ALIPAY / "bill-with-summary.zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            if "(" in info.filename:  # the summary member
                content = summary_edit(content.decode("gbk")).encode("gbk")
            target.writestr(_Cp437Name(info.filename, date_time=info.date_time), content)
    return buffer.getvalue()


def test_alipay_zip_whose_summary_disagrees_with_the_detail_is_refused_for_its_totals():
    assert len(parse_alipay_bill(_rezip(lambda text: text), name="b.zip")) == 5
    error = _refused("totals_mismatch", parse_alipay_bill, _rezip(lambda t: t.replace(",合计,3,2,", ",合计,3,1,")),
                     name="b.zip")  # fmt: skip
    assert "summary 退款订单总笔数" in error.problem


def test_alipay_footer_that_is_gone_or_unreadable_says_so():
    text = (ALIPAY / "detail-footer-without-colon.gbk.csv").read_bytes().decode("gbk")
    garbled = text.replace("商家实收共184.51元", "商家实收共一百元")
    assert "not in a form" in _refused("format", parse_alipay_bill, garbled.encode("gbk"), name="x.csv").problem
    cut = text[: text.index("#交易合计")]
    _refused("truncated", parse_alipay_bill, cut.encode("gbk"), name="x.csv")


def test_alipay_summary_file_alone_is_refused_as_the_summary():
    member = next(n for n in zipfile.ZipFile(ALIPAY / "bill-with-summary.zip").namelist() if "(" in n)
    data = zipfile.ZipFile(ALIPAY / "bill-with-summary.zip").read(member)
    assert "summary file" in _refused("format", parse_alipay_bill, data, name="s.csv").problem


# --------------------------------------------------------------------------------------------- WeChat


def test_wechat_all_bill_in_the_published_shape():
    frame = parse_wechatpay_bill(WECHAT / "all-bill.utf8-crlf.csv", accounts=["1900012345"])
    assert frame["kind"].tolist() == ["payment", "payment", "refund"]
    assert frame["amount_fen"].tolist() == [26800, 128800, -6800]
    assert frame["fee_fen"].tolist() == [161, 773, -41]  # 1.60800, 7.72800, -0.40800 rounded half away from zero
    assert frame["line_key"].tolist()[2] == "refund/50300012342026110100000000001"
    assert frame["txn_time"].tolist()[0] == utc(2026, 11, 1, 10, 20, 30)


def test_wechat_bill_with_backticked_header_rows_reads_the_same():
    lines = (WECHAT / "all-bill.utf8-crlf.csv").read_bytes().decode().split("\r\n")
    for i in (0, len(lines) - 3):  # the column row and the summary's column row
        lines[i] = ",".join("`" + c for c in lines[i].split(","))
    frame = parse_wechatpay_bill("\r\n".join(lines).encode(), name="x.csv")
    assert frame["amount_fen"].tolist() == [26800, 128800, -6800]


def test_wechat_bill_with_the_2015_column_names():
    frame = parse_wechatpay_bill(WECHAT / "success-bill-2015-columns.csv", accounts=["1900012345"])
    assert frame["amount_fen"].tolist() == [9990, 1010]
    assert frame["fee_fen"].tolist() == [60, 6]


@pytest.mark.parametrize(
    ("name", "old", "new", "words"),
    [
        ("all-bill.utf8-crlf.csv", '"`1,556.00",`68.00', '"`1,556.01",`68.00', "应结订单总金额"),
        ("all-bill.utf8-crlf.csv", "`3,", "`4,", "总交易单数"),
        ("all-bill.utf8-crlf.csv", "`8.92800", "`8.92700", "手续费总金额"),
        ("success-bill-2015-columns.csv", "`110.00", "`110.10", "应结订单总金额"),
    ],
)
def test_wechat_bill_whose_summary_disagrees_is_refused_for_its_totals(name, old, new, words):
    text = (WECHAT / name).read_bytes().decode()
    head, _, summary = text.rpartition("总交易")
    assert old in summary
    error = _refused("totals_mismatch", parse_wechatpay_bill, (head + "总交易" + summary.replace(old, new, 1)).encode(),
                     name=name)  # fmt: skip
    assert words in error.problem


# ------------------------------------------------------------------------------ bank statements and COD

BANK = FORMATS / "bank"
COD = FORMATS / "cod"


@pytest.fixture
def policy():
    return _defaults_policy()


def _defaults_policy():
    from yidi.settings import DEFAULTS_PATH, load_settings

    return load_settings(DEFAULTS_PATH).settlement


def _read(path: Path, policy, data: bytes | None = None):
    from connectors.payment_files import read_payment_file

    return read_payment_file(path.read_bytes() if data is None else data, path.name, policy)


@pytest.mark.parametrize(
    ("name", "source", "amounts", "times"),
    [
        ("boc-transactions.utf8.csv", "bank:boc", [129900, -5000, 1200050],
         [utc(2026, 11, 3, 9, 15, 2), utc(2026, 11, 3, 14, 20, 45), utc(2026, 11, 4, 10, 0, 0)]),
        ("abc-transactions.gbk.csv", "bank:abc", [200000, -1000, 1],
         [utc(2026, 11, 3, 10, 15, 0), utc(2026, 11, 3, 13, 23, 24), utc(2026, 11, 4, 0, 0, 0)]),
        ("ccb-transactions.gbk.csv", "bank:ccb", [350000, -12000],
         [utc(2026, 11, 3, 10, 1, 2), utc(2026, 11, 3, 16, 30, 0)]),
    ],
)  # fmt: skip
def test_bank_export_in_the_published_shape_is_recognised_and_read(policy, name, source, amounts, times):
    found, frame = _read(BANK / name, policy)
    assert found == source
    assert frame["amount_fen"].tolist() == amounts
    assert frame["txn_time"].tolist() == times
    assert frame["kind"].tolist() == ["credit" if a > 0 else "debit" for a in amounts]
    assert set(frame["account"]) == set(policy.accounts.bank[source.partition(":")[2]])


def test_an_export_without_a_title_is_recognised_by_its_own_columns_whatever_its_name(policy):
    found, frame = _read(BANK / "statement.csv", policy, (BANK / "abc-transactions.gbk.csv").read_bytes())
    assert found == "bank:abc" and len(frame) == 3


def test_bank_lines_with_a_placeholder_serial_keep_their_own_identity(policy):
    _, frame = _read(BANK / "abc-transactions.gbk.csv", policy)
    assert frame["line_key"].tolist()[:2] == ["369396001", "369396002"]
    assert frame["provider_txn_id"].isna().tolist() == [False, False, True]  # 0000000000 is no serial


def test_ccb_export_names_our_account_in_its_title_lines(policy):
    data = (BANK / "ccb-transactions.gbk.csv").read_bytes().replace(b"50050100360000001234", b"50050100369999999999")
    with pytest.raises(PaymentFileError) as caught:
        _read(BANK / "ccb-transactions.gbk.csv", policy, data)
    assert caught.value.reason == "other_account"


ZTO_ROWS = [  # (waybill, order, collected, fee) of the rows marked 已回款; the 未回款 row is no money yet
    ("73100000000001", "YD20261101000051", 129900, 1299),
    ("73100000000002", "YD20261101000052", 5000, 50),
]


def test_gbk_carrier_cod_export_with_title_lines_status_and_totals_row_parses(policy):
    found, frame = _read(COD / "zhongtong-remittance.gbk.csv", policy)
    assert found == "cod:zhongtong"
    rows = list(zip(frame["waybill_no"], frame["merchant_order_no"], frame["amount_fen"], frame["fee_fen"], strict=True))
    assert rows == ZTO_ROWS
    assert set(frame["account"]) == {"ZTO5000123"}
    assert frame["line_key"].tolist()[0] == "ZTOHK202611050001/73100000000001"
    assert frame["txn_time"].tolist() == [utc(2026, 11, 5, 0, 0, 0)] * 2
    assert frame["kind"].unique().tolist() == ["cod"]


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ('合计,,,"1,437.00"', '合计,,,"1,438.00"', "totals row 代收货款"),
        (',14.37,"1,422.63"', ',14.36,"1,422.63"', "totals row 手续费"),
        ("总笔数：3", "总笔数：4", "row count"),
    ],
)
def test_carrier_cod_export_whose_totals_disagree_is_refused_for_its_totals(policy, old, new, words):
    text = (COD / "zhongtong-remittance.gbk.csv").read_bytes().decode("gbk")
    assert old in text
    with pytest.raises(PaymentFileError) as caught:
        _read(COD / "zhongtong-remittance.gbk.csv", policy, text.replace(old, new).encode("gbk"))
    assert caught.value.reason == "totals_mismatch" and words in caught.value.problem


def test_carrier_cod_export_with_an_unknown_status_or_no_totals_row_is_refused(policy):
    text = (COD / "zhongtong-remittance.gbk.csv").read_bytes().decode("gbk")
    with pytest.raises(PaymentFileError) as caught:
        _read(COD / "x.csv", policy, text.replace("未回款", "已拒收").encode("gbk"))
    assert caught.value.reason == "bad_value" and "已拒收" in caught.value.problem
    cut = text[: text.index("合计")]
    with pytest.raises(PaymentFileError) as caught:
        _read(COD / "x.csv", policy, cut.encode("gbk"))
    assert caught.value.reason == "truncated"


def test_a_file_no_template_fits_names_every_template_tried_and_why(policy):
    text = (COD / "zhongtong-remittance.gbk.csv").read_bytes().decode("gbk")
    stranger = text.replace("中通快递", "极兔速递").replace("运单编号", "单号")
    with pytest.raises(PaymentFileError) as caught:
        _read(COD / "jt.csv", policy, stranger.encode("gbk"))
    problem = caught.value.problem
    assert caught.value.reason == "format"
    for source in [*(f"cod:{k}" for k in policy.cod_templates), *(f"bank:{k}" for k in policy.bank_templates)]:
        assert f"{source}: " in problem
    assert "cod:zhongtong: no header with 运单编号 + 代收货款" in problem
    renamed_only = text.replace("中通快递", "极兔速递").replace("ZTO", "JT")
    with pytest.raises(PaymentFileError) as caught:
        _read(COD / "jt.csv", policy, renamed_only.encode("gbk"))
    assert "cod:zhongtong: header found, but none of ['中通', 'ZTO']" in caught.value.problem


# ------------------------------------------------------------------------- templates in the policy file


def _policy_with(tmp_path, toml: str):
    from yidi.settings import load_settings

    path = tmp_path / "yidi.toml"
    path.write_text(toml, encoding="utf-8")
    return load_settings(path).settlement


def test_a_bank_template_in_yidi_toml_replaces_the_shipped_one_whole(tmp_path):
    shipped = _defaults_policy().bank_templates["icbc"]
    assert shipped.debit_total_pattern and "凭证号" in shipped.columns.txn_id
    policy = _policy_with(tmp_path, """
[settlement.accounts]
bank = { icbc = ["3100021109024123456"] }
[settlement.bank_templates.icbc]
bank_name = "中国工商银行 (own export)"
amount_convention = "signed_amount"
[settlement.bank_templates.icbc.columns]
date = ["交易日期"]
amount = ["发生额"]
""")  # fmt: skip
    icbc = policy.bank_templates["icbc"]
    assert icbc.bank_name == "中国工商银行 (own export)"
    # nothing of the shipped template survives: no totals patterns, no serial column, default footer markers
    assert icbc.debit_total_pattern is None and icbc.count_pattern is None
    assert icbc.columns.txn_id == [] and icbc.columns.debit == []
    assert icbc.footer_markers == ["合计", "总计", "笔数"]
    assert set(policy.bank_templates) == set(_defaults_policy().bank_templates)  # the others stay
    statement = "账号,3100021109024123456\n交易日期,发生额,摘要\n2026-11-03,100.00,货款\n2026-11-03,-20.00,费用\n"
    frame = parse_payment_file(statement.encode("gbk"), "icbc.csv", "bank:icbc", policy)
    assert frame["amount_fen"].tolist() == [10000, -2000]


def test_a_carrier_template_in_yidi_toml_replaces_the_shipped_one_whole(tmp_path):
    policy = _policy_with(tmp_path, """
[settlement.cod_templates.zhongtong]
carrier_name = "中通快递"
totals_row_markers = ["总计"]
count_pattern = '共(\\d+)单'
[settlement.cod_templates.zhongtong.columns]
waybill = ["快递单号"]
collected = ["货款"]
remitted = ["回款"]
""")  # fmt: skip
    zto = policy.cod_templates["zhongtong"]
    assert zto.columns.fee == [] and zto.columns.status == [] and zto.detect_words == []
    assert zto.totals_row_markers == ["总计"]
    export = ("中通快递 代收货款回款明细\n客户编码：ZTO5000123\n回款日期：2026-11-06\n快递单号,货款,回款\n"
              "73100000000009,100.00,100.00\n总计,100.00,100.00\n共1单\n")  # fmt: skip
    found, frame = _read(COD / "zto.csv", policy, export.encode("gbk"))
    assert found == "cod:zhongtong"
    assert frame["amount_fen"].tolist() == [10000] and frame["fee_fen"].tolist() == [0]
    assert frame["txn_time"].tolist() == [utc(2026, 11, 6, 0, 0, 0)]
    with pytest.raises(PaymentFileError):  # the shipped layout is gone for this key
        _read(COD / "zto.csv", policy, (COD / "zhongtong-remittance.gbk.csv").read_bytes())


def test_other_policy_tables_still_merge_key_by_key(tmp_path):
    policy = _policy_with(tmp_path, "[settlement.accounts]\nalipay = ['2088000000000001']\n")
    assert policy.accounts.alipay == ["2088000000000001"]
    assert policy.accounts.wechatpay == _defaults_policy().accounts.wechatpay


# ------------------------------------------------------------- order channels, tracking answers, order emails


def _json(path: Path):
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def test_top_trades_sold_increment_get_response_in_the_published_shape():
    from connectors.taobao import RESPONSE_KEY, parse_trades
    from yidi.bulk import json_text

    body = _json(FORMATS / "taobao" / "trades-sold-increment-get.json")[RESPONSE_KEY]
    parsed = parse_trades([json_text(t) for t in body["trades"]["trade"]])
    assert parsed.problems.empty
    orders = parsed.orders
    assert orders["channel_order_id"].tolist() == ["3920174562018563701", "3920174562018563702"]  # numeric tid
    assert orders["order_total_fen"].tolist() == [21700, 5650]
    assert orders["goods_total_fen"].tolist() == [21900, 5650]
    assert orders["discount_fen"].tolist() == [1200, 0] and orders["freight_fen"].tolist() == [1000, 0]
    assert orders["source_cancelled"].tolist() == [False, True]  # TRADE_CLOSED_BY_TAOBAO
    assert orders["order_time"].tolist()[0] == utc(2026, 11, 1, 10, 12, 30)
    assert orders["ship_detail"].tolist()[0] == "龙溪街道金开大道1号"  # receiver_town joined to the address
    lines = parsed.lines
    assert lines["item_code"].tolist() == ["SKU-HG-500", "HJ-GIFT", "SKU-TRY"]  # outer_iid when no outer_sku_id
    assert lines["quantity"].tolist() == [2.0, 1.0, 1.0]
    assert lines["unit_price_fen"].tolist() == [5900, 10100, 5650]
    assert lines["line_total_fen"].tolist() == [11200, 9500, 5650]
    assert lines["discount_fen"].tolist() == [600, 600, 0]


def test_top_trade_with_an_unreadable_line_is_a_problem_naming_the_trade():
    from connectors.taobao import RESPONSE_KEY, parse_trades
    from yidi.bulk import json_text

    trades = _json(FORMATS / "taobao" / "trades-sold-increment-get.json")[RESPONSE_KEY]["trades"]["trade"]
    trades[0]["orders"]["order"][0]["num"] = "two"
    parsed = parse_trades([json_text(t) for t in trades])
    assert parsed.orders["channel_order_id"].tolist() == ["3920174562018563702"]
    assert "3920174562018563701" in parsed.problems["reason"].iloc[0] and "num 'two'" in parsed.problems["reason"].iloc[0]


def test_top_error_response_in_the_published_shape_is_transient_when_throttled(monkeypatch):
    from types import SimpleNamespace

    from connectors import taobao

    body = _json(FORMATS / "taobao" / "error-response.json")
    answer = SimpleNamespace(status_code=200, json=lambda: body, content=b"", text="")
    monkeypatch.setattr(taobao.requests, "post", lambda *a, **k: answer)
    client = taobao.TopClient(url="http://127.0.0.1:9/router/rest", app_key="k", app_secret="s")
    with pytest.raises(taobao.TopTransientError) as caught:
        client._call_once(taobao.METHOD, {})
    assert caught.value.code == 7 and caught.value.sub_code == "accesscontrol.limited-by-app-access-count"
    assert client._wait_for(caught.value, 1) >= 1.0  # "This ban will last for 1 more seconds"


def test_woocommerce_orders_in_the_published_shape():
    from connectors.woocommerce import DEFAULT_PAYMENT_METHODS, parse_orders
    from yidi.bulk import json_text

    parsed = parse_orders([json_text(o) for o in _json(FORMATS / "woocommerce" / "orders-page.json")],
                          DEFAULT_PAYMENT_METHODS)  # fmt: skip
    assert parsed.problems.empty
    orders = parsed.orders
    assert orders["channel_order_id"].tolist() == ["1101", "1102"]
    assert orders["customer_name"].tolist() == ["张三丰", "John Doe"]  # Chinese names family name first
    assert orders["ship_province"].tolist()[0] == "重庆市"  # state CN23
    assert orders["ship_country"].tolist() == ["CN", "US"]
    assert orders["order_total_fen"].tolist() == [22950, 8305]
    assert orders["freight_fen"].tolist() == [1000, 2500]
    assert orders["payment_method"].tolist() == ["bank_transfer", "alipay"]  # bacs
    assert orders["source_cancelled"].tolist() == [False, True]  # refunded
    assert orders["order_time"].tolist()[0] == utc(2026, 11, 1, 10, 28, 2)  # date_created_gmt
    lines = parsed.lines
    assert lines["unit_price_fen"].tolist() == [5900, 10150, 2000]  # "price" is a number in the API (59, 101.5)
    assert lines["line_total_fen"].tolist() == [11800, 10150, 5400]
    assert lines["discount_fen"].tolist() == [0, 0, 600]  # subtotal 60.00 − total 54.00


def test_kuaidi100_poll_answer_and_error_in_the_published_shape():
    from connectors.kuaidi100 import ErrorKind, Kuaidi100Error, parse_result

    result = parse_result(_json(FORMATS / "kuaidi100" / "poll-query-answer.json"))
    assert (result.com, result.num, result.state, result.ischeck) == ("yuantong", "YT7500000000001", 3, True)
    assert [c.time for c in result.checkpoints] == [
        utc(2026, 11, 3, 14, 5, 0), utc(2026, 11, 3, 8, 10, 0), utc(2026, 11, 1, 20, 30, 0)
    ]
    assert [c.status_code for c in result.checkpoints] == ["301", "5", "1"]
    assert result.checkpoints[0].area_code == "CN500112000000" and result.checkpoints[0].status_text == "签收"
    with pytest.raises(Kuaidi100Error) as caught:
        parse_result(_json(FORMATS / "kuaidi100" / "poll-query-error.json"))
    assert caught.value.kind is ErrorKind.NO_RESULT and caught.value.return_code == "500"


def test_kuaidi100_push_in_the_published_shape_is_verified_and_read():
    from connectors.kuaidi100 import PushRejected, push_sign, verify_push

    param = (FORMATS / "kuaidi100" / "push-param.json").read_text(encoding="utf-8")
    notice = verify_push(param, push_sign(param, "s4lt"), "s4lt")
    assert (notice.status, notice.num, notice.com, notice.auto_check) == ("shutdown", "YT7500000000001", "yuantong", False)
    assert notice.result.state == 3 and len(notice.result.checkpoints) == 2
    with pytest.raises(PushRejected, match="signature mismatch"):
        verify_push(param.replace("签收人：本人", "签收人：门卫"), push_sign(param, "s4lt"), "s4lt")


def test_order_email_in_the_foxmail_shape_with_the_order_in_its_body():
    from connectors.email_orders import process_message

    [part] = process_message((FORMATS / "email" / "foxmail-body-order.eml").read_bytes(), "m1", archive_dir=None)
    assert part.problems == []
    [order] = part.orders
    assert (order["channel_order_id"], order["customer_name"], order["payment_method"], order["freight_fen"]) == (
        "EM20261101-01", "重庆两江机电有限公司", "bank_transfer", 1200)
    assert order["customer_email"] == "buyer@example.cn"
    assert order["order_time"] == utc(2026, 11, 1, 10, 12, 30)  # the Date header, no 下单时间 line
    assert [(x["item_code"], x["quantity"], x["unit_price_fen"]) for x in part.lines] == [
        ("SKU-0002", 2.0, 18900), ("SKU-0007", 1.0, 4550)]


def test_order_email_in_the_foxmail_shape_with_a_gbk_csv_attachment_named_in_gb2312():
    from connectors.email_orders import process_message

    parts = process_message((FORMATS / "email" / "foxmail-csv-attachment.eml").read_bytes(), "m2", archive_dir=None)
    [(records, parsed)] = parts
    assert parsed.problems.empty
    assert "11月2日订单.csv" in records["source_ref"].iloc[0]
    assert parsed.orders["channel_order_id"].tolist() == ["EM20261102-01", "EM20261102-02"]
    assert parsed.orders["payment_method"].tolist() == ["bank_transfer", "cod"]
    assert parsed.lines["unit_price_fen"].tolist() == [18900, 4550, 18900]


# ------------------------------------------------------------------------------ yidi settlement templates


def test_settlement_templates_lists_every_layout_readable_at_80_columns_and_as_json(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from app.cli.main import cli
    from yidi.settings import reload_settings

    monkeypatch.setenv("YIDI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "80")
    runner = CliRunner()
    monkeypatch.delenv("YIDI_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    reload_settings()
    shown = runner.invoke(cli, ["settlement", "templates"])
    assert shown.exit_code == 0, shown.output
    assert max(len(line) for line in shown.output.splitlines()) <= 80
    listed = runner.invoke(cli, ["settlement", "templates", "--json"])
    rows = json.loads(listed.output)
    sources = [r["source"] for r in rows]
    assert sources == [*(f"cod:{c}" for c in ("shunfeng", "zhongtong", "yuantong", "yunda", "jd", "ems", "shentong",
                                               "debangwuliu")),
                       *(f"bank:{b}" for b in ("icbc", "cmb", "cqrcb", "ccb", "abc", "boc", "icbc_card"))]  # fmt: skip
    for source in sources:
        assert f"│ {source} " in shown.output
    assert all(r["shape"] for r in rows)  # every layout says where its shape comes from

    (tmp_path / "yidi.toml").write_text(
        "[settlement.cod_templates.zhongtong]\ncarrier_name = '中通快递'\ntotals_row_markers = ['总计']\n"
        "[settlement.cod_templates.zhongtong.columns]\nwaybill = ['快递单号']\ncollected = ['货款']\n",
        encoding="utf-8",
    )
    reload_settings()
    try:
        one = json.loads(runner.invoke(cli, ["settlement", "templates", "cod:zhongtong", "--json"]).output)
        assert one["columns"]["waybill"] == ["快递单号"] and one["columns"]["fee"] == []  # replaced whole
        assert one["shape"] == ""
        missing = runner.invoke(cli, ["settlement", "templates", "cod:nope"])
        assert missing.exit_code == 1 and "no template 'cod:nope'" in missing.output
    finally:
        (tmp_path / "yidi.toml").unlink()
        reload_settings()


@pytest.mark.parametrize(
    "carrier", ["shunfeng", "zhongtong", "yuantong", "yunda", "jd", "ems", "shentong", "debangwuliu"]
)
def test_every_shipped_carrier_layout_is_recognised_read_and_checked(tmp_path, policy, carrier):
    import pandas as pd

    from demo.standins.payment_files import Faults, write_cod_remittance

    remits = pd.DataFrame({"waybill_no": ["W0001", "W0002"], "merchant_order_no": ["YD1", "YD2"],
                           "amount_fen": [129900, 5000], "fee_fen": [1299, 50],
                           "txn_time": [utc(2026, 11, 5, 0, 0, 0)] * 2})  # fmt: skip
    path = write_cod_remittance(remits, tmp_path / f"{carrier}.csv", carrier=carrier, template=policy.cod_templates[carrier])
    found, frame = _read(path, policy)
    assert found == f"cod:{carrier}"
    assert frame["amount_fen"].tolist() == [129900, 5000] and frame["fee_fen"].tolist() == [1299, 50]
    assert frame["txn_time"].tolist() == [utc(2026, 11, 5, 0, 0, 0)] * 2
    bad = write_cod_remittance(remits, tmp_path / f"{carrier}-bad.csv", carrier=carrier,
                               template=policy.cod_templates[carrier], faults=Faults(wrong_totals=True))  # fmt: skip
    with pytest.raises(PaymentFileError) as caught:
        _read(bad, policy)
    assert caught.value.reason == "totals_mismatch"


def test_icbc_card_details_in_the_published_shape_with_padded_cells_and_a_totals_row(policy):
    found, frame = _read(BANK / "icbc-card-details.csv", policy)
    assert found == "bank:icbc_card"
    assert frame["amount_fen"].tolist() == [129900, -1340, 50000]
    assert frame["payer_name"].tolist() == ["重庆两江机电有限公司", "财付通支付科技有限公司", "张三丰"]
    assert frame["txn_time"].tolist() == [utc(2026, 11, 3, 0, 0, 0)] * 2 + [utc(2026, 11, 4, 0, 0, 0)]
    assert set(frame["account"]) == {"6222020200112233445"}  # the export masks the card: the configured one


@pytest.mark.parametrize(("old", "new", "words"), [('"1,799.00', '"1,800.00', "credit"), ('"13.40 ', '"13.41 ', "debit")])
def test_icbc_card_details_whose_totals_row_disagrees_is_refused_for_its_totals(policy, old, new, words):
    text = (BANK / "icbc-card-details.csv").read_text(encoding="utf-8")
    footer_at = text.index("人民币合计")
    assert old in text[footer_at:]
    edited = text[:footer_at] + text[footer_at:].replace(old, new)
    with pytest.raises(PaymentFileError) as caught:
        _read(BANK / "x.csv", policy, edited.encode("utf-8"))
    assert caught.value.reason == "totals_mismatch" and f"totals row {words} total" in caught.value.problem


def test_a_new_carrier_described_only_in_yidi_toml_is_read_without_code(tmp_path):
    policy = _policy_with(tmp_path, """
[settlement.accounts]
cod = { jtexpress = ["JT0230001"] }
[settlement.cod_templates.jtexpress]
carrier_name = "极兔速递"
encoding = "gb18030"
header_row = 2
totals_row_markers = ["总计"]
skip_markers = ["本页小计"]
fee_sign = "negative"
remitted_statuses = ["已打款"]
pending_statuses = ["待打款"]
account_labels = ["商家编号"]
[settlement.cod_templates.jtexpress.columns]
waybill = ["运单编号"]
collected = ["COD金额"]
fee = ["服务费"]
remitted = ["打款金额"]
remit_date = ["打款日期"]
status = ["打款状态"]
""")  # fmt: skip
    export = ("极兔速递 COD 打款明细\n商家编号：JT0230001\n运单编号,COD金额,服务费,打款金额,打款日期,打款状态\n"
              "JT0001,100.00,-1.00,99.00,2026/11/06,已打款\nJT0002,50.00,-0.50,49.50,,待打款\n本页小计,150.00,-1.50,148.50,,\n"
              "JT0003,20.00,-0.20,19.80,2026/11/06,已打款\n总计,170.00,-1.70,168.30,,\n")  # fmt: skip
    found, frame = _read(COD / "jt.csv", policy, export.encode("gbk"))
    assert found == "cod:jtexpress"
    assert frame["waybill_no"].tolist() == ["JT0001", "JT0003"]  # JT0002 not paid back yet
    assert frame["amount_fen"].tolist() == [10000, 2000] and frame["fee_fen"].tolist() == [100, 20]
    assert frame["txn_time"].tolist() == [utc(2026, 11, 6, 0, 0, 0)] * 2
    with pytest.raises(PaymentFileError) as caught:
        _read(COD / "jt.csv", policy, export.replace("总计,170.00", "总计,171.00").encode("gbk"))
    assert caught.value.reason == "totals_mismatch"
