"""Alipay merchant bill (业务明细) parser.

The bill is a zip of GBK csv files (the detail file ``…_业务明细.csv`` and a summary ``…_业务明细(汇总).csv``).
The detail file is::

    #支付宝业务明细查询
    #账号：[20880123456789010156]
    #起始日期：[2026年11月01日 00:00:00]   终止日期：[2026年11月02日 00:00:00]
    #-----------------------------------------业务明细列表----------------------------------------
    支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,…,商家实收（元）,…,服务费（元）,分润（元）,备注
    2026110122001412340000000001\t,YD20261101000001\t,交易,…
    #-----------------------------------------业务明细列表结束------------------------------------
    #交易合计：2笔，商家实收共：300.00元，商家让利共：0.00元
    #退款合计：1笔，商家实收退款共：-50.00元，商家让利退款共：0.00元
    #导出时间：[2026年11月02日 09:12:33]

ID fields end with a tab (Alipay's guard against spreadsheets turning them into numbers): stripped. Refund
rows (业务类型 退款) repeat the trade number with negative amounts and carry 退款批次号/请求号.

Canonical mapping: ``amount_fen`` = 商家实收 (what the merchant is credited, signed), ``fee_fen`` = − 服务费
(the bill prints the fee as a negative number on trades and positive when a refund gives it back),
``txn_time`` = 完成时间 (else 创建时间, Beijing time), ``payer_account`` = 对方账户, ``memo`` = 备注.
The footer totals (count and 商家实收 of trades and of refunds) must equal the rows.
"""

from __future__ import annotations

import io
import re
import zipfile
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
    money_fen,
    normalise_headers,
    normalise_text,
    parse_local_times,
    read_source,
    require_columns,
    sniff_text,
)

SOURCE = "alipay"
COLUMNS = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
]
REQUIRED = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "创建时间",
    "完成时间",
    "商家实收（元）",
    "服务费（元）",
]
DETAIL_START = "业务明细列表"
DETAIL_END = "业务明细列表结束"
TIME_FORMATS = ["%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M"]
KINDS = {"交易": "payment", "退款": "refund"}

_ACCOUNT = re.compile(r"#\s*账号[:：]\s*\[?\s*([0-9A-Za-z]+)")
_PERIOD = re.compile(r"起始日期[:：]\s*\[([^\]]+)\].*?终止日期[:：]\s*\[([^\]]+)\]")
# Footer totals. Alipay prints ``商家实收共0.06元`` (no colon after 共: the form every public parser and test
# fixture shows); a colon is accepted too. Counts and amounts may carry thousands separators.
_TRADES = re.compile(r"交易合计[:：]?\s*([\d,]+)\s*笔\s*[,，]\s*商家实收共\s*[:：]?\s*([-\d,.]+)\s*元")
_REFUNDS = re.compile(r"退款合计[:：]?\s*([\d,]+)\s*笔\s*[,，]\s*商家实收退款共\s*[:：]?\s*([-\d,.]+)\s*元")


def looks_like_alipay(data: bytes, name: str) -> bool:
    """An Alipay bill: a zip that is not an xlsx workbook (a damaged ``.zip`` too: the parser then says what is
    wrong with it), or the bill's detail csv itself (支付宝 in its ``#`` comment lines)."""
    if is_zip(data):
        try:
            members = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except zipfile.BadZipFile:
            return name.lower().endswith(".zip")
        return "[Content_Types].xml" not in members
    head = sniff_text(data)
    return "支付宝" in head and "#" in head


def _zip_member_name(info: zipfile.ZipInfo) -> str:
    # Alipay writes GBK member names without the UTF-8 flag; zipfile then decodes them as cp437.
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("gb18030")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _bill_members(data: bytes, name: str) -> tuple[bytes, bytes | None]:
    """The detail csv and the summary csv (``…_业务明细(汇总).csv``, None when absent) inside the zip, or the
    bytes themselves when a bare csv is given."""
    if not is_zip(data):
        if name.lower().endswith(".zip"):
            raise PaymentFileError(name, "truncated", "not a readable zip archive (cut off or damaged)")
        return data, None
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [i for i in archive.infolist() if _zip_member_name(i).lower().endswith(".csv")]
        details = [i for i in members if "汇总" not in _zip_member_name(i)]
        summaries = [i for i in members if "汇总" in _zip_member_name(i)]
        if len(details) != 1 or len(summaries) > 1:
            raise PaymentFileError(
                name,
                "format",
                f"expected one detail csv (and at most one summary) in the zip, found "
                f"{[_zip_member_name(i) for i in members]}",
            )
        return archive.read(details[0]), (archive.read(summaries[0]) if summaries else None)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise PaymentFileError(
            name, "truncated", f"not a readable zip archive (cut off or damaged: {exc})"
        ) from None


def _detail_bytes(data: bytes, name: str) -> bytes:
    return _bill_members(data, name)[0]


def split_bill(text: str, *, file: str) -> tuple[list[str], list[str], list[str], int]:
    """(header comment lines, csv lines incl. column row, footer comment lines, 0-based line of the column row)."""
    lines = text.splitlines()
    column_row = next((i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")), None)
    if column_row is None:
        raise PaymentFileError(file, "format", "no column row: not an Alipay bill")
    end = next((i for i in range(column_row + 1, len(lines)) if lines[i].startswith("#")), None)
    if end is None:
        raise PaymentFileError(file, "truncated", "the file stops inside the detail list (no footer lines)")
    footer = lines[end:]
    if not any(DETAIL_END in line for line in footer) or not any("交易合计" in line for line in footer):
        raise PaymentFileError(file, "truncated", "the footer lines (明细列表结束, 交易合计) are missing")
    body = [line for line in lines[column_row:end] if line.strip()]
    return lines[:column_row], body, footer, column_row


def parse_alipay_bill(
    source: str | Path | bytes, *, name: str | None = None, accounts: Sequence[str] | None = None
) -> pd.DataFrame:
    """Parse an Alipay 业务明细 bill (zip or its detail csv) into the canonical payments frame.

    ``accounts``: our Alipay accounts; a bill for any other account is refused (None skips the check).
    """
    data, file = read_source(source, name)
    digest = file_hash(data)
    detail, summary_bytes = _bill_members(data, file)
    text, encoding = decode_text(detail, "gbk", file=file)
    summary = decode_text(summary_bytes, "gbk", file=file)[0] if summary_bytes is not None else None
    if "业务汇总" in text[:2000] and "支付宝交易号" not in text:
        raise PaymentFileError(
            file,
            "format",
            "an Alipay summary file (业务明细(汇总): totals per store); the payments are in the detail file "
            "(…_业务明细.csv) of the same zip",
        )
    if "支付宝" not in text[:2000] and "支付宝交易号" not in text:
        raise PaymentFileError(
            file,
            "encoding",
            f"decoded as {encoding} but no Alipay header text found (wrong encoding or not a bill)",
        )
    head, body, footer, column_row = split_bill(text, file=file)
    account_match = next((m for m in map(_ACCOUNT.search, head) if m), None)
    account = check_account(
        account_match.group(1) if account_match else None, accounts, file=file, source=SOURCE
    )

    frame = pd.read_csv(io.StringIO("\n".join(body)), dtype=str, keep_default_na=False)
    frame.columns = normalise_headers(frame.columns)
    require_columns(frame, REQUIRED, file=file, what="Alipay bill")
    ids = {c: frame[c].str.strip() for c in ("支付宝交易号", "商户订单号", "退款批次号/请求号") if c in frame}
    kind_text = frame["业务类型"].str.strip()
    unknown = sorted(set(kind_text) - set(KINDS))
    if unknown:
        raise PaymentFileError(file, "bad_value", f"unknown 业务类型 {unknown}")
    kinds = kind_text.map(KINDS)
    try:
        amount = money_fen(frame[normalise_text("商家实收（元）")], what="商家实收")
        fee = -money_fen(frame[normalise_text("服务费（元）")], blank_as_zero=True, what="服务费")
        done = frame["完成时间"].str.strip()
        when = parse_local_times(done.mask(done == "", frame["创建时间"]), TIME_FORMATS, what="完成时间")
    except BadValues as exc:
        raise PaymentFileError(file, "bad_value", str(exc)) from None

    is_refund = (kinds == "refund").to_numpy()
    footer_text = normalise_text("".join(footer))
    trades, refunds = _TRADES.search(footer_text), _REFUNDS.search(footer_text)
    if trades is None:
        _refuse_unreadable_footer(file, footer, "交易合计")
    check_total(file, "trade count", int(trades.group(1).replace(",", "")), int((~is_refund).sum()), "rows")
    check_total(file, "trade 商家实收 total", _fen(trades.group(2)), int(amount[~is_refund].sum()))
    if refunds is not None:
        check_total(
            file, "refund count", int(refunds.group(1).replace(",", "")), int(is_refund.sum()), "rows"
        )
        check_total(file, "refund 商家实收 total", _fen(refunds.group(2)), int(amount[is_refund].sum()))
    elif any("退款合计" in line for line in footer):
        _refuse_unreadable_footer(file, footer, "退款合计")
    elif is_refund.any():
        raise PaymentFileError(file, "truncated", "refund rows present but footer line 退款合计 is missing")
    if summary is not None:
        _check_summary(file, summary, int((~is_refund).sum()), int(is_refund.sum()), int(amount.sum()))

    trade_no = ids["支付宝交易号"]
    batch = ids.get("退款批次号/请求号", pd.Series([""] * len(frame)))
    line_key = trade_no.where(~is_refund, trade_no + "/refund/" + batch)
    result = canonical_frame(
        {
            "source": np.full(len(frame), SOURCE),
            "file_hash": np.full(len(frame), digest),
            "line_no": np.arange(len(frame)) + column_row + 2,
            "provider_txn_id": trade_no.where(~is_refund, (trade_no + "/" + batch).str.rstrip("/")),
            "line_key": line_key,
            "original_txn_id": trade_no.where(is_refund, pd.NA),
            "merchant_order_no": ids["商户订单号"],
            "kind": kinds,
            "amount_fen": amount,
            "fee_fen": fee,
            "txn_time": when,
            "payer_account": frame.get("对方账户"),
            "memo": frame.get("备注"),
            "account": np.full(len(frame), account),
        },
        len(frame),
    )
    check_unique_lines(result, file=file)
    return result


def bill_period(source: str | Path | bytes) -> tuple[str, str] | None:
    """The bill's stated period (start, end) as printed, for reports; None when absent."""
    data, file = read_source(source)
    text, _ = decode_text(_detail_bytes(data, file), "gbk", file=file)
    match = _PERIOD.search(text[:2000])
    return (match.group(1), match.group(2)) if match else None


def _refuse_unreadable_footer(file: str, footer: list[str], label: str) -> None:
    line = next((x for x in footer if label in x), None)
    if line is None:
        raise PaymentFileError(file, "truncated", f"footer line {label} is missing (the file was cut off)")
    raise PaymentFileError(
        file, "format", f"footer line {label} is not in a form yidi reads: {line.strip()!r}"
    )


SUMMARY_COUNTS = ("交易订单总笔数", "退款订单总笔数")
SUMMARY_AMOUNT = "商家实收（元）"


def _check_summary(file: str, text: str, trades: int, refunds: int, amount_fen: int) -> None:
    """The zip's summary file (per store, then a 合计 row) must agree with the detail rows: trade and refund
    counts and 商家实收 (trades + refunds). A summary without these columns is not checked."""
    lines = [x for x in text.splitlines() if x.strip() and not x.startswith("#")]
    if not lines:
        return
    frame = pd.read_csv(io.StringIO("\n".join(lines)), dtype=str, keep_default_na=False)
    frame.columns = normalise_headers(frame.columns)
    frame = frame.apply(lambda c: c.str.strip())
    wanted = [normalise_text(c) for c in (*SUMMARY_COUNTS, SUMMARY_AMOUNT)]
    if any(c not in frame.columns for c in wanted):
        return
    is_total = frame.apply(lambda row: any(normalise_text(v) == "合计" for v in row.iloc[:2]), axis=1)
    rows = frame[is_total] if is_total.any() else frame
    try:
        stated_trades = int(sum(int(v.replace(",", "") or 0) for v in rows[wanted[0]]))
        stated_refunds = int(sum(int(v.replace(",", "") or 0) for v in rows[wanted[1]]))
        stated_amount = int(money_fen(rows[wanted[2]], what="汇总 商家实收").sum())
    except (BadValues, ValueError):
        raise PaymentFileError(file, "bad_value", "the summary file's 合计 row is not numbers") from None
    check_total(file, "summary 交易订单总笔数", stated_trades, trades, "rows")
    check_total(file, "summary 退款订单总笔数", stated_refunds, refunds, "rows")
    check_total(file, "summary 商家实收 total", stated_amount, amount_fen)


def _fen(text: str) -> int:
    return int(money_fen(pd.Series([text]))[0])
