"""Carrier cash-on-delivery (代收货款) remittance exports, read through per-carrier templates from the policy file.

Carriers that collect COD pay the money back in batches (回款) with a detail export from their customer portal:
csv/txt (usually GBK) or xlsx, title lines before the header (the carrier's name, our account at the carrier
月结卡号/客户编码, the batch number, the remittance date), one row per waybill with the amount collected, the fee,
the amount paid back and a remittance status, and a totals row (合计) last. There is no industry format and
each carrier has its own columns, so nothing carrier-specific is coded here: a ``CodTemplate``
(``[settlement.cod_templates.<carrier code>]``, see ``yidi.settlement_policy``) names them.

Rules: the totals row's collected / fee / remitted cells equal the rows' sums (over every row listed); the
stated row count (笔数) equals the rows; every row's 回款金额 = 代收金额 − 手续费 (when both are columns); the
account in the title lines must be ours for that carrier; a status neither remitted nor pending refuses the
file. Rows still pending (未回款) carry no money yet and are left out of the payments.

Canonical mapping: kind 'cod'; ``amount_fen`` = collected (what the customer paid towards the order),
``fee_fen`` = the carrier's fee; ``txn_time`` = remittance date (midnight Beijing time); ``waybill_no``,
``merchant_order_no``, ``payer_name`` (recipient); ``provider_txn_id`` = batch/waybill (a waybill remitted
again in another batch is a second line, so a double remittance shows up as a duplicate).
"""

from __future__ import annotations

import re
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
    file_hash,
    is_workbook,
    money_fen,
    normalise_text,
    parse_local_times,
    read_source,
)
from connectors.payment_files.layout import (
    HEADER_SEARCH_ROWS,
    column_index,
    find_header,
    fit_reason,
    head_rows,
    read_rows,
    split_body,
    title_text,
    totals_row,
)
from yidi.settlement_policy import CodTemplate


def required_columns(template: CodTemplate) -> list[list[str]]:
    return [template.columns.waybill, template.columns.collected]


def template_fit(data: bytes, name: str, template: CodTemplate, cache: dict | None = None) -> str | None:
    """None when ``template`` fits the file (its header, and its carrier named above it), else why not."""
    rows = head_rows(data, name, encoding=template.encoding, delimiter=template.delimiter, cache=cache)
    return fit_reason(
        rows,
        required=required_columns(template),
        header_row=template.header_row,
        detect_words=template.detect_words or [template.carrier_name],
        name=name,
    )


def parse_cod_remittance(
    source: str | Path | bytes,
    template: CodTemplate,
    *,
    template_key: str,
    name: str | None = None,
    accounts: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Parse a COD remittance export with ``template`` into the canonical payments frame (source
    ``cod:<template_key>``). ``accounts`` are our accounts at that carrier (None skips the check)."""
    data, file = read_source(source, name)
    digest = file_hash(data)
    src = f"cod:{template_key}"
    rows = read_rows(data, file, encoding=template.encoding, delimiter=template.delimiter)
    header_at = find_header(rows, required_columns(template), template.header_row)
    if header_at is None:
        reason = fit_reason(rows, required=required_columns(template), header_row=template.header_row,
                            detect_words=[], name=file)  # fmt: skip
        text = " ".join(" ".join(r) for r in rows[:HEADER_SEARCH_ROWS])
        readable = is_workbook(data, file) or any(
            w in text for w in ("代收", "运单", "金额", "回款", "返款", template.carrier_name)
        )
        raise PaymentFileError(
            file,
            ("format" if readable else "encoding") if text.strip() else "truncated",
            f"not a {template.carrier_name} COD remittance ({reason}): another layout or a wrong encoding",
        )
    title = title_text(rows, header_at)
    account_match = template.account_regex().search(title)
    account = check_account(account_match.group(1) if account_match else None, accounts, file=file, source=src)
    body = split_body(
        rows,
        header_at,
        footer_markers=[*template.footer_markers, *template.totals_row_markers],
        skip_markers=template.skip_markers,
        workbook=is_workbook(data, file),
        file=file,
    )
    totals = totals_row(body.footer, template.totals_row_markers, len(body.header))
    if totals is None:
        raise PaymentFileError(
            file, "truncated", f"the totals row ({' / '.join(template.totals_row_markers)}) after the data is missing"
        )
    frame = pd.DataFrame(body.rows, columns=[f"c{i}" for i in range(len(body.header))], dtype="string")
    cols = template.columns

    def column(candidates: list[str]) -> tuple[int | None, pd.Series | None]:
        at = column_index(body.header, candidates)
        return at, (None if at is None else frame[f"c{at}"].str.strip())

    try:
        waybill = column(cols.waybill)[1]
        collected_at, collected_text = column(cols.collected)
        collected = money_fen(collected_text, what=cols.collected[0])
        fee_at, fee_text = column(cols.fee)
        fee = np.zeros(len(frame), "int64") if fee_text is None else money_fen(fee_text, blank_as_zero=True, what="fee")
        printed_fee = fee
        if template.fee_sign == "negative":
            fee = -fee
        remitted_at, remitted_text = column(cols.remitted)
        remitted = None if remitted_text is None else money_fen(remitted_text, what=cols.remitted[0])
        when = _remit_dates(column(cols.remit_date)[1], title, template, len(frame), file)
        for label, at, values in (
            (cols.collected[0], collected_at, collected),
            (cols.fee[0] if cols.fee else "", fee_at, printed_fee),
            (cols.remitted[0] if cols.remitted else "", remitted_at, remitted),
        ):
            if at is None or not totals[at].strip():
                continue
            stated = int(money_fen(pd.Series([totals[at]]), what=f"合计 {label}")[0])
            check_total(file, f"totals row {label}", stated, int(values.sum()))
        if template.count_pattern:
            footer_text = " ".join(normalise_text(" ".join(r)) for r in body.footer)
            count = re.search(template.count_pattern, footer_text)
            if count is not None:
                check_total(file, "row count", int(count.group(1)), len(frame), "rows")
    except BadValues as exc:
        raise PaymentFileError(file, "bad_value", str(exc)) from None
    if remitted is not None and fee_text is not None:
        wrong = np.flatnonzero(collected - fee != remitted)
        if len(wrong):
            raise PaymentFileError(
                file,
                "bad_value",
                f"remitted ≠ collected − fee on lines {[body.line_numbers[i] for i in wrong[:5]]}",
            )
    keep = _remitted_rows(column(cols.status)[1], template, len(frame), file)
    batch_match = template.batch_regex().search(title)
    batch_column = column(cols.batch_no)[1]
    batch = (
        batch_column
        if batch_column is not None
        else pd.Series([batch_match.group(1) if batch_match else digest[:12]] * len(frame), dtype="string")
    )
    result = canonical_frame(
        {
            "source": np.full(len(frame), src),
            "file_hash": np.full(len(frame), digest),
            "line_no": body.line_numbers,
            "provider_txn_id": batch + "/" + waybill,
            "line_key": batch + "/" + waybill,
            "merchant_order_no": column(cols.order_no)[1],
            "kind": np.full(len(frame), "cod"),
            "amount_fen": collected,
            "fee_fen": fee,
            "txn_time": when,
            "payer_name": column(cols.recipient)[1],
            "memo": column(cols.memo)[1],
            "waybill_no": waybill,
            "account": np.full(len(frame), account),
        },
        len(frame),
    )
    result = result[keep].reset_index(drop=True)
    check_unique_lines(result, file=file)
    return result


def _remit_dates(values: pd.Series | None, title: str, template: CodTemplate, n: int, file: str) -> pd.Series:
    """The remittance date per row: the date column, a blank cell (a row not remitted yet) or no column taking
    the batch's date from the title lines."""
    match = template.remit_date_regex().search(title)
    batch_date = match.group(1).replace("年", "-").replace("月", "-") if match else None
    if values is None:
        values = pd.Series([""] * n, dtype="string")
    blank = values.fillna("") == ""
    if blank.any():
        if batch_date is None:
            filled = values[~blank]
            if filled.empty:
                raise PaymentFileError(file, "format", "no remittance date: no date column and no 回款日期 line")
            batch_date = filled.iloc[0]
        values = values.mask(blank, batch_date)
    return parse_local_times(values, [*template.date_formats, "%Y-%m-%d"], what="remittance date")


def _remitted_rows(status: pd.Series | None, template: CodTemplate, n: int, file: str) -> np.ndarray:
    """Which rows are money paid back: all, unless a status column says a row is still pending."""
    if status is None:
        return np.ones(n, dtype=bool)
    flags = status.map(normalise_text)
    remitted = flags.isin([normalise_text(s) for s in template.remitted_statuses]).to_numpy()
    pending = flags.isin([normalise_text(s) for s in template.pending_statuses]).to_numpy()
    unknown = ~(remitted | pending)
    if unknown.any():
        raise PaymentFileError(
            file,
            "bad_value",
            f"remittance status {sorted(set(flags[unknown]))[:5]} is neither remitted {template.remitted_statuses} "
            f"nor pending {template.pending_statuses}",
        )
    return remitted
