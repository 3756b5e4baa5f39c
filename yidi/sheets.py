"""The one writer for every spreadsheet and csv yidi hands to people (exports, settlement workbooks, pick lists,
stock reports), safe against formula injection the way OWASP describes ("CSV Injection"; ASVS 1.2.10).

Customer names, addresses, item names and payer names come from outside. A cell whose text begins with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return is a formula to Excel, LibreOffice and WPS
(``=HYPERLINK("http://…","x")``, ``+cmd|' /C calc'!A0``), so:

* **csv**: such a text is written with a single quote in front (``'=HYPERLINK(…)``), which spreadsheets show as
  text; fields are quoted as RFC 4180 says, lines end in CRLF (so a CR or LF inside a text is always quoted).
* **xlsx**: every text cell is typed as a string (openpyxl would otherwise store ``=…`` as a live formula), so
  the person sees exactly the text that was received; no quote is added.

Everything else is written unchanged: numbers stay numbers, and a text that is a plain number (``-12.50``, a
refund in yuan) is not a formula and keeps its sign.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d[\d,]*)?(?:\.\d+)?%?")


def is_formula_like(text: object) -> bool:
    """True when a spreadsheet would read ``text`` as a formula (OWASP's starting characters), a plain signed
    number excepted."""
    return (
        isinstance(text, str)
        and text.startswith(FORMULA_STARTS)
        and not (any(c.isdigit() for c in text) and _PLAIN_NUMBER.fullmatch(text))
    )


def csv_cell(value: object) -> object:
    """One value as it may go into a csv: a formula-like text gets a leading single quote."""
    return "'" + value if is_formula_like(value) else value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every formula-like text cell quoted for csv (text columns only; a copy when anything
    changes). Column names are cells too."""
    out = frame
    for position in range(frame.shape[1]):
        series = frame.iloc[:, position]
        if series.dtype == object or isinstance(series.dtype, pd.StringDtype):
            text = series.astype("str") if series.dtype != object else series
            risky = text.map(is_formula_like, na_action="ignore").fillna(False).astype(bool)
            if risky.any():
                if out is frame:
                    out = frame.copy()
                out.iloc[:, position] = series.where(~risky, "'" + text.where(risky, ""))
    renamed = {c: csv_cell(c) for c in out.columns if is_formula_like(c)}
    return out.rename(columns=renamed) if renamed else out


def write_csv(frame: pd.DataFrame, target: Path | io.TextIOBase, *, header: bool = True,
              encoding: str = "utf-8-sig") -> None:
    """``frame`` as csv (UTF-8 with BOM by default, so Excel reads Chinese), formula-like text quoted."""
    safe = csv_safe(frame)
    if isinstance(target, (str, Path)):
        safe.to_csv(target, index=False, header=header, encoding=encoding, lineterminator="\r\n")
    else:
        safe.to_csv(target, index=False, header=header, lineterminator="\r\n")


def csv_bytes(frame: pd.DataFrame, encoding: str = "utf-8-sig") -> bytes:
    """The csv text of ``frame`` (formula-like text quoted), encoded: for writers that write bytes atomically."""
    return csv_safe(frame).to_csv(index=False, lineterminator="\r\n").encode(encoding)


def type_text_cells_as_strings(book) -> int:
    """Make every cell openpyxl took for a formula a plain string cell again (yidi never writes formulas);
    returns how many were changed."""
    changed = 0
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                if cell.data_type == "f":
                    cell.data_type = "s"
                    changed += 1
    return changed


@contextmanager
def excel_writer(path: Path | io.BytesIO) -> Iterator[pd.ExcelWriter]:
    """``pd.ExcelWriter`` (openpyxl) whose text cells are all saved as strings, never as formulas."""
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        yield writer
        type_text_cells_as_strings(writer.book)


def write_xlsx(sheets: Mapping[str, pd.DataFrame], path: Path | io.BytesIO) -> None:
    """One sheet per frame (sheet names cut to Excel's 31 characters), text cells typed as strings."""
    with excel_writer(path) as writer:
        for name, frame in sheets.items():
            frame.to_excel(writer, sheet_name=str(name)[:31], index=False)
