"""Longer than 600 lines because it writes all four payment-file formats (each with its faults) mirroring the
four parsers, on shared fault helpers; the demo day that uses them is in ``demo/settlement.py``.

Stand-ins for the money side: deterministic generators of Alipay bills, WeChat Pay bills, bank statements
(per template: ICBC csv, CMB xlsx, CQRCB txt) and carrier COD remittance files, written exactly in the formats
the parsers read (GBK where the real file is GBK), with fault options for tests and the demo.

Input is a payments DataFrame in the canonical vocabulary (see ``connectors.payment_files.common``):
``merchant_order_no``, ``kind``, ``amount_fen`` (signed), ``txn_time`` (aware) and optionally
``provider_txn_id``, ``original_txn_id`` (refunds), ``fee_fen``, ``payer_name``, ``payer_account``, ``memo``,
``waybill_no``, ``item_name``, ``signed_at`` (COD). Missing ids are derived from a hash of the row, so the same
input always writes the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from yidi.money import yuan_text
from yidi.settlement_policy import BankTemplate, CodTemplate

BUSINESS_TZ = ZoneInfo("Asia/Shanghai")
COMPANY = "重庆示例实业有限公司"
DEFAULT_ACCOUNTS = {
    "alipay": "20880123456789010156",
    "wechatpay": "1900012345",
    "bank:icbc": "3100021109024123456",
    "bank:cmb": "123908765432101",
    "bank:cqrcb": "0101012000123456",
    "cod:shunfeng": "0230012345",
    "cod:jd": "028JD12345",
    "cod:ems": "50001234567",
    "cod:debangwuliu": "DB0230012345",
    "cod:zhongtong": "ZTO5000123",
    "cod:yuantong": "YTO5000123",
    "cod:yunda": "YD50001234",
    "cod:shentong": "STO5000123",
}
FULL_WIDTH = str.maketrans("0123456789,.-", "０１２３４５６７８９，．－")


@dataclass(frozen=True)
class Faults:
    """What can go wrong with a delivered file (all off by default)."""

    repeated_lines: int = 0  # the first N lines appear twice, totals include them (a corrupt export)
    duplicate_payments: int = 0  # N customers paid twice: extra lines with their own ids (totals consistent)
    wrong_totals: bool = False  # footer totals off by one yuan
    truncate: bool = False  # the file is cut off in the middle of the data
    other_account: str | None = None  # the header names this account instead of ours
    encoding: str | None = None  # written in this encoding instead of the format's own ("mojibake": GBK read
    # as Latin-1 and saved as UTF-8)
    thousands_separators: bool = False  # 1,234.56
    full_width: bool = False  # １２３４．５６


def _s(value) -> str:
    """Text of a cell, '' for None/NaN/NA."""
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def stable_digits(*parts, n: int) -> str:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    return str(int(digest, 16))[:n].rjust(n, "0")


def _local(ts) -> datetime:
    return pd.Timestamp(ts).tz_convert(BUSINESS_TZ).to_pydatetime()


def bill_yuan(fen: int, faults: Faults = Faults(), *, decimals: int = 2) -> str:
    """Fen as the bill prints it (``decimals`` places), with the requested formatting faults."""
    text = yuan_text(fen, grouping=faults.thousands_separators) + "0" * (decimals - 2)
    return text.translate(FULL_WIDTH) if faults.full_width else text


def contract_fee(amount_fen, rate: float, min_fen: int = 0) -> np.ndarray:
    """Fee on the absolute amount, rounded half up to fen, with a minimum; refunds give the fee back."""
    amount = np.asarray(amount_fen, dtype="int64")
    fee = np.floor(np.abs(amount) * rate + 0.5).astype("int64")
    fee = np.maximum(fee, min_fen) * np.where(amount < 0, -1, 1)
    return np.where(amount == 0, 0, fee)


def _prepare(payments: pd.DataFrame, faults: Faults, *, source: str) -> pd.DataFrame:
    frame = payments.reset_index(drop=True).copy()
    for column in (
        "provider_txn_id",
        "original_txn_id",
        "merchant_order_no",
        "payer_name",
        "payer_account",
        "memo",
        "waybill_no",
    ):
        if column not in frame:
            frame[column] = None
    frame["txn_time"] = pd.to_datetime(frame["txn_time"], utc=True)
    if faults.duplicate_payments:
        paid = frame[frame["kind"].isin(["payment", "credit", "cod"])].head(faults.duplicate_payments).copy()
        paid["provider_txn_id"] = None
        paid["txn_time"] = paid["txn_time"] + pd.Timedelta(minutes=7)
        paid["duplicate_of"] = True
        frame = pd.concat([frame, paid], ignore_index=True)
    return frame


def _trade_numbers(frame: pd.DataFrame, make) -> list[str]:
    """Provider trade numbers: given ones kept, payments get generated ones, a refund takes its original's
    (``original_txn_id``, else the first payment for the same order in the frame)."""
    numbers: list[str | None] = [None] * len(frame)
    first_by_order: dict[str, str] = {}
    rows = list(frame.itertuples(index=False))
    for i, row in enumerate(rows):
        if row.kind != "refund":
            given = (
                row.provider_txn_id if isinstance(row.provider_txn_id, str) and row.provider_txn_id else None
            )
            numbers[i] = given or make(row, i)
            first_by_order.setdefault(row.merchant_order_no, numbers[i])
    for i, row in enumerate(rows):
        if row.kind == "refund":
            original = (
                row.original_txn_id if isinstance(row.original_txn_id, str) and row.original_txn_id else None
            )
            numbers[i] = original or first_by_order.get(row.merchant_order_no) or make(row, i)
    return numbers


def _repeat(rows: list, faults: Faults) -> list:
    return rows + rows[: faults.repeated_lines] if faults.repeated_lines else rows


def _encode(text: str, encoding: str, faults: Faults) -> bytes:
    if faults.encoding == "mojibake":
        # The classic: GBK bytes read as Latin-1 by some tool and saved again as UTF-8.
        return text.encode("gbk").decode("latin-1").encode("utf-8")
    if faults.encoding:
        return text.encode(faults.encoding, errors="replace")  # a code page that cannot say it all
    return text.encode(encoding)


def _truncate_text(text: str, faults: Faults, data_start: int) -> str:
    if not faults.truncate:
        return text
    cut = data_start + (len(text) - data_start) // 2
    return text[:cut]


def _csv_line(values: list[str], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerow(values)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------- Alipay


def write_alipay_bill(
    payments: pd.DataFrame,
    path: str | Path,
    *,
    account: str = DEFAULT_ACCOUNTS["alipay"],
    day: date | None = None,
    fee_rate: float = 0.006,
    faults: Faults = Faults(),
    zipped: bool = True,
) -> Path:
    """Write an Alipay 业务明细 bill (zip of GBK csv, or the bare csv) for ``payments`` (kind payment|refund)."""
    frame = _prepare(payments, faults, source="alipay")
    path = Path(path)
    if day is None:
        day = _local(frame["txn_time"].min()).date() if len(frame) else date.today()
    account_shown = faults.other_account or account
    fees = frame["fee_fen"] if "fee_fen" in frame else contract_fee(frame["amount_fen"], fee_rate)
    fees = np.where(pd.isna(fees), contract_fee(frame["amount_fen"], fee_rate), fees).astype("int64")
    is_refund = (frame["kind"] == "refund").to_numpy()
    trade_no = _trade_numbers(
        frame,
        lambda row, i: (
            f"{_local(row.txn_time):%Y%m%d}2200141{stable_digits('alipay', row.merchant_order_no, i, n=13)}"
        ),
    )
    rows = []
    for i, row in enumerate(frame.itertuples(index=False)):
        local = _local(row.txn_time)
        amount = int(row.amount_fen)
        refund_batch = f"RF{stable_digits('alipay-refund', trade_no[i], i, n=14)}" if is_refund[i] else ""
        item = _s(getattr(row, "item_name", None)) or "商品货款"
        rows.append(
            [
                trade_no[i] + "\t",
                (_s(row.merchant_order_no)) + "\t",
                "退款" if is_refund[i] else "交易",
                item,
                (local - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S"),
                local.strftime("%Y-%m-%d %H:%M:%S"),
                "",
                "",
                "",
                "",
                _s(row.payer_account),
                bill_yuan(amount, faults),
                bill_yuan(amount, faults),
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "",
                "0.00",
                "0.00",
                refund_batch + ("\t" if refund_batch else ""),
                bill_yuan(-int(fees[i]), faults),
                "0.00",
                _s(row.memo),
            ]
        )
    rows = _repeat(rows, faults)
    from connectors.payment_files.alipay import COLUMNS

    n_rows = len(frame) + min(faults.repeated_lines, len(frame))
    refund_mask = np.concatenate([is_refund, is_refund[: min(faults.repeated_lines, len(frame))]])[:n_rows]
    amounts = np.asarray(frame["amount_fen"], dtype="int64")
    amounts = np.concatenate([amounts, amounts[: min(faults.repeated_lines, len(frame))]])[:n_rows]
    trade_total = int(amounts[~refund_mask].sum()) + (100 if faults.wrong_totals else 0)
    refund_total = int(amounts[refund_mask].sum())
    start = datetime(day.year, day.month, day.day)
    end = start + timedelta(days=1)
    head = (
        "#支付宝业务明细查询\n"
        f"#账号：[{account_shown}]\n"
        f"#起始日期：[{start:%Y年%m月%d日 %H:%M:%S}]   终止日期：[{end:%Y年%m月%d日 %H:%M:%S}]\n"
        "#-----------------------------------------业务明细列表----------------------------------------\n"
    )
    body = _csv_line(COLUMNS) + "".join(_csv_line(r) for r in rows)
    foot = (
        "#-----------------------------------------业务明细列表结束------------------------------------\n"
        # The footer as real bills print it (public fixtures, tests/data/formats/README.md): no colon after 共.
        f"#交易合计：{int((~refund_mask).sum())}笔，商家实收共{bill_yuan(trade_total)}元，商家优惠共0.00元\n"
        f"#退款合计：{int(refund_mask.sum())}笔，商家实收退款共{bill_yuan(refund_total)}元，商家优惠退款共0.00元\n"
        f"#导出时间：[{end + timedelta(hours=9, minutes=12, seconds=33):%Y年%m月%d日 %H:%M:%S}]\n"
    )
    text = head + body + foot
    detail_name = f"{account_shown}_{day:%Y%m%d}_业务明细.csv"
    detail = _encode(text if zipped else _truncate_text(text, faults, len(head)), "gbk", faults)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not zipped:
        path.write_bytes(detail)
        return path
    summary = _encode(
        "#支付宝业务汇总查询\n"
        f"#账号：[{account_shown}]\n"
        f"#起始日期：[{start:%Y年%m月%d日 %H:%M:%S}]   终止日期：[{end:%Y年%m月%d日 %H:%M:%S}]\n"
        "#-----------------------------------------业务汇总列表----------------------------------------\n"
        "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,"
        "商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）\n"
        f",合计,{int((~refund_mask).sum())},{int(refund_mask.sum())},"
        f"{bill_yuan(int(amounts.sum()))},{bill_yuan(int(amounts.sum()))},0.00,0.00,0.00,"
        f"{bill_yuan(-int(fees.sum()))},0.00,{bill_yuan(int(amounts.sum()) - int(fees.sum()))}\n"
        "#-----------------------------------------业务汇总列表结束------------------------------------\n",
        "gbk",
        faults,
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in (
            (detail_name, detail),
            (detail_name.replace("业务明细", "业务明细(汇总)"), summary),
        ):
            info = zipfile.ZipInfo(member, date_time=(day.year, day.month, day.day, 9, 12, 32))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2] if faults.truncate else data)
    return path


# --------------------------------------------------------------------------------------------------- WeChat


def write_wechatpay_bill(
    payments: pd.DataFrame,
    path: str | Path,
    *,
    mch_id: str = DEFAULT_ACCOUNTS["wechatpay"],
    appid: str = "wx8888888888888888",
    bill_type: str = "ALL",
    fee_rate: float = 0.006,
    faults: Faults = Faults(),
) -> Path:
    """Write a WeChat Pay 交易账单 (ALL with refund columns, or SUCCESS) for ``payments``."""
    from connectors.payment_files.wechatpay import ALL_COLUMNS, SUCCESS_COLUMNS, SUMMARY_COLUMNS

    frame = _prepare(payments, faults, source="wechatpay")
    if bill_type == "SUCCESS":
        frame = frame[frame["kind"] != "refund"].reset_index(drop=True)
    columns = ALL_COLUMNS if bill_type == "ALL" else SUCCESS_COLUMNS
    merchant = faults.other_account or mch_id
    fees = frame["fee_fen"] if "fee_fen" in frame else contract_fee(frame["amount_fen"], fee_rate)
    fees = np.where(pd.isna(fees), contract_fee(frame["amount_fen"], fee_rate), fees).astype("int64")
    is_refund = (frame["kind"] == "refund").to_numpy()
    trades = _trade_numbers(frame, lambda row, i: f"4200{stable_digits('wx', row.merchant_order_no, i, n=24)}")
    records = []
    for i, row in enumerate(frame.itertuples(index=False)):
        local = _local(row.txn_time)
        amount = int(row.amount_fen)
        trade = trades[i]
        refund_id = row.provider_txn_id if isinstance(row.provider_txn_id, str) else None
        refund_no = (refund_id or f"5030{stable_digits('wxr', trade, i, n=25)}") if is_refund[i] else "0"
        values = {
            "交易时间": local.strftime("%Y-%m-%d %H:%M:%S"),
            "公众账号ID": appid,
            "商户号": merchant,
            "特约商户号": "0",
            "设备号": "",
            "微信订单号": trade,
            "商户订单号": _s(row.merchant_order_no),
            "用户标识": _s(row.payer_account) or f"oUpF8u{stable_digits('openid', row.merchant_order_no, n=22)}",
            "交易类型": "NATIVE",
            "交易状态": "REFUND" if is_refund[i] else "SUCCESS",
            "付款银行": "OTHERS",
            "货币种类": "CNY",
            "应结订单金额": "0.00" if is_refund[i] else bill_yuan(amount, faults),
            "代金券金额": "0.00",
            "微信退款单号": refund_no,
            "商户退款单号": f"R{row.merchant_order_no}" if is_refund[i] else "0",
            "退款金额": bill_yuan(-amount, faults) if is_refund[i] else "0.00",
            "充值券退款金额": "0.00",
            "退款类型": "ORIGINAL" if is_refund[i] else "",
            "退款状态": "SUCCESS" if is_refund[i] else "",
            "商品名称": _s(getattr(row, "item_name", None)) or "商品货款",
            "商户数据包": _s(row.memo),
            "手续费": bill_yuan(int(fees[i]), faults, decimals=5),
            "费率": f"{fee_rate * 100:.2f}%",
            "订单金额": "0.00" if is_refund[i] else bill_yuan(amount, faults),
            "申请退款金额": bill_yuan(-amount, faults) if is_refund[i] else "0.00",
            "费率备注": "",
        }
        records.append(["`" + values[c] for c in columns])
    records = _repeat(records, faults)
    n_extra = min(faults.repeated_lines, len(frame))
    amounts = np.asarray(frame["amount_fen"], dtype="int64")
    refund_mask = np.concatenate([is_refund, is_refund[:n_extra]])
    amounts = np.concatenate([amounts, amounts[:n_extra]])
    fee_all = np.concatenate([fees, fees[:n_extra]])
    settled = int(amounts[~refund_mask].sum()) + (100 if faults.wrong_totals else 0)
    refunded = int(-amounts[refund_mask].sum())
    summary = [
        str(len(records)),
        bill_yuan(settled),
        bill_yuan(refunded) if bill_type == "ALL" else "0.00",
        "0.00",
        bill_yuan(int(fee_all.sum()), decimals=5),
        bill_yuan(int(amounts[~refund_mask].sum())),
        bill_yuan(refunded) if bill_type == "ALL" else "0.00",
    ]
    head = _csv_line(columns)
    body = "".join(_csv_line(r) for r in records)
    text = head + body + _csv_line(SUMMARY_COLUMNS) + _csv_line(["`" + v for v in summary])
    text = _truncate_text(text, faults, len(head))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_encode(text, "utf-8", faults))
    return path


# --------------------------------------------------------------------------------------------------- banks

BANK_LAYOUTS = {
    # template key -> (title line, extension, header columns in order)
    "icbc": (
        "中国工商银行企业网上银行 账户明细",
        ".csv",
        [
            "凭证号",
            "本方账号",
            "对方账号",
            "交易时间",
            "借/贷",
            "借方发生额",
            "贷方发生额",
            "对方行号",
            "摘要",
            "用途",
            "对方单位名称",
            "余额",
            "个性化信息",
        ],
    ),
    "cmb": (
        "招商银行 交易明细",
        ".xlsx",
        [
            "交易日",
            "交易时间",
            "起息日",
            "交易类型",
            "借方金额",
            "贷方金额",
            "余额",
            "摘要",
            "流水号",
            "业务名称",
            "用途",
            "收/付方名称",
            "收/付方帐号",
            "收/付方开户行",
        ],
    ),
    "cqrcb": (
        "重庆农村商业银行 对公账户交易明细",
        ".txt",
        [
            "交易日期",
            "交易时间",
            "借贷标志",
            "交易金额",
            "账户余额",
            "对方户名",
            "对方账号",
            "对方开户行",
            "摘要",
            "附言",
            "交易流水号",
        ],
    ),
}


def bank_file_name(template_key: str, account: str, day: date) -> str:
    return f"{template_key}_{account}_{day:%Y%m%d}{BANK_LAYOUTS[template_key][1]}"


def write_bank_statement(
    lines: pd.DataFrame,
    path: str | Path,
    *,
    template_key: str,
    template: BankTemplate | None = None,
    account: str | None = None,
    day: date | None = None,
    opening_balance_fen: int = 50_000_000,
    faults: Faults = Faults(),
) -> Path:
    """Write one day's statement of ``lines`` (kind credit|debit, signed ``amount_fen``) in a bank's layout.

    Layouts exist for the shipped templates ``icbc`` (csv), ``cmb`` (xlsx) and ``cqrcb`` (|-separated txt).
    """
    if template_key not in BANK_LAYOUTS:
        raise KeyError(f"no stand-in layout for bank template {template_key!r}; have {sorted(BANK_LAYOUTS)}")
    title, extension, header = BANK_LAYOUTS[template_key]
    frame = _prepare(lines, faults, source=f"bank:{template_key}")
    frame = frame.sort_values("txn_time", kind="stable").reset_index(drop=True)
    account = account or DEFAULT_ACCOUNTS[f"bank:{template_key}"]
    shown = faults.other_account or account
    day = day or (_local(frame["txn_time"].min()).date() if len(frame) else date.today())
    amounts = np.asarray(frame["amount_fen"], dtype="int64")
    balance = opening_balance_fen + np.cumsum(amounts)
    rows = []
    for i, row in enumerate(frame.itertuples(index=False)):
        local = _local(row.txn_time)
        amount = int(amounts[i])
        serial = (
            _s(row.provider_txn_id) or f"{stable_digits(template_key, row.memo, row.payer_name, amount, i, n=16)}"
        )
        memo = _s(row.memo)
        who = _s(row.payer_name)
        acct = _s(row.payer_account)
        out = amount < 0
        money = bill_yuan(abs(amount), faults)
        if template_key == "icbc":
            rows.append(
                [serial, account, acct, local.strftime("%Y-%m-%d %H:%M:%S"), "借" if out else "贷",
                 money if out else "", "" if out else money, "102653000011", "汇入汇款" if not out else "转账支出",
                 memo, who, bill_yuan(int(balance[i]), faults), ""]
            )  # fmt: skip
        elif template_key == "cmb":
            rows.append(
                [local.strftime("%Y%m%d"), local.strftime("%H%M%S"), local.strftime("%Y%m%d"),
                 "汇出汇款" if out else "汇入汇款",
                 money if out else "", "" if out else money, bill_yuan(int(balance[i]), faults),
                 memo, serial, "企业银行支付" if out else "跨行汇入", "", who, acct, "中国建设银行重庆分行"]
            )  # fmt: skip
        else:
            rows.append(
                [local.strftime("%Y/%m/%d"), local.strftime("%H:%M:%S"), "借" if out else "贷", money,
                 bill_yuan(int(balance[i]), faults), who, acct, "重庆农村商业银行营业部", "转账", memo, serial]
            )  # fmt: skip
    rows = _repeat(rows, faults)
    n_extra = min(faults.repeated_lines, len(frame))
    all_amounts = np.concatenate([amounts, amounts[:n_extra]])
    debit_total = int(-all_amounts[all_amounts < 0].sum())
    credit_total = int(all_amounts[all_amounts > 0].sum()) + (100 if faults.wrong_totals else 0)
    count = len(rows)
    period = f"{day:%Y-%m-%d}至{day:%Y-%m-%d}"
    if template_key == "icbc":
        preamble = [[title], ["账号", shown], ["户名", COMPANY], ["币种", "人民币"], ["起止日期", period]]
        footer = [
            [
                "借方发生额合计",
                bill_yuan(debit_total, faults),
                "贷方发生额合计",
                bill_yuan(credit_total, faults),
            ],
            ["交易笔数", str(count)],
        ]
    elif template_key == "cmb":
        preamble = [[title], ["账号：", shown], ["账户名称：", COMPANY], ["币种：", "人民币"],
                    ["查询区间：", f"{day:%Y%m%d} - {day:%Y%m%d}"]]  # fmt: skip
        footer = [
            ["借方合计", bill_yuan(debit_total, faults)],
            ["贷方合计", bill_yuan(credit_total, faults)],
            ["合计笔数", str(count)],
        ]
    else:
        preamble = [[title], [f"客户账号：{shown}"], [f"账户名称：{COMPANY}"],
                    [f"起始日期：{day:%Y-%m-%d} 终止日期：{day:%Y-%m-%d}"], []]  # fmt: skip
        footer = [
            ["合计", "借方金额", bill_yuan(debit_total, faults), "贷方金额", bill_yuan(credit_total, faults)],
            ["总笔数", str(count)],
        ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if extension == ".xlsx":
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        sheet.title = "交易明细"
        numeric = not (faults.thousands_separators or faults.full_width)
        amount_cols = {header.index(c) for c in ("借方金额", "贷方金额", "余额")}
        for r in [*preamble, header]:
            sheet.append(r)
        for r in rows:
            sheet.append(
                [
                    float(clean) if numeric and j in amount_cols and (clean := v) else v
                    for j, v in enumerate(r)
                ]
            )
        for r in footer:
            sheet.append(r)
        buffer = io.BytesIO()
        book.save(buffer)
        data = buffer.getvalue()
        path.write_bytes(data[: len(data) // 2] if faults.truncate else data)
        return path
    delimiter = "|" if template_key == "cqrcb" else ","
    head = "".join(_csv_line(r, delimiter) for r in [*preamble, header])
    text = (
        head
        + "".join(_csv_line(r, delimiter) for r in rows)
        + "".join(_csv_line(r, delimiter) for r in footer)
    )
    path.write_bytes(_encode(_truncate_text(text, faults, len(head)), "gbk", faults))
    return path


# --------------------------------------------------------------------------------------------------- COD


def cod_layout(template: CodTemplate) -> list[tuple[str, str]]:
    """(field, header name) of the columns a carrier template configures, in the order the stand-in writes."""
    cols = template.columns
    fields = ("waybill", "order_no", "recipient", "collected", "fee", "remitted", "signed_date", "remit_date",
              "status", "memo")  # fmt: skip
    return [(f, getattr(cols, f)[0]) for f in fields if getattr(cols, f)]


def write_cod_remittance(
    remittances: pd.DataFrame,
    path: str | Path,
    *,
    carrier: str = "shunfeng",
    template: CodTemplate | None = None,
    account: str | None = None,
    batch_no: str | None = None,
    remit_date: date | None = None,
    fee_rate: float = 0.01,
    fee_min_fen: int = 0,
    faults: Faults = Faults(),
    xlsx: bool = False,
) -> Path:
    """Write a COD remittance export (csv GBK, or xlsx) for ``remittances`` in the layout of the carrier's
    template (``[settlement.cod_templates.<carrier>]``): title lines naming the carrier, our account, the batch
    and the date, one row per waybill with the status 'remitted', a 合计 row and a 笔数 row last.
    ``remittances``: ``waybill_no``, ``amount_fen`` (collected), optional ``merchant_order_no``, ``payer_name``,
    ``fee_fen``, ``signed_at``, ``status`` (default: the template's first remitted status)."""
    if template is None:
        from yidi.settings import get_settings

        template = get_settings().settlement.cod_templates[carrier]
    frame = _prepare(remittances, faults, source=f"cod:{carrier}")
    account = faults.other_account or account or DEFAULT_ACCOUNTS.get(f"cod:{carrier}", "0000000000")
    remit_date = remit_date or (_local(frame["txn_time"].max()).date() if len(frame) else date.today())
    batch_no = batch_no or f"HK{remit_date:%Y%m%d}{stable_digits(carrier, remit_date, n=3)}"
    collected = np.asarray(frame["amount_fen"], dtype="int64")
    fees = frame["fee_fen"] if "fee_fen" in frame else contract_fee(collected, fee_rate, fee_min_fen)
    fees = np.where(pd.isna(fees), contract_fee(collected, fee_rate, fee_min_fen), fees).astype("int64")
    fee_shown = -1 if template.fee_sign == "negative" else 1
    layout = cod_layout(template)
    rows = []
    for i, row in enumerate(frame.itertuples(index=False)):
        signed = getattr(row, "signed_at", None)
        signed_text = _local(signed).strftime("%Y-%m-%d") if signed is not None and not pd.isna(signed) else ""
        status = _s(getattr(row, "status", None)) or template.remitted_statuses[0]
        values = {
            "waybill": row.waybill_no, "order_no": _s(row.merchant_order_no), "recipient": _s(row.payer_name),
            "collected": bill_yuan(int(collected[i]), faults), "fee": bill_yuan(fee_shown * int(fees[i]), faults),
            "remitted": bill_yuan(int(collected[i] - fees[i]), faults), "signed_date": signed_text,
            "remit_date": f"{remit_date:%Y-%m-%d}", "status": status, "memo": _s(row.memo),
        }  # fmt: skip
        rows.append([values[field] for field, _ in layout])
    rows = _repeat(rows, faults)
    n_extra = min(faults.repeated_lines, len(frame))
    c_all = np.concatenate([collected, collected[:n_extra]])
    f_all = np.concatenate([fees, fees[:n_extra]])
    bump = 100 if faults.wrong_totals else 0
    sums = {"collected": int(c_all.sum()) + bump, "fee": fee_shown * int(f_all.sum()),
            "remitted": int((c_all - f_all).sum()) + bump}  # fmt: skip
    totals = [bill_yuan(sums[field], faults) if field in sums else "" for field, _ in layout]
    totals[0] = template.totals_row_markers[0]
    preamble = [
        [f"{template.carrier_name} 代收货款回款明细"],
        [template.account_labels[0], account],
        [template.batch_labels[0], batch_no],
        [template.remit_date_labels[0], f"{remit_date:%Y-%m-%d}"],
    ]
    header = [name for _, name in layout]
    footer = [totals, ["笔数", f"{len(rows)}"]]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if xlsx:
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        for r in [*preamble, header, *rows, *footer]:
            sheet.append(r)
        buffer = io.BytesIO()
        book.save(buffer)
        data = buffer.getvalue()
        path.write_bytes(data[: len(data) // 2] if faults.truncate else data)
        return path
    head = "".join(_csv_line(r) for r in [*preamble, header])
    text = head + "".join(_csv_line(r) for r in rows) + "".join(_csv_line(r) for r in footer)
    path.write_bytes(_encode(_truncate_text(text, faults, len(head)), "gbk", faults))
    return path


def utc(*args) -> datetime:
    """Shorthand for tests and demo data: a Beijing wall-clock time as aware UTC."""
    return datetime(*args, tzinfo=BUSINESS_TZ).astimezone(UTC)
