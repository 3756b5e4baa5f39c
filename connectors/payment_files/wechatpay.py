"""WeChat Pay transaction bill (交易账单) parser.

UTF-8 csv; every value is prefixed with a backtick (WeChat's guard against spreadsheets reformatting ids).
The ALL bill has these columns (the SUCCESS bill omits the refund columns 微信退款单号 … 退款状态)::

    交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,
    货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,
    商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注

followed by a summary header row and one row of values::

    总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额

Our reading (the published description does not spell every case out): a SUCCESS row is a payment of
应结订单金额; a REFUND row is a refund of 退款金额 (its 应结订单金额 and 订单金额 are 0.00) whose 手续费 is the
fee given back (negative); REVOKED/CLOSED rows move no money. Each summary total is the plain sum of its
column over all rows, and 总交易单数 counts all rows. 手续费 carries up to 5 decimals: compared exactly in
the totals, rounded half away from zero to fen per row.

The merchant is 特约商户号 when it is set (service-provider mode), else 商户号; every row must be ours.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from connectors.payment_files.common import (
    BadValues,
    PaymentFileError,
    canonical_frame,
    check_account,
    check_total,
    check_unique_lines,
    decode_text,
    file_hash,
    is_zip,
    money_units,
    normalise_headers,
    parse_local_times,
    read_source,
    require_columns,
    sniff_text,
)
from yidi.money import round_units_to_fen

SOURCE = "wechatpay"
SUCCESS_COLUMNS = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "费率备注",
]
REFUND_COLUMNS = ["微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态"]
ALL_COLUMNS = SUCCESS_COLUMNS[:14] + REFUND_COLUMNS + SUCCESS_COLUMNS[14:19] + ["申请退款金额", "费率备注"]
SUMMARY_COLUMNS = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
]
# summary column -> the detail column it totals
SUMMARY_OF = {
    "应结订单总金额": "应结订单金额",
    "退款总金额": "退款金额",
    "充值券退款总金额": "充值券退款金额",
    "手续费总金额": "手续费",
    "订单总金额": "订单金额",
    "申请退款总金额": "申请退款金额",
}
# The bill as the 2015 downloadbill documentation named its columns (early SDKs model it: 子商户号, 总金额,
# 代金券或立减优惠金额; summary 总交易额, 总退款金额): read as today's names.
LEGACY_COLUMNS = {
    "子商户号": "特约商户号",
    "总金额": "应结订单金额",
    "代金券或立减优惠金额": "代金券金额",
    "代金券或立减优惠退款金额": "充值券退款金额",
}
LEGACY_SUMMARY = {
    "总交易额": "应结订单总金额",
    "总退款金额": "退款总金额",
    "总代金券或立减优惠退款金额": "充值券退款总金额",
}
REQUIRED = ["交易时间", "商户号", "微信订单号", "商户订单号", "交易状态", "应结订单金额", "手续费"]
FEE_DECIMALS = 5
NO_MONEY_STATES = {"REVOKED", "CLOSED", "NOTPAY", "PAYERROR"}


def looks_like_wechatpay(data: bytes) -> bool:
    """A WeChat Pay bill: a text file whose header names 微信订单号 and 交易时间."""
    if is_zip(data):
        return False
    head = sniff_text(data)
    return "微信订单号" in head and "交易时间" in head


def _unbacktick(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.apply(lambda column: column.str.strip().str.removeprefix("`").str.strip())


def parse_wechatpay_bill(
    source: str | Path | bytes, *, name: str | None = None, accounts: Sequence[str] | None = None
) -> pd.DataFrame:
    """Parse a WeChat Pay ALL or SUCCESS bill into the canonical payments frame.

    ``accounts``: our merchant numbers; a bill for another merchant is refused (None skips the check).
    """
    data, file = read_source(source, name)
    digest = file_hash(data)
    # WeChat publishes UTF-8; a bill re-saved by a spreadsheet as GBK still reads (the header test below
    # catches text that decodes but is not Chinese any more).
    text, encoding = decode_text(data, "gbk", file=file)
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or "交易时间" not in lines[0] or "微信订单号" not in lines[0]:
        readable = bool(lines) and any("\u4e00" <= ch <= "\u9fff" for ch in lines[0])
        raise PaymentFileError(
            file,
            "format" if readable else "encoding",
            f"the first line is not the WeChat Pay bill header (decoded as {encoding}"
            + ("" if readable else "; no readable Chinese: wrong encoding")
            + ")",
        )
    summary_at = next(
        (i for i, line in enumerate(lines) if line.lstrip('`"').startswith("总交易单数")), None
    )
    if summary_at is None or summary_at + 1 >= len(lines):
        raise PaymentFileError(file, "truncated", "the summary rows (总交易单数 …) at the end are missing")
    frame = pd.read_csv(io.StringIO("\n".join(lines[:summary_at])), dtype=str, keep_default_na=False)
    frame.columns = normalise_headers(frame.columns)
    frame = _unbacktick(frame).rename(columns=LEGACY_COLUMNS)
    require_columns(frame, REQUIRED, file=file, what="WeChat Pay bill")
    summary = pd.read_csv(io.StringIO("\n".join(lines[summary_at : summary_at + 2])), dtype=str)
    summary.columns = normalise_headers(summary.columns)
    summary = _unbacktick(summary).rename(columns=LEGACY_SUMMARY)
    if len(summary) != 1 or "总交易单数" not in summary:
        raise PaymentFileError(file, "truncated", "the summary values row is missing")
    has_refunds = "退款金额" in frame

    merchant = frame["商户号"]
    if "特约商户号" in frame:
        sub = frame["特约商户号"]
        merchant = sub.where(~sub.isin(["", "0"]), merchant)
    merchants = sorted(set(merchant))
    if len(merchants) > 1:
        raise PaymentFileError(file, "other_account", f"rows for several merchants {merchants}")
    if not merchants and accounts is not None and len(accounts) == 1:
        # a day without transactions: rows are what name the merchant, so an empty bill is ours when we have one
        account = accounts[0]
    else:
        account = check_account(merchants[0] if merchants else None, accounts, file=file, source=SOURCE)

    try:
        units = {}
        for detail in SUMMARY_OF.values():
            if detail in frame:
                decimals = FEE_DECIMALS if detail == "手续费" else 2
                units[detail] = money_units(frame[detail], decimals=decimals, blank_as_zero=True, what=detail)
        when = parse_local_times(
            frame["交易时间"], ["%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S"], what="交易时间"
        )
        stated = summary.iloc[0]
        check_total(file, "总交易单数", int(stated["总交易单数"].replace(",", "")), len(frame), "rows")
        for total, detail in SUMMARY_OF.items():
            if total in stated.index and detail in units:
                decimals = FEE_DECIMALS if detail == "手续费" else 2
                value = int(money_units(pd.Series([stated[total]]), decimals=decimals)[0])
                check_total(file, total, value, int(units[detail].sum()), f"1e-{decimals} yuan")
    except BadValues as exc:
        raise PaymentFileError(file, "bad_value", str(exc)) from None

    status = frame["交易状态"].str.upper()
    unknown = sorted(set(status) - {"SUCCESS", "REFUND"} - NO_MONEY_STATES)
    if unknown:
        raise PaymentFileError(file, "bad_value", f"unknown 交易状态 {unknown}")
    if (status == "REFUND").any() and not has_refunds:
        raise PaymentFileError(file, "format", "REFUND rows in a bill without the refund columns")
    keep = status.isin(["SUCCESS", "REFUND"]).to_numpy()
    is_refund = (status == "REFUND").to_numpy()
    refund_fen = units.get("退款金额", np.zeros(len(frame), dtype="int64"))
    amount = np.where(is_refund, -refund_fen, units["应结订单金额"])
    fee = round_units_to_fen(units["手续费"], FEE_DECIMALS)
    trade_no = frame["微信订单号"]
    refund_no = frame["微信退款单号"] if has_refunds else pd.Series([""] * len(frame))
    result = canonical_frame(
        {
            "source": np.full(len(frame), SOURCE),
            "file_hash": np.full(len(frame), digest),
            "line_no": np.arange(len(frame)) + 2,
            "provider_txn_id": trade_no.where(~is_refund, refund_no),
            "line_key": trade_no.where(~is_refund, "refund/" + refund_no),
            "original_txn_id": trade_no.where(is_refund, pd.NA),
            "merchant_order_no": frame["商户订单号"],
            "kind": np.where(is_refund, "refund", "payment"),
            "amount_fen": amount,
            "fee_fen": fee,
            "txn_time": when,
            "payer_account": frame.get("用户标识"),
            "memo": frame.get("商户数据包"),
            "account": np.full(len(frame), account),
        },
        len(frame),
    )
    result = result[keep].reset_index(drop=True)
    if (
        has_refunds
        and (result["kind"] == "refund").any()
        and result.loc[result["kind"] == "refund", "provider_txn_id"].isna().any()
    ):
        raise PaymentFileError(file, "bad_value", "a REFUND row without 微信退款单号")
    check_unique_lines(result, file=file)
    return result
