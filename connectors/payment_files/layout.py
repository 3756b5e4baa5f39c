"""Reading a configured export layout (bank statements and carrier COD remittances alike): the rows of a file,
its header row, the title lines above it, the data rows, and the footer from the first totals line on.

Templates (``yidi.settlement_policy.BankTemplate`` / ``CodTemplate``) say which columns to look for, the
encoding, the delimiter, the rows to skip and which rows end the data; nothing here knows a bank or a carrier.
``fit_reason`` says why a template does not fit a file, so a refused file can name every template tried.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from connectors.payment_files.common import (
    PaymentFileError,
    cell_text,
    is_workbook,
    normalise_text,
    read_cells,
)

HEADER_SEARCH_ROWS = 40
DETECT_BYTES = 64 * 1024


def head_rows(
    data: bytes, file: str, *, encoding: str, delimiter: str, cache: dict | None = None
) -> list[list[str]]:
    """The first rows of a file, leniently decoded: for recognising a layout only (reading is strict).
    ``cache`` (one dict per file) keeps them for the next template with the same encoding and delimiter."""
    key = (encoding, delimiter)
    if cache is not None and key in cache:
        return cache[key]
    rows = _head_rows(data, file, encoding=encoding, delimiter=delimiter)
    if cache is not None:
        cache[key] = rows
    return rows


def _head_rows(data: bytes, file: str, *, encoding: str, delimiter: str) -> list[list[str]]:
    if is_workbook(data, file):
        from openpyxl import load_workbook

        try:
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            rows = []
            for row in book.worksheets[0].iter_rows(values_only=True, max_row=HEADER_SEARCH_ROWS + 5):
                rows.append([cell_text(v) for v in row])
            book.close()
            return rows
        except Exception:  # noqa: BLE001 - a damaged workbook simply does not fit
            return []
    head = data[:DETECT_BYTES]
    if head.startswith(b"\xef\xbb\xbf"):
        text = head[3:].decode("utf-8", errors="replace")
    else:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as exc:
            # a cut multi-byte character at the end of the sample is still UTF-8; anything earlier is not
            text = head.decode("utf-8", errors="replace") if exc.start > len(head) - 4 else None
        if text is None:
            text = head.decode(encoding, errors="replace")
    lines = text.splitlines()[: HEADER_SEARCH_ROWS + 5]
    return [list(r) for r in csv.reader(lines, delimiter=delimiter)]


def has_any(cells: set[str], candidates: Sequence[str]) -> bool:
    return any(normalise_text(c) in cells for c in candidates)


def find_header(
    rows: list[list[str]], required: Sequence[Sequence[str]], header_row: int | None
) -> int | None:
    """The header row: ``header_row`` when given (it must hold the columns), else the first of 40 rows holding
    one candidate name of every required column."""
    candidates = [header_row] if header_row is not None else range(min(HEADER_SEARCH_ROWS, len(rows)))
    for i in candidates:
        if i >= len(rows):
            break
        cells = {normalise_text(c) for c in rows[i]}
        if all(has_any(cells, names) for names in required):
            return i
    return None


def title_text(rows: list[list[str]], header_at: int) -> str:
    """The lines above the header as one text, cells separated by single spaces."""
    return " ".join(normalise_text(" ".join(r)) for r in rows[:header_at])


def words_found(words: Sequence[str], text: str, name: str) -> bool:
    return not words or any(normalise_text(w) in text or w in name for w in words)


def fit_reason(
    rows: list[list[str]],
    *,
    required: Sequence[Sequence[str]],
    header_row: int | None,
    detect_words: Sequence[str],
    name: str,
) -> str | None:
    """None when the layout fits the file's first rows, else a short reason why not."""
    if not rows:
        return "the file is empty or not readable"
    header_at = find_header(rows, required, header_row)
    if header_at is None:
        wanted = " + ".join(names[0] for names in required)
        return f"no header with {wanted}" + (f" in row {header_row}" if header_row is not None else "")
    seen = title_text(rows, header_at) + " " + normalise_text(" ".join(rows[header_at]))
    if not words_found(detect_words, seen, name):
        return f"header found, but none of {list(detect_words)} in the title lines, header or file name"
    return None


@dataclass
class Body:
    """The data rows of an export, cut to the header's width, and where they came from."""

    header: list[str]
    rows: list[list[str]]
    line_numbers: list[int]
    footer: list[list[str]]  # from the first footer row to the end (empty when there is none)


def split_body(
    rows: list[list[str]],
    header_at: int,
    *,
    footer_markers: Sequence[str],
    skip_markers: Sequence[str],
    workbook: bool,
    file: str,
) -> Body:
    """Data rows from below the header until the first row whose first non-empty cell starts with a footer
    marker; blank rows and rows starting with a skip marker are left out; a short text row means a cut file."""
    header = [normalise_text(c) for c in rows[header_at]]
    ends = tuple(normalise_text(m) for m in footer_markers)
    skips = tuple(normalise_text(m) for m in skip_markers)
    body, numbers = [], []
    for i in range(header_at + 1, len(rows)):
        cells = rows[i]
        if not any(c.strip() for c in cells):
            continue
        first = normalise_text(next(c for c in cells if c.strip()))
        if ends and first.startswith(ends):
            return Body(header, body, numbers, rows[i:])
        if skips and first.startswith(skips):
            continue
        if len(cells) < len(header) and not workbook:
            raise PaymentFileError(file, "truncated", f"line {i + 1} has {len(cells)} of {len(header)} fields")
        body.append((cells + [""] * len(header))[: len(header)])
        numbers.append(i + 1)
    return Body(header, body, numbers, [])


def totals_row(footer: list[list[str]], markers: Sequence[str], width: int) -> list[str] | None:
    """The totals row of the footer (first non-empty cell starts with a marker), padded to ``width``."""
    wanted = tuple(normalise_text(m) for m in markers)
    for cells in footer:
        filled = [c for c in cells if c.strip()]
        if filled and normalise_text(filled[0]).startswith(wanted):
            return (list(cells) + [""] * width)[:width]
    return None


def column_index(header: list[str], candidates: Sequence[str]) -> int | None:
    for name in candidates:
        key = normalise_text(name)
        if key in header:
            return header.index(key)
    return None


def read_rows(data: bytes, file: str, *, encoding: str, delimiter: str) -> list[list[str]]:
    """The whole file as rows of cells, strictly decoded (see ``common.read_cells``)."""
    return read_cells(data, file, encoding=encoding, delimiter=delimiter)
