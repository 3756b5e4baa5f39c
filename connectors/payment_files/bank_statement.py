"""Corporate e-banking statement exports, read through per-bank templates from the policy file.

Banks export xlsx, csv or txt (usually GBK) with lines before the column header (账号, 户名, 币种, period) and
totals after the data. Columns and conventions differ per bank, so nothing bank-specific is coded here: a
``BankTemplate`` (``[settlement.bank_templates.<key>]``, see ``yidi.settlement_policy``) names the columns,
the debit/credit convention (two columns, or one amount with a 借贷标志, or a signed amount), date and time
formats, where our account number is, which rows start the footer and how to read its totals.

Reading a statement:
1. rows of cells (csv/txt via the template's delimiter and encoding; xlsx via openpyxl, first sheet);
2. the header row is ``header_row`` or the first row holding the date and amount columns;
3. our account number is searched in the rows above the header (``account_pattern``);
4. data rows run until a row whose first cell starts with a footer marker; blank rows are skipped;
5. the footer's totals (debit, credit, count; whichever patterns the template gives) must equal the rows,
   and a template with totals patterns whose footer is missing means the file was cut off.

Canonical mapping: money in → kind 'credit', positive ``amount_fen``; money out → 'debit', negative.
``payer_name``/``payer_account`` are the counterparty (对方户名/对方账号); ``memo`` joins 摘要/用途/附言.
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
    file_hash,
    is_workbook,
    money_fen,
    normalise_text,
    occurrence_keys,
    parse_local_times,
    read_cells,
    read_source,
)
from connectors.payment_files.layout import (
    column_index,
    find_header,
    fit_reason,
    head_rows,
    split_body,
    totals_row,
)
from yidi.settlement_policy import BankTemplate


def read_rows(data: bytes, file: str, template: BankTemplate) -> list[list[str]]:
    """The file as rows of cell strings (xlsx first sheet, or delimited text in the template's encoding)."""
    return read_cells(data, file, encoding=template.encoding, delimiter=template.delimiter)


def required_columns(template: BankTemplate) -> list[list[str]]:
    cols = template.columns
    return [cols.date, *([cols.debit, cols.credit] if cols.debit else [cols.amount])]


def _find_header(rows: list[list[str]], template: BankTemplate, file: str) -> int:
    found = find_header(rows, required_columns(template), template.header_row)
    if found is not None:
        return found
    raise PaymentFileError(
        file,
        "format" if rows and any(any(c.strip() for c in r) for r in rows[:5]) else "truncated",
        f"no {template.bank_name} column header (wanted "
        f"{' and '.join(n[0] for n in required_columns(template))}); a different bank's export, or a wrong encoding",
    )


def template_fit(data: bytes, name: str, template: BankTemplate, cache: dict | None = None) -> str | None:
    """None when ``template`` fits the file (its header, and its detect_words above it), else why not."""
    rows = head_rows(data, name, encoding=template.encoding, delimiter=template.delimiter, cache=cache)
    return fit_reason(
        rows,
        required=required_columns(template),
        header_row=template.header_row,
        detect_words=template.detect_words,
        name=name,
    )


def parse_bank_statement(
    source: str | Path | bytes,
    template: BankTemplate,
    *,
    template_key: str,
    name: str | None = None,
    accounts: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Parse one bank statement export with ``template`` into the canonical payments frame.

    ``template_key`` names the template in the policy file (the source becomes ``bank:<key>``); ``accounts``
    are our account numbers at that bank (None skips the check).
    """
    data, file = read_source(source, name)
    digest = file_hash(data)
    src = f"bank:{template_key}"
    rows = read_rows(data, file, template)
    workbook = is_workbook(data, file)
    header_at = _find_header(rows, template, file)
    header = [normalise_text(c) for c in rows[header_at]]
    # The rows before the header and after the data are searched as text, cells separated by single spaces.
    preamble = " ".join(normalise_text(" ".join(r)) for r in rows[:header_at])
    account_match = re.search(template.account_pattern, preamble)
    account = account_match.group(1).replace(" ", "") if account_match else None
    body = split_body(
        rows,
        header_at,
        footer_markers=[*template.footer_markers, *template.totals_row_markers],
        skip_markers=template.skip_markers,
        workbook=workbook,
        file=file,
    )
    own = column_index(body.header, template.columns.own_account)
    if account is None and own is not None:
        found = sorted({r[own].strip() for r in body.rows if r[own].strip()})
        if len(found) > 1:
            raise PaymentFileError(file, "other_account", f"rows for several of our accounts {found[:5]}")
        account = found[0] if found else None
    if account is None and not template.account_in_file:
        # The export never names the account (account_in_file = false): the one configured for it is taken.
        if accounts is None:
            account = template_key
        elif len(accounts) == 1:
            account = accounts[0]
        else:
            raise PaymentFileError(
                file, "format", f"the export names no account and {src} has {len(accounts)} configured: "
                "give the file's account in [settlement.accounts.bank] alone, or use a template per account",
            )
    account = check_account(account, accounts, file=file, source=src)
    header, data_rows, line_numbers = body.header, body.rows, body.line_numbers
    footer_at = len(rows) - len(body.footer) if body.footer else None
    has_totals = any((template.debit_total_pattern, template.credit_total_pattern, template.count_pattern))
    if footer_at is None and (has_totals or template.totals_row_markers):
        raise PaymentFileError(file, "truncated", "no totals after the last row: the export was cut off")
    frame = pd.DataFrame(data_rows, columns=_dedupe(header), dtype="string")

    def column(candidates: list[str], *, required: bool = False) -> pd.Series | None:
        for name in candidates:
            key = normalise_text(name)
            if key in frame.columns:
                return frame[key].str.strip()
        if required:
            raise PaymentFileError(file, "format", f"column {candidates} not in the header {header}")
        return None

    cols = template.columns
    try:
        dates = column(cols.date, required=True)
        times = column(cols.time)
        stamp_text = dates if times is None else dates + " " + times.fillna("")
        formats = list(template.date_formats)
        if times is not None:
            formats = [f"{d} {t}" for d in template.date_formats for t in template.time_formats] + formats
        when = parse_local_times(stamp_text.str.strip(), formats + ["ISO8601"], what="transaction date")
        if template.amount_convention == "debit_credit_columns":
            debit = money_fen(column(cols.debit, required=True), blank_as_zero=True, what="debit")
            credit = money_fen(column(cols.credit, required=True), blank_as_zero=True, what="credit")
            if ((debit != 0) & (credit != 0)).any():
                raise BadValues("a row has both a debit and a credit amount")
            signed = credit - np.abs(debit)
        else:
            amount = money_fen(column(cols.amount, required=True), what="amount")
            if template.amount_convention == "signed_amount":
                signed = amount
            else:
                flags = column(cols.direction, required=True).map(normalise_text)
                credit_flag = flags.isin([normalise_text(f) for f in template.credit_flags]).to_numpy()
                debit_flag = flags.isin([normalise_text(f) for f in template.debit_flags]).to_numpy()
                unknown = ~(credit_flag | debit_flag)
                if unknown.any():
                    bad = flags[unknown].unique().tolist()[:5]
                    raise BadValues(
                        f"debit/credit flag {bad} is neither {template.credit_flags} nor {template.debit_flags}"
                    )
                signed = np.where(credit_flag, np.abs(amount), -np.abs(amount))
    except BadValues as exc:
        raise PaymentFileError(file, "bad_value", str(exc)) from None

    if footer_at is not None and has_totals:
        footer_text = " ".join(normalise_text(" ".join(r)) for r in rows[footer_at:])
        _check_footer(file, template, footer_text, signed)
    if template.totals_row_markers:
        _check_totals_row(file, template, body, signed)

    memo_parts = [s for s in (column([c]) for c in cols.memo) if s is not None]
    memo = pd.Series([""] * len(frame), dtype="string")
    for part in memo_parts:
        memo = memo.str.cat(part.fillna(""), sep=" ")
    memo = memo.str.replace(r"\s+", " ", regex=True).str.strip()
    txn_id = column(cols.txn_id)
    payer_name = column(cols.counterparty_name)
    payer_account = column(cols.counterparty_account)
    identity = pd.DataFrame(
        {
            "when": when.astype("string"),
            "amount": pd.Series(signed).astype("string"),
            "account": payer_account if payer_account is not None else "",
            "memo": memo,
        }
    )
    if txn_id is not None:  # a placeholder serial (0000000000, --) on interest lines is no serial
        txn_id = txn_id.mask(txn_id.str.fullmatch(r"[0\-\s]*").fillna(True), "")
    line_key = occurrence_keys(identity) if txn_id is None else txn_id.mask(txn_id == "", pd.NA)
    if txn_id is not None and line_key.isna().any():
        line_key = line_key.fillna(occurrence_keys(identity))
    result = canonical_frame(
        {
            "source": np.full(len(frame), src),
            "file_hash": np.full(len(frame), digest),
            "line_no": line_numbers,
            "provider_txn_id": txn_id,
            "line_key": line_key,
            "kind": np.where(signed >= 0, "credit", "debit"),
            "amount_fen": signed,
            "fee_fen": np.zeros(len(frame), dtype="int64"),
            "txn_time": when,
            "payer_name": payer_name,
            "payer_account": payer_account,
            "memo": memo,
            "account": np.full(len(frame), account),
        },
        len(frame),
    )
    repeated = result["line_key"].duplicated(keep=False)
    if repeated.any() and txn_id is not None:
        key = result.loc[repeated, "line_key"].iloc[0]
        raise PaymentFileError(file, "duplicate_line", f"bank serial {key} appears more than once")
    return result


def _check_footer(file: str, template: BankTemplate, footer_text: str, signed: np.ndarray) -> None:
    checks = [
        (template.debit_total_pattern, "debit total", int(-signed[signed < 0].sum()), "fen"),
        (template.credit_total_pattern, "credit total", int(signed[signed > 0].sum()), "fen"),
        (template.count_pattern, "transaction count", len(signed), "rows"),
    ]
    for pattern, what, computed, unit in checks:
        if not pattern:
            continue
        match = re.search(pattern, footer_text)
        if match is None:
            raise PaymentFileError(file, "truncated", f"the footer lacks the {what} ({pattern})")
        raw = match.group(1)
        try:
            stated = int(raw.replace(",", "")) if unit == "rows" else int(money_fen(pd.Series([raw]))[0])
        except (BadValues, ValueError):
            raise PaymentFileError(file, "bad_value", f"footer {what} {raw!r} is not a number") from None
        check_total(file, what, abs(stated), computed, unit)


def _check_totals_row(file: str, template: BankTemplate, body, signed: np.ndarray) -> None:
    """The totals row's cells under the debit and credit columns (or the one amount column, as a net sum)."""
    row = totals_row(body.footer, template.totals_row_markers, len(body.header))
    if row is None:
        raise PaymentFileError(file, "truncated", f"the totals row ({template.totals_row_markers[0]}…) is missing")
    cols = template.columns
    if template.amount_convention == "debit_credit_columns":
        checks = [(cols.debit, "debit total", int(-signed[signed < 0].sum())),
                  (cols.credit, "credit total", int(signed[signed > 0].sum()))]  # fmt: skip
    else:
        checks = [(cols.amount, "amount total", int(signed.sum()))]
    for candidates, what, computed in checks:
        at = column_index(body.header, candidates)
        if at is None or not row[at].strip():
            continue
        try:
            stated = int(money_fen(pd.Series([row[at]]), what=what)[0])
        except BadValues:
            raise PaymentFileError(file, "bad_value", f"totals row {what} {row[at]!r} is not a number") from None
        check_total(file, f"totals row {what}", abs(stated) if "amount" not in what else stated, computed)


def _dedupe(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        n = n or "_"
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}.{seen[n] - 1}")
    return out


def detect_template(
    source: str | Path | bytes, templates: dict[str, BankTemplate], *, name: str | None = None
) -> str | None:
    """The key of the first template that fits the file (None when none fits)."""
    data, file = read_source(source, name)
    return next((key for key, t in templates.items() if template_fit(data, file, t) is None), None)
