"""Every outside format against small fixtures in the shape of real published examples
(``tests/data/formats/``; README.md there says where each shape comes from): the right rows and totals,
exact values; a wrong-totals variant of each refused for its totals."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

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
