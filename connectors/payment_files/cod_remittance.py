"""Carrier cash-on-delivery (代收货款) remittance files.

Carriers that collect COD pay the money back in batches (回款) with a detail file. There is no published
industry format, so yidi defines one modelled on the carriers' customer-portal exports (csv in GBK or UTF-8,
or xlsx, first sheet)::

    顺丰速运 代收货款回款明细                       <- title: the carrier's name
    月结卡号,0230012345                            <- our account at the carrier
    回款批次号,HK20261105001
    回款日期,2026-11-05
    运单号,客户订单号,收件人,代收金额（元）,手续费（元）,回款金额（元）,签收日期,回款日期,备注
    SF1400012345678,YD000123,张**,"1,299.00",12.99,"1,286.01",2026-11-03,2026-11-05,
    …
    合计,,,"3,000.00",30.00,"2,970.00",,,
    笔数,3

Rules: every row's 回款金额 = 代收金额 − 手续费; the 合计 row's three totals and 笔数 equal the rows; the 月结卡号
must be ours for that carrier. Header names are compared after NFKC, so （元） and (元) are the same.

Canonical mapping: kind 'cod'; ``amount_fen`` = 代收金额 (what the customer paid towards the order),
``fee_fen`` = 手续费; ``txn_time`` = 回款日期 (midnight Beijing time); ``waybill_no`` = 运单号;
``merchant_order_no`` = 客户订单号; ``payer_name`` = 收件人; ``provider_txn_id`` = 批次号/运单号 (a waybill
remitted again in another batch is a second line, so a double remittance shows up as a duplicate).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from connectors.payment_files.common import (
    SNIFF_BYTES,
    BadValues,
    PaymentFileError,
    canonical_frame,
    check_account,
    check_total,
    check_unique_lines,
    file_hash,
    is_workbook,
    is_zip,
    money_fen,
    normalise_text,
    parse_local_times,
    read_cells,
    read_source,
)

COLUMNS = [
    "运单号",
    "客户订单号",
    "收件人",
    "代收金额（元）",
    "手续费（元）",
    "回款金额（元）",
    "签收日期",
    "回款日期",
    "备注",
]
REQUIRED = ["运单号", "代收金额（元）", "手续费（元）", "回款金额（元）", "回款日期"]
# Carrier names as printed in titles -> Kuaidi100 carrier codes (the codes shipments use).
CARRIER_NAMES = {
    "顺丰": "shunfeng",
    "京东": "jd",
    "邮政": "ems",
    "EMS": "ems",
    "德邦": "debangwuliu",
    "中通": "zhongtong",
    "圆通": "yuantong",
    "韵达": "yunda",
    "申通": "shentong",
}
CARRIER_TITLES = {code: name for name, code in CARRIER_NAMES.items()}
CARRIER_TITLES.update(
    {"shunfeng": "顺丰速运", "ems": "中国邮政 EMS", "debangwuliu": "德邦快递", "jd": "京东物流"}
)
DATE_FORMATS = ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y-%m-%d %H:%M:%S"]
_ACCOUNT = re.compile(r"月结(?:卡号|账号)[^0-9A-Za-z]{0,4}([0-9A-Za-z]{4,32})")
_BATCH = re.compile(r"回款批次号[^0-9A-Za-z]{0,4}([0-9A-Za-z\-]{4,40})")


def _carrier_from_title(rows: list[list[str]]) -> str | None:
    for row in rows:
        text = normalise_text(" ".join(row))
        for name, code in CARRIER_NAMES.items():
            if name in text:
                return code
    return None


def remittance_carrier(data: bytes, name: str) -> str | None:
    """The carrier's code when the file is a COD remittance (代收 and 运单号 near the top, a carrier named in the
    title); None otherwise. Only workbooks and text mentioning 代收货款 are opened to look."""
    if not is_zip(data) and "代收货款" not in data[:SNIFF_BYTES].decode("gb18030", errors="ignore"):
        return None
    try:
        rows = read_cells(data, name)
    except PaymentFileError:
        return None
    top = normalise_text(" ".join(" ".join(r) for r in rows[:12]))
    if "代收" not in top or "运单号" not in top:
        return None
    return next((code for carrier_name, code in CARRIER_NAMES.items() if carrier_name in top), None)


def parse_cod_remittance(
    source: str | Path | bytes,
    *,
    carrier: str | None = None,
    name: str | None = None,
    accounts: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Parse a COD remittance file into the canonical payments frame (source ``cod:<carrier>``).

    ``carrier`` (Kuaidi100 code) defaults to the carrier named in the title; ``accounts`` are our accounts at
    that carrier (None skips the check).
    """
    data, file = read_source(source, name)
    digest = file_hash(data)
    rows = read_cells(data, file, encoding="gb18030")
    wanted = {normalise_text(c) for c in REQUIRED}
    header_at = next(
        (i for i, r in enumerate(rows[:30]) if wanted <= {normalise_text(c) for c in r}),
        None,
    )
    if header_at is None:
        problem = (
            "no COD remittance column header (运单号, 代收金额（元）…): another format or a wrong encoding"
        )
        raise PaymentFileError(file, "format" if is_workbook(data, file) else "encoding", problem)
    preamble = rows[:header_at]
    carrier = carrier or _carrier_from_title(preamble)
    if carrier is None:
        raise PaymentFileError(file, "format", "the carrier is not named in the title; pass carrier=")
    src = f"cod:{carrier}"
    preamble_text = normalise_text(" ".join(",".join(r) for r in preamble))
    account_match = _ACCOUNT.search(preamble_text)
    account = check_account(
        account_match.group(1) if account_match else None, accounts, file=file, source=src
    )
    batch_match = _BATCH.search(preamble_text)
    batch = batch_match.group(1) if batch_match else digest[:12]

    header = [normalise_text(c) for c in rows[header_at]]
    body, line_numbers, footer = [], [], []
    for i in range(header_at + 1, len(rows)):
        cells = rows[i]
        if not any(c.strip() for c in cells):
            continue
        first = normalise_text(cells[0])
        if first.startswith(("合计", "笔数", "总计")):
            footer = rows[i:]
            break
        if len(cells) < len(header) and not is_workbook(data, file):
            raise PaymentFileError(
                file, "truncated", f"line {i + 1} has {len(cells)} of {len(header)} fields"
            )
        body.append((cells + [""] * len(header))[: len(header)])
        line_numbers.append(i + 1)
    if not footer:
        raise PaymentFileError(file, "truncated", "the 合计/笔数 rows after the data are missing")
    frame = pd.DataFrame(body, columns=header, dtype="string")
    column = {c: normalise_text(c) for c in COLUMNS}
    try:
        collected = money_fen(frame[column["代收金额（元）"]], what="代收金额")
        fee = money_fen(frame[column["手续费（元）"]], blank_as_zero=True, what="手续费")
        remitted = money_fen(frame[column["回款金额（元）"]], what="回款金额")
        when = parse_local_times(frame[column["回款日期"]], DATE_FORMATS, what="回款日期")
        totals = next((r for r in footer if normalise_text(r[0]).startswith("合计")), None)
        count_row = next((r for r in footer if normalise_text(r[0]).startswith("笔数")), None)
        if totals is None or count_row is None:
            raise PaymentFileError(file, "truncated", "the 合计 or 笔数 row after the data is missing")
        totals = (totals + [""] * len(header))[: len(header)]
        for label, values in (
            ("代收金额（元）", collected),
            ("手续费（元）", fee),
            ("回款金额（元）", remitted),
        ):
            stated = int(money_fen(pd.Series([totals[header.index(column[label])]]), what=f"合计 {label}")[0])
            check_total(file, f"合计 {label}", stated, int(values.sum()))
        count_text = next((c for c in count_row[1:] if c.strip()), "")
        check_total(
            file, "笔数", int(re.sub(r"\D", "", normalise_text(count_text)) or -1), len(frame), "rows"
        )
    except BadValues as exc:
        raise PaymentFileError(file, "bad_value", str(exc)) from None
    wrong = np.flatnonzero(collected - fee != remitted)
    if len(wrong):
        raise PaymentFileError(
            file,
            "bad_value",
            f"回款金额 ≠ 代收金额 − 手续费 on lines {[line_numbers[i] for i in wrong[:5]]}",
        )
    waybill = frame[column["运单号"]].str.strip()
    result = canonical_frame(
        {
            "source": np.full(len(frame), src),
            "file_hash": np.full(len(frame), digest),
            "line_no": line_numbers,
            "provider_txn_id": batch + "/" + waybill,
            "line_key": batch + "/" + waybill,
            "merchant_order_no": frame.get(column["客户订单号"]),
            "kind": np.full(len(frame), "cod"),
            "amount_fen": collected,
            "fee_fen": fee,
            "txn_time": when,
            "payer_name": frame.get(column["收件人"]),
            "memo": frame.get(column["备注"]),
            "waybill_no": waybill,
            "account": np.full(len(frame), account),
        },
        len(frame),
    )
    check_unique_lines(result, file=file)
    return result
