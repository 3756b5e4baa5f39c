"""Payment-file parsers against their stand-ins and hand-written samples: every format, every fault."""

from __future__ import annotations

import io
import zipfile

import pandas as pd
import pytest

from connectors.payment_files.alipay import parse_alipay_bill
from connectors.payment_files.bank_statement import detect_template, parse_bank_statement
from connectors.payment_files.cod_remittance import parse_cod_remittance
from connectors.payment_files.common import PAYMENT_COLUMNS, PaymentFileError, money_fen
from connectors.payment_files.wechatpay import parse_wechatpay_bill
from demo.standins.payment_files import (
    BANK_LAYOUTS,
    Faults,
    utc,
    write_alipay_bill,
    write_bank_statement,
    write_cod_remittance,
    write_wechatpay_bill,
)
from yidi.settings import load_settings


@pytest.fixture
def policy():
    return load_settings().settlement


@pytest.fixture
def payments():
    return pd.DataFrame(
        {
            "merchant_order_no": ["YD20261101000001", "YD20261101000002", "YD20261101000001"],
            "kind": ["payment", "payment", "refund"],
            "amount_fen": [123456, 99900, -50000],
            "txn_time": [utc(2026, 11, 1, 10, 0, 0), utc(2026, 11, 1, 11, 30, 0), utc(2026, 11, 1, 15, 0, 0)],
            "payer_name": ["张三丰", "重庆两江机电有限公司", "张三丰"],
            "memo": ["货款", "订单 YD20261101000002", ""],
        }
    )


def _bank_lines(payments):
    return payments.assign(
        kind=["credit", "credit", "debit"], payer_account=["6222021", "4400123", "6222021"]
    )


# ----------------------------------------------------------------------------------------- money parsing


def test_money_parses_separators_full_width_signs_and_refuses_garbage():
    values = pd.Series(
        ["1,234.56", "１，２３４．５６", "¥-12.3", "(7.00)", " 0.05 ", "12", "1 234.00元", "－８"]
    )
    assert money_fen(values).tolist() == [123456, 123456, -1230, -700, 5, 1200, 123400, -800]
    with pytest.raises(ValueError, match="row 2"):
        money_fen(pd.Series(["1.00", "1.234"]))
    with pytest.raises(ValueError):
        money_fen(pd.Series(["abc"]))


# ----------------------------------------------------------------------------------------------- Alipay


def test_alipay_bill_round_trip(tmp_path, policy, payments):
    path = write_alipay_bill(payments, tmp_path / "alipay.zip")
    frame = parse_alipay_bill(path, accounts=policy.accounts.alipay)
    assert list(frame.columns) == PAYMENT_COLUMNS
    assert frame["kind"].tolist() == ["payment", "payment", "refund"]
    assert frame["amount_fen"].tolist() == [123456, 99900, -50000]
    assert frame["fee_fen"].tolist() == [741, 599, -300]  # 0.6% half up; the refund gives its fee back
    assert frame["merchant_order_no"].tolist() == payments["merchant_order_no"].tolist()
    # ids had a trailing tab in the file; the refund keeps the trade number as its original
    assert not frame["provider_txn_id"].str.contains("\t").any()
    assert frame.loc[2, "original_txn_id"] == frame.loc[0, "provider_txn_id"]
    assert frame["line_key"].is_unique
    assert str(frame["txn_time"].dt.tz) == "UTC"
    assert frame.loc[0, "txn_time"] == pd.Timestamp("2026-11-01 02:00:00", tz="UTC")  # 10:00 Beijing
    assert frame["source"].unique().tolist() == ["alipay"]
    assert frame["account"].unique().tolist() == ["20880123456789010156"]
    # the zip really is GBK csv with '#' lines, as Alipay delivers it
    member = zipfile.ZipFile(path).read(zipfile.ZipFile(path).namelist()[0])
    assert member.decode("gbk").startswith("#支付宝业务明细查询")


ALIPAY_SAMPLE = (
    "#支付宝业务明细查询\n"
    "#账号：[20880123456789010156]\n"
    "#起始日期：[2026年11月01日 00:00:00]   终止日期：[2026年11月02日 00:00:00]\n"
    "#-----------------------------------------业务明细列表----------------------------------------\n"
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
    "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
    "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注\n"
    "2026110122001400000000000001\t,YD1\t,交易,货款,2026-11-01 09:00:01,2026-11-01 09:00:05,,,,,a***@163.com,"
    '"1,000.00","1,000.00",0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-6.00,0.00,\n'
    "2026110122001400000000000001\t,YD1\t,退款,货款,2026-11-01 12:00:00,2026-11-01 12:00:01,,,,,a***@163.com,"
    "-100.00,-100.00,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,2026110100001\t,0.60,0.00,部分退款\n"
    "#-----------------------------------------业务明细列表结束------------------------------------\n"
    "#交易合计：1笔，商家实收共：1,000.00元，商家让利共：0.00元\n"
    "#退款合计：1笔，商家实收退款共：-100.00元，商家让利退款共：0.00元\n"
    "#导出时间：[2026年11月02日 09:12:33]\n"
)


def test_alipay_hand_written_sample_zip_with_gbk_member_name(policy):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # Alipay stores GBK member names without the UTF-8 flag
        info = zipfile.ZipInfo("20880123456789010156_20261101_业务明细.csv".encode("gbk").decode("cp437"))
        archive.writestr(info, ALIPAY_SAMPLE.encode("gbk"))
    frame = parse_alipay_bill(buffer.getvalue(), name="bill.zip", accounts=policy.accounts.alipay)
    assert frame["amount_fen"].tolist() == [100000, -10000]
    assert frame["fee_fen"].tolist() == [600, -60]
    assert frame.loc[1, "line_key"] == "2026110122001400000000000001/refund/2026110100001"
    assert frame.loc[1, "memo"] == "部分退款"


def test_alipay_bare_csv_accepted(tmp_path, policy, payments):
    path = write_alipay_bill(payments, tmp_path / "alipay.csv", zipped=False)
    assert len(parse_alipay_bill(path, accounts=policy.accounts.alipay)) == 3


@pytest.mark.parametrize(
    ("faults", "reason", "words"),
    [
        (Faults(wrong_totals=True), "totals_mismatch", "trade 商家实收 total"),
        (Faults(truncate=True), "truncated", "zip"),
        (Faults(other_account="20889999999999990156"), "other_account", "20889999999999990156"),
        (Faults(encoding="utf-16"), "encoding", "UTF-16"),
        (Faults(encoding="big5"), "encoding", "no Alipay header"),
        (Faults(encoding="mojibake"), "encoding", "no Alipay header"),
        (Faults(repeated_lines=1), "duplicate_line", "appears 2 times"),
    ],
)
def test_alipay_faults_reject_the_whole_file(tmp_path, policy, payments, faults, reason, words):
    path = write_alipay_bill(payments, tmp_path / "bad.zip", faults=faults)
    with pytest.raises(PaymentFileError) as caught:
        parse_alipay_bill(path, accounts=policy.accounts.alipay)
    assert caught.value.reason == reason
    assert "bad.zip" in str(caught.value) and words in str(caught.value)


def test_alipay_truncated_bare_csv(tmp_path, policy, payments):
    path = write_alipay_bill(payments, tmp_path / "cut.csv", zipped=False, faults=Faults(truncate=True))
    with pytest.raises(PaymentFileError, match="cut.csv.*truncated"):
        parse_alipay_bill(path, accounts=policy.accounts.alipay)


def test_alipay_separators_and_full_width_amounts(tmp_path, policy, payments):
    for faults in (Faults(thousands_separators=True), Faults(full_width=True)):
        path = write_alipay_bill(payments, tmp_path / "fmt.zip", faults=faults)
        assert parse_alipay_bill(path, accounts=policy.accounts.alipay)["amount_fen"].tolist() == [
            123456,
            99900,
            -50000,
        ]


def test_duplicate_payment_fault_is_valid_file_with_two_payments(tmp_path, policy, payments):
    path = write_alipay_bill(payments, tmp_path / "dup.zip", faults=Faults(duplicate_payments=1))
    frame = parse_alipay_bill(path, accounts=policy.accounts.alipay)
    paid = frame[frame["merchant_order_no"] == "YD20261101000001"]
    assert (paid["kind"] == "payment").sum() == 2 and paid["provider_txn_id"].nunique() == 3


# ----------------------------------------------------------------------------------------------- WeChat


def test_wechat_all_bill_round_trip(tmp_path, policy, payments):
    path = write_wechatpay_bill(payments, tmp_path / "wx.csv")
    assert path.read_text(encoding="utf-8").splitlines()[1].startswith("`2026-11-01 10:00:00,`wx")
    frame = parse_wechatpay_bill(path, accounts=policy.accounts.wechatpay)
    assert frame["kind"].tolist() == ["payment", "payment", "refund"]
    assert frame["amount_fen"].tolist() == [123456, 99900, -50000]
    assert frame["fee_fen"].tolist() == [741, 599, -300]
    assert frame.loc[2, "original_txn_id"] == frame.loc[0, "provider_txn_id"]
    assert frame.loc[2, "line_key"].startswith("refund/")
    assert frame["account"].unique().tolist() == ["1900012345"]


def test_wechat_success_bill_has_no_refund_columns(tmp_path, policy, payments):
    path = write_wechatpay_bill(payments, tmp_path / "wx.csv", bill_type="SUCCESS")
    assert "退款金额" not in path.read_text(encoding="utf-8").splitlines()[0]
    frame = parse_wechatpay_bill(path, accounts=policy.accounts.wechatpay)
    assert frame["kind"].tolist() == ["payment", "payment"]


WECHAT_SAMPLE = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
    "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,"
    "商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\n"
    "`2026-11-01 16:33:45,`wx2421b1c4370ec43b,`1900012345,`0,`1000,`4200000000202611010000000001,`YD9,"
    "`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`SUCCESS,`CMB_CREDIT,`CNY,`88.00,`0.00,`0,`0,`0.00,`0.00,`,`,"
    "`办公椅,`,`0.52800,`0.60%,`88.00,`0.00,`\n"
    "`2026-11-01 16:40:00,`wx2421b1c4370ec43b,`1900012345,`0,`1000,`4200000000202611010000000002,`YD8,"
    "`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`REVOKED,`CMB_CREDIT,`CNY,`0.00,`0.00,`0,`0,`0.00,`0.00,`,`,"
    "`办公椅,`,`0.00000,`0.60%,`0.00,`0.00,`\n"
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n"
    "`2,`88.00,`0.00,`0.00,`0.52800,`88.00,`0.00\n"
)


def test_wechat_hand_written_sample(policy):
    frame = parse_wechatpay_bill(WECHAT_SAMPLE.encode(), name="wx.csv", accounts=policy.accounts.wechatpay)
    assert frame["amount_fen"].tolist() == [8800]  # the REVOKED row moves no money
    assert frame["fee_fen"].tolist() == [53]  # 0.528 yuan rounds half up to 53 fen


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        (Faults(wrong_totals=True), "totals_mismatch"),
        (Faults(truncate=True), "truncated"),
        (Faults(other_account="1999999999"), "other_account"),
        (Faults(encoding="utf-16"), "encoding"),
        (Faults(encoding="mojibake"), "encoding"),
        (Faults(repeated_lines=1), "duplicate_line"),
    ],
)
def test_wechat_faults_reject_the_whole_file(tmp_path, policy, payments, faults, reason):
    path = write_wechatpay_bill(payments, tmp_path / "wx-bad.csv", faults=faults)
    with pytest.raises(PaymentFileError) as caught:
        parse_wechatpay_bill(path, accounts=policy.accounts.wechatpay)
    assert caught.value.reason == reason and "wx-bad.csv" in str(caught.value)


def test_wechat_bill_resaved_as_gbk_still_reads(tmp_path, policy, payments):
    path = write_wechatpay_bill(payments, tmp_path / "wx.csv", faults=Faults(encoding="gbk"))
    assert len(parse_wechatpay_bill(path, accounts=policy.accounts.wechatpay)) == 3


def test_wechat_full_width_and_separators(tmp_path, policy, payments):
    path = write_wechatpay_bill(
        payments, tmp_path / "wx.csv", faults=Faults(full_width=True, thousands_separators=True)
    )
    assert parse_wechatpay_bill(path, accounts=policy.accounts.wechatpay)["amount_fen"].tolist() == [
        123456,
        99900,
        -50000,
    ]


# ------------------------------------------------------------------------------------------------- banks


@pytest.mark.parametrize("key", sorted(BANK_LAYOUTS))
def test_bank_statement_round_trip_per_template(tmp_path, policy, payments, key):
    path = write_bank_statement(
        _bank_lines(payments), tmp_path / f"stmt{BANK_LAYOUTS[key][1]}", template_key=key
    )
    frame = parse_bank_statement(
        path, policy.bank_templates[key], template_key=key, accounts=policy.accounts.bank[key]
    )
    assert frame["source"].unique().tolist() == [f"bank:{key}"]
    assert frame["kind"].tolist() == ["credit", "credit", "debit"]
    assert frame["amount_fen"].tolist() == [123456, 99900, -50000]
    assert frame["payer_name"].tolist() == ["张三丰", "重庆两江机电有限公司", "张三丰"]
    assert frame["payer_account"].tolist() == ["6222021", "4400123", "6222021"]
    assert frame["memo"].str.contains("YD20261101000002").tolist() == [False, True, False]
    assert frame.loc[1, "txn_time"] == pd.Timestamp("2026-11-01 03:30:00", tz="UTC")
    assert frame["provider_txn_id"].notna().all() and frame["line_key"].is_unique
    assert detect_template(path, policy.bank_templates) == key


ICBC_SAMPLE = (
    "中国工商银行企业网上银行 账户明细\n"
    "账号,3100021109024123456\n"
    "户名,重庆示例实业有限公司\n"
    "币种,人民币\n"
    "起止日期,2026-11-01至2026-11-01\n"
    "凭证号,本方账号,对方账号,交易时间,借/贷,借方发生额,贷方发生额,对方行号,摘要,用途,对方单位名称,余额,个性化信息\n"
    '0001,3100021109024123456,4400123,2026-11-01 09:15:00,贷,,"12,000.00",105,汇入汇款,YD7 YD8 货款,'
    '成都蓉城电气有限公司,"512,000.00",\n'
    '0002,3100021109024123456,6222,2026-11-01 17:00:00,借,350.00,,102,转账支出,运费,重庆快运,"511,650.00",\n'
    '借方发生额合计,350.00,贷方发生额合计,"12,000.00"\n'
    "交易笔数,2\n"
)


def test_icbc_hand_written_sample(policy):
    frame = parse_bank_statement(
        ICBC_SAMPLE.encode("gbk"),
        policy.bank_templates["icbc"],
        template_key="icbc",
        name="icbc.csv",
        accounts=policy.accounts.bank["icbc"],
    )
    assert frame["amount_fen"].tolist() == [1200000, -35000]
    assert frame.loc[0, "memo"] == "汇入汇款 YD7 YD8 货款"
    assert frame.loc[0, "provider_txn_id"] == "0001"


def test_bank_template_without_serial_gets_stable_occurrence_keys(policy):
    template = policy.bank_templates["icbc"].model_copy(deep=True)
    template.columns.txn_id = []
    twice = ICBC_SAMPLE.replace("交易笔数,2", "交易笔数,3").replace(
        "借方发生额合计,350.00", "借方发生额合计,700.00"
    )
    lines = twice.splitlines()
    twice = "\n".join(lines[:8] + [lines[7]] + lines[8:]) + "\n"  # the same 350.00 transfer twice that day
    frame = parse_bank_statement(twice.encode("gbk"), template, template_key="icbc", name="x.csv")
    assert frame["line_key"].is_unique
    assert frame["line_key"].str.endswith(("#1", "#2")).all()
    again = parse_bank_statement(twice.encode("gbk"), template, template_key="icbc", name="x.csv")
    assert again["line_key"].tolist() == frame["line_key"].tolist()


@pytest.mark.parametrize("key", sorted(BANK_LAYOUTS))
@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        (Faults(wrong_totals=True), "totals_mismatch"),
        (Faults(truncate=True), "truncated"),
        (Faults(other_account="6228480000000000000"), "other_account"),
    ],
)
def test_bank_faults_reject_the_whole_file(tmp_path, policy, payments, key, faults, reason):
    path = write_bank_statement(
        _bank_lines(payments), tmp_path / f"bank-bad{BANK_LAYOUTS[key][1]}", template_key=key, faults=faults
    )
    with pytest.raises(PaymentFileError) as caught:
        parse_bank_statement(
            path, policy.bank_templates[key], template_key=key, accounts=policy.accounts.bank[key]
        )
    assert caught.value.reason == reason and "bank-bad" in str(caught.value)


@pytest.mark.parametrize("key", ["icbc", "cqrcb"])
def test_bank_wrong_encoding_and_formats(tmp_path, policy, payments, key):
    lines = _bank_lines(payments)
    path = write_bank_statement(lines, tmp_path / "enc.csv", template_key=key, faults=Faults(encoding="big5"))
    with pytest.raises(PaymentFileError) as caught:
        parse_bank_statement(
            path, policy.bank_templates[key], template_key=key, accounts=policy.accounts.bank[key]
        )
    # The encoding policy: strict UTF-8, else strict GB18030. Big5 bytes that happen to be valid GB18030 decode to
    # the wrong characters, so the template's headers are not found (format); bytes that are not, are refused as such.
    try:
        path.read_bytes().decode("gb18030")
        expected = "format"
    except UnicodeDecodeError:
        expected = "encoding"
    assert (caught.value.reason, "enc.csv" in str(caught.value)) == (expected, True)
    path = write_bank_statement(
        lines,
        tmp_path / "fw.csv",
        template_key=key,
        faults=Faults(full_width=True, thousands_separators=True),
    )
    frame = parse_bank_statement(
        path, policy.bank_templates[key], template_key=key, accounts=policy.accounts.bank[key]
    )
    assert frame["amount_fen"].tolist() == [123456, 99900, -50000]


def test_bank_template_validation_names_the_problem():
    from pydantic import ValidationError

    from yidi.settlement_policy import BankTemplate

    with pytest.raises(ValidationError, match="needs columns.amount and columns.direction"):
        BankTemplate(bank_name="x", amount_convention="signed_amount_with_flag", columns={"date": "日期"})
    with pytest.raises(ValidationError, match="exactly one capturing group"):
        BankTemplate(
            bank_name="x", amount_convention="signed_amount", columns={"date": "日期", "amount": "金额"},
            count_pattern="笔数",
        )  # fmt: skip


# --------------------------------------------------------------------------------------------------- COD


@pytest.mark.parametrize("xlsx", [False, True])
def test_cod_remittance_round_trip(tmp_path, policy, xlsx):
    remits = pd.DataFrame(
        {
            "waybill_no": ["SF1400000000001", "SF1400000000002"],
            "merchant_order_no": ["YD1", "YD2"],
            "amount_fen": [129900, 5000],
            "txn_time": [utc(2026, 11, 5, 0, 0, 0)] * 2,
            "payer_name": ["张**", "李**"],
            "signed_at": [utc(2026, 11, 3, 15, 0, 0)] * 2,
        }
    )
    path = write_cod_remittance(remits, tmp_path / ("cod.xlsx" if xlsx else "cod.csv"), xlsx=xlsx)
    frame = parse_cod_remittance(
        path, policy.cod_templates["shunfeng"], template_key="shunfeng", accounts=policy.accounts.cod["shunfeng"]
    )
    assert frame["source"].unique().tolist() == ["cod:shunfeng"]
    assert frame["kind"].unique().tolist() == ["cod"]
    assert frame["amount_fen"].tolist() == [129900, 5000] and frame["fee_fen"].tolist() == [1299, 50]
    assert frame["waybill_no"].tolist() == ["SF1400000000001", "SF1400000000002"]
    assert frame.loc[0, "txn_time"] == pd.Timestamp("2026-11-04 16:00:00", tz="UTC")


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        (Faults(wrong_totals=True), "totals_mismatch"),
        (Faults(truncate=True), "truncated"),
        (Faults(other_account="0239999999"), "other_account"),
        (Faults(encoding="big5"), "encoding"),
        (Faults(repeated_lines=1), "duplicate_line"),
    ],
)
def test_cod_faults_reject_the_whole_file(tmp_path, policy, faults, reason):
    remits = pd.DataFrame(
        {
            "waybill_no": ["SF1", "SF2"],
            "amount_fen": [1000, 2000],
            "txn_time": [utc(2026, 11, 5, 0, 0, 0)] * 2,
        }
    )
    path = write_cod_remittance(remits, tmp_path / "cod-bad.csv", faults=faults)
    with pytest.raises(PaymentFileError) as caught:
        parse_cod_remittance(
        path, policy.cod_templates["shunfeng"], template_key="shunfeng", accounts=policy.accounts.cod["shunfeng"]
    )
    assert caught.value.reason == reason and "cod-bad.csv" in str(caught.value)


def test_cod_row_arithmetic_checked(policy):
    text = (
        "顺丰速运 代收货款回款明细\n月结卡号,0230012345\n回款批次号,HK1\n回款日期,2026-11-05\n"
        "运单号,客户订单号,收件人,代收金额（元）,手续费（元）,回款金额（元）,签收日期,回款日期,备注\n"
        "SF1,YD1,,100.00,1.00,98.00,,2026-11-05,\n合计,,,100.00,1.00,98.00,,,\n笔数,1\n"
    )
    with pytest.raises(PaymentFileError, match="remitted ≠ collected − fee"):
        parse_cod_remittance(text.encode("gbk"), policy.cod_templates["shunfeng"], template_key="shunfeng",
                             name="c.csv", accounts=policy.accounts.cod["shunfeng"])  # fmt: skip


def test_policy_file_errors_name_the_settlement_key(tmp_path):
    from yidi.settings import SettingsError

    bad = tmp_path / "yidi.toml"
    bad.write_text(
        "[settlement.bank_templates.icbc]\ncount_pattern = '笔数(\\\\d+)(\\\\d)'\n"
        "[settlement.case_owners]\nshort_payd = 'x@example.com'\n",
        encoding="utf-8",
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(bad)
    message = str(caught.value)
    assert "settlement.bank_templates.icbc.count_pattern" in message and "exactly one capturing group" in message
    assert "settlement.case_owners" in message and "short_payd" in message
    # an operator adds a bank without touching code: a template in the policy file is enough
    extra = tmp_path / "bank.toml"
    extra.write_text(
        "[settlement.bank_templates.boc]\nbank_name = '中国银行'\namount_convention = 'signed_amount'\n"
        "[settlement.bank_templates.boc.columns]\ndate = ['交易日期']\namount = ['交易金额']\n"
        "[settlement.accounts.bank]\nboc = ['1234567890']\n",
        encoding="utf-8",
    )
    policy = load_settings(extra).settlement
    assert policy.bank_templates["boc"].columns.amount == ["交易金额"]
    assert policy.accounts.for_source("bank:boc") == ["1234567890"]
    assert set(policy.bank_templates) >= {"icbc", "cmb", "cqrcb", "boc"}
    statement = (
        "中国银行 交易明细\n账号：1234567890\n交易日期,交易金额,对方户名,摘要\n"
        "2026-11-01,\"5,000.00\",成都蓉城电气,货款\n2026-11-01,-120.00,中国银行,账户管理费\n合计,4880.00\n"
    ).encode("gbk")
    frame = parse_bank_statement(
        statement, policy.bank_templates["boc"], template_key="boc", name="boc.csv",
        accounts=policy.accounts.bank["boc"],
    )  # fmt: skip
    assert frame["amount_fen"].tolist() == [500000, -12000] and frame["kind"].tolist() == ["credit", "debit"]
    assert frame["source"].unique().tolist() == ["bank:boc"] and frame["line_key"].is_unique


# ----------------------------------------------------------------------------------------- the registry


def test_the_registry_recognises_each_format_and_reads_the_inbox_folders(tmp_path, policy, payments):
    from pathlib import Path

    from connectors.payment_files import FORMATS, detect_source, is_source, read_payment_file, source_hint

    assert list(FORMATS) == ["alipay", "wechatpay", "cod", "bank"]  # bills, then remittances, then any bank
    files = {
        "alipay": write_alipay_bill(payments, tmp_path / "a.zip"),
        "wechatpay": write_wechatpay_bill(payments, tmp_path / "w.csv"),
        "bank:icbc": write_bank_statement(_bank_lines(payments), tmp_path / "b.csv", template_key="icbc"),
    }
    for source, path in files.items():
        assert detect_source(path.read_bytes(), path.name, policy) == source
    found, frame = read_payment_file(files["alipay"].read_bytes(), "a.zip", policy, wanted="alipay")
    assert found == "alipay" and len(frame) == 3
    with pytest.raises(PaymentFileError) as refused:
        read_payment_file(files["alipay"].read_bytes(), "a.zip", policy, wanted="wechatpay")
    assert refused.value.reason == "format"
    with pytest.raises(PaymentFileError) as unknown:
        detect_source("名称,数量\n螺丝,3\n".encode("gbk"), "list.csv", policy)
    assert unknown.value.reason == "format"
    assert source_hint(Path("inbox/bank-icbc/x.csv"), None) == "bank:icbc"
    assert source_hint(Path("inbox/cod_shunfeng/x.csv"), None) == "cod:shunfeng"
    assert source_hint(Path("elsewhere/x.csv"), "alipay") == "alipay"
    assert source_hint(Path("elsewhere/x.csv"), "bank") is None  # 'bank' names no template: the content decides
    assert is_source("bank:icbc", "bank") and is_source("alipay", None) and not is_source("bank:icbc", "cod")
