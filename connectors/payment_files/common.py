"""What every payment-file parser shares: the canonical payments frame, the file-level error, money and time
parsing.

Every parser (Alipay, WeChat Pay, bank statements, carrier COD remittances) returns one DataFrame with
``PAYMENT_COLUMNS``:

- ``source``: 'alipay' | 'wechatpay' | 'bank:<template key>' | 'cod:<carrier code>'
- ``file_hash`` (sha256 of the file's bytes), ``line_no`` (1-based line/row of the file)
- ``provider_txn_id``: the provider's id for the transaction (trade no, refund no, bank serial), may be NA
- ``line_key``: the line's identity within its source, stable across re-exports of the same transactions
  (a refund's key differs from its trade's; a bank line without a serial gets a content hash + occurrence)
- ``original_txn_id``: for refunds, the provider id of the payment refunded
- ``merchant_order_no``, ``kind`` ('payment' | 'refund' | 'credit' | 'debit' | 'cod')
- ``amount_fen``: signed integer fen, money in positive (refunds and bank debits negative)
- ``fee_fen``: the provider's fee, positive = charged to us, negative = fee given back (refunds)
- ``txn_time`` (aware UTC), ``payer_name``, ``payer_account``, ``memo``, ``waybill_no``
- ``account``: our merchant/bank/carrier account the file belongs to

A file is taken whole or not at all: totals that disagree with the rows, a truncated file, an unreadable
encoding, another merchant's account or an unparsable row raise ``PaymentFileError`` naming the file and the
problem.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from itertools import zip_longest
from pathlib import Path

import numpy as np
import pandas as pd

from yidi.textfiles import UnreadableText, decode_bytes

BUSINESS_TZ = "Asia/Shanghai"

PAYMENT_COLUMNS = [
    "source",
    "file_hash",
    "line_no",
    "provider_txn_id",
    "line_key",
    "original_txn_id",
    "merchant_order_no",
    "kind",
    "amount_fen",
    "fee_fen",
    "txn_time",
    "payer_name",
    "payer_account",
    "memo",
    "waybill_no",
    "account",
]
STRING_COLUMNS = [
    "source",
    "file_hash",
    "provider_txn_id",
    "line_key",
    "original_txn_id",
    "merchant_order_no",
    "kind",
    "payer_name",
    "payer_account",
    "memo",
    "waybill_no",
    "account",
]
KINDS = frozenset({"payment", "refund", "credit", "debit", "cod"})


class PaymentFileError(ValueError):
    """A payment file refused as a whole. ``reason`` is a short code, the message names the file and problem.

    Reasons: 'encoding', 'format', 'truncated', 'totals_mismatch', 'other_account', 'duplicate_line', 'bad_value'.
    """

    def __init__(self, file: str, reason: str, problem: str):
        self.file = file
        self.reason = reason
        self.problem = problem
        super().__init__(f"{file}: rejected ({reason}): {problem}")


class BadValues(ValueError):
    """Raised by the column parsers; parsers turn it into a PaymentFileError with the file name."""


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_source(source: str | Path | bytes, name: str | None = None) -> tuple[bytes, str]:
    """Bytes and a display name for a path or raw bytes."""
    if isinstance(source, bytes | bytearray):
        return bytes(source), name or "<bytes>"
    path = Path(source)
    return path.read_bytes(), name or path.name


def decode_text(data: bytes, fallback: str, *, file: str) -> tuple[str, str]:
    """Decode a text export by the house policy (``yidi.textfiles.decode_bytes``: BOM, UTF-8, else ``fallback``;
    UTF-16 and undecodable bytes refused). Whether the text is the expected format (mojibake from a wrong code
    page) is checked by the caller's header test."""
    try:
        return decode_bytes(data, fallback)
    except UnreadableText as exc:
        raise PaymentFileError(file, "encoding", str(exc)) from None


def is_zip(data: bytes) -> bool:
    """A zip container: an Alipay bill or an xlsx workbook (or a damaged one of either)."""
    return data[:4] == b"PK\x03\x04"


def is_workbook(data: bytes, file: str) -> bool:
    return is_zip(data) or file.lower().endswith((".xlsx", ".xlsm"))


SNIFF_BYTES = 8192


def sniff_text(data: bytes) -> str:
    """The file's first 8 KiB read both as UTF-8 and as GB18030, leniently: for recognising a format only (the
    detectors look for header words), never for reading a file, which ``decode_text`` does strictly."""
    head = data[:SNIFF_BYTES]
    return head.decode("utf-8", errors="ignore") + head.decode("gb18030", errors="ignore")


def cell_text(value) -> str:
    """A workbook cell as the text a csv export would show."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S") if value.time() != time(0) else value.strftime("%Y-%m-%d")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, time):
        return value.strftime("%H:%M:%S")
    if isinstance(value, float):
        text = repr(value)  # shortest exact form (1234.5), never a rounded guess
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def _formula_as_text(value, formula):
    """A formula cell is read as its text (a payer name ``=HYPERLINK(…)`` stays that), unless its saved result is
    a number (a computed amount)."""
    if isinstance(formula, str) and formula.startswith("=") and not (
        isinstance(value, int | float) and not isinstance(value, bool)
    ):
        return formula
    return value


def read_cells(data: bytes, file: str, *, encoding: str = "gb18030", delimiter: str = ",") -> list[list[str]]:
    """A csv/txt/xlsx export as rows of cell strings (xlsx: first sheet; text: strict decoding)."""
    if is_workbook(data, file):
        from openpyxl import load_workbook

        try:
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            formulas = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
            rows = [[cell_text(_formula_as_text(v, f)) for v, f in zip_longest(row or (), formula_row or ())]
                    for row, formula_row in zip_longest(book.worksheets[0].iter_rows(values_only=True),
                                                        formulas.worksheets[0].iter_rows(values_only=True))]
            book.close()
            formulas.close()
        except Exception as exc:  # noqa: BLE001 - openpyxl/zipfile raise many types for a damaged file
            raise PaymentFileError(
                file, "truncated", f"not a readable xlsx workbook (cut off or damaged: {type(exc).__name__})"
            ) from None
        return rows
    text, _ = decode_text(data, encoding, file=file)
    return [list(row) for row in csv.reader(io.StringIO(text), delimiter=delimiter)]


def normalise_text(value: str) -> str:
    """Full-width digits/letters/punctuation to ASCII (NFKC), trimmed."""
    return unicodedata.normalize("NFKC", value).strip()


def normalise_headers(columns: Iterable) -> list[str]:
    """Header names compared in NFKC: 订单金额（元） and 订单金额(元) are the same column."""
    return [normalise_text(str(c)).lstrip("`").strip() for c in columns]


def require_columns(frame: pd.DataFrame, names: Sequence[str], *, file: str, what: str) -> None:
    missing = [n for n in (normalise_text(x) for x in names) if n not in frame.columns]
    if missing:
        raise PaymentFileError(
            file,
            "format",
            f"{what}: missing columns {missing} (a different export or a wrong encoding: found "
            f"{list(frame.columns)[:8]}…)",
        )


_MONEY_JUNK = re.compile(r"[\s,¥$`'\"]|RMB|CNY|元")


def clean_money_text(values: pd.Series) -> pd.Series:
    """Money text as plain ``-123.45``: full-width digits, thousands separators, currency signs and
    accounting parentheses handled."""
    text = values.astype("string").fillna("").str.normalize("NFKC")
    text = text.str.replace(_MONEY_JUNK.pattern, "", regex=True)
    in_parens = text.str.startswith("(") & text.str.endswith(")")
    text = text.where(~in_parens, "-" + text.str.slice(1, -1))
    return text.str.replace(r"^\+", "", regex=True)


SMALL_COLUMN = 2000  # below this many values, plain Python beats the per-call cost of vectorised string ops


def _money_scalar(value, decimals: int, blank_as_zero: bool) -> int | None:
    """One money text to units (None when it is not money); the same rules as the vectorised path."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        value = ""
    text = _MONEY_JUNK.sub("", unicodedata.normalize("NFKC", str(value)))
    if text.startswith("(") and text.endswith(")"):
        text = "-" + text[1:-1]
    text = text.removeprefix("+")
    if text == "" and blank_as_zero:
        return 0
    match = _MONEY_SHAPE[decimals].fullmatch(text)
    if match is None:
        return None
    negative = text.startswith("-")
    whole, _, fraction = text.lstrip("-").partition(".")
    units = int(whole or "0") * 10**decimals + int((fraction or "").ljust(decimals, "0") or "0")
    return -units if negative else units


_MONEY_SHAPE = {d: re.compile(rf"-?(\d+(\.\d{{0,{d}}})?|\.\d{{1,{d}}})") for d in range(1, 7)}


def money_units(values: pd.Series, *, decimals: int = 2, blank_as_zero: bool = False, what: str = "amount"):
    """Money text to integers in units of 10^-decimals yuan (exact, vectorised). Raises ``BadValues``."""
    if len(values) < SMALL_COLUMN:
        parsed = [_money_scalar(v, decimals, blank_as_zero) for v in values.tolist()]
        if any(p is None for p in parsed):
            bad = [(i, v) for i, (v, p) in enumerate(zip(values.tolist(), parsed, strict=True)) if p is None]
            shown = ", ".join(f"row {i + 1}: {v!r}" for i, v in bad[:5])
            raise BadValues(f"{what} not a money amount with at most {decimals} decimals ({shown})")
        return np.asarray(parsed, dtype="int64")
    text = clean_money_text(values)
    if blank_as_zero:
        text = text.mask(text == "", "0")
    ok = text.str.fullmatch(rf"-?(\d+(\.\d{{0,{decimals}}})?|\.\d{{1,{decimals}}})").fillna(False)
    if not bool(ok.all()):
        bad = values[~ok.to_numpy()]
        shown = ", ".join(f"row {i + 1}: {v!r}" for i, v in list(bad.items())[:5])
        raise BadValues(f"{what} not a money amount with at most {decimals} decimals ({shown})")
    negative = text.str.startswith("-").to_numpy()
    body = text.str.lstrip("-")
    parts = body.str.partition(".")
    whole = parts[0].mask(parts[0] == "", "0").astype("int64").to_numpy()
    fraction = parts[2].str.pad(decimals, side="right", fillchar="0").mask(parts[2] == "", "0" * decimals)
    fraction = fraction.astype("int64").to_numpy() if decimals else np.zeros(len(text), dtype="int64")
    units = whole * (10**decimals) + fraction
    return np.where(negative, -units, units).astype("int64")


def money_fen(values: pd.Series, **kwargs) -> np.ndarray:
    return money_units(values, decimals=2, **kwargs)


def parse_local_times(
    values: pd.Series, formats: Sequence[str], *, what: str = "time", tz: str = BUSINESS_TZ
) -> pd.Series:
    """Local (Asia/Shanghai) time text in any of ``formats`` to aware UTC timestamps. Raises ``BadValues``."""
    text = values.astype("string").str.normalize("NFKC").str.strip()
    result = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    remaining = text.notna() & (text != "")
    for fmt in formats:
        if not remaining.any():
            break
        parsed = pd.to_datetime(text[remaining], format=fmt, errors="coerce")
        hit = parsed.notna()
        result.loc[parsed.index[hit]] = parsed[hit].astype("datetime64[us]")
        remaining.loc[parsed.index[hit]] = False
    if remaining.any() or result.isna().any():
        bad = text[result.isna()]
        shown = ", ".join(f"row {i + 1}: {v!r}" for i, v in list(bad.items())[:5])
        raise BadValues(f"{what} not in the expected formats {list(formats)} ({shown})")
    return result.dt.tz_localize(tz, ambiguous="raise", nonexistent="raise").dt.tz_convert("UTC")


def check_account(found: str | None, accounts: Sequence[str] | None, *, file: str, source: str) -> str:
    """The file's account must be one of ours; digits and letters compared, spacing ignored."""
    if not found:
        raise PaymentFileError(file, "format", "no account number found in the file header")
    if accounts is None:
        return found
    key = re.sub(r"[^0-9A-Za-z]", "", normalise_text(found))
    ours = {re.sub(r"[^0-9A-Za-z]", "", normalise_text(a)) for a in accounts}
    if key not in ours:
        raise PaymentFileError(
            file,
            "other_account",
            f"the file is for account {found}, which is not one of ours for {source} "
            f"(configured: {', '.join(sorted(accounts)) or 'none'}; see [settlement.accounts])",
        )
    return found


def check_total(file: str, what: str, stated: int, computed: int, unit: str = "fen") -> None:
    if int(stated) != int(computed):
        raise PaymentFileError(
            file, "totals_mismatch", f"{what}: the file states {stated} {unit}, its rows add up to {computed}"
        )


def check_unique_lines(frame: pd.DataFrame, *, file: str) -> None:
    """A provider id is unique by definition: the same id twice in one file means a corrupt export."""
    repeated = frame[frame.duplicated("line_key", keep=False)]
    if not repeated.empty:
        key = repeated["line_key"].iloc[0]
        lines = repeated.loc[repeated["line_key"] == key, "line_no"].tolist()
        raise PaymentFileError(
            file,
            "duplicate_line",
            f"transaction {key} appears {len(lines)} times (lines {lines[:5]}); "
            f"{repeated['line_key'].nunique()} ids repeated in all",
        )


def canonical_frame(columns: dict, n: int) -> pd.DataFrame:
    """The canonical payments frame from column arrays (missing columns NA), typed and in order."""
    frame = pd.DataFrame(index=pd.RangeIndex(n))
    for name in PAYMENT_COLUMNS:
        value = columns.get(name)
        if name in ("amount_fen", "fee_fen", "line_no"):
            frame[name] = np.zeros(n, dtype="int64") if value is None else np.asarray(value, dtype="int64")
        elif name == "txn_time":
            frame[name] = pd.Series(value).reset_index(drop=True) if value is not None else pd.NaT
        else:
            series = pd.Series(value if value is not None else [pd.NA] * n, dtype="string")
            series = series.reset_index(drop=True).str.strip()
            frame[name] = series.mask(series == "", pd.NA)
    bad_kinds = set(frame["kind"].dropna().unique()) - KINDS
    if bad_kinds:  # pragma: no cover - a parser bug, not bad input
        raise ValueError(f"unknown kinds {bad_kinds}")
    return frame


def occurrence_keys(parts: pd.DataFrame) -> pd.Series:
    """Identity for lines with no provider id: a hash of their content plus the occurrence number, so two
    identical transfers on one day stay two lines and a re-export of the same statement maps to the same keys."""
    text = parts.astype("string").fillna("")
    joined = text.iloc[:, 0]
    for column in text.columns[1:]:
        joined = joined.str.cat(text[column], sep="|")
    digests = joined.map(lambda s: hashlib.sha1(s.encode("utf-8")).hexdigest()[:20])
    occurrence = digests.groupby(digests).cumcount() + 1
    return digests + "#" + occurrence.astype("string")
