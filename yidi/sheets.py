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


# --- what a person sees when the workbook opens (issue 15: money in yuan, Beijing time, columns that show) ---------

YUAN_FORMAT = '"¥"#,##0.00'  # Excel's number format for money in yuan (the cell stays a number)
TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
SHARE_FORMAT = "0.00%"  # a *_rate kept as a share (0.9988) shows as 99.88%
TIME_LABEL = " (Asia/Shanghai)"  # Excel has no time zones: the zone goes in the header
_YUAN_TEXT = re.compile(r"-?[\d,]+(?:\.\d+)?")
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")
MAX_WIDTH = 60


def _is_text(values: pd.Series) -> bool:
    return values.dtype == object or isinstance(values.dtype, pd.StringDtype)


def _is_money(column: str) -> bool:
    return column.endswith(("_yuan", "(yuan)", "（元）", "(元)"))


def people_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """A table as staff read it in Excel; returns it and each column's number format.

    * money the store keeps in fen (``*_fen``) becomes a yuan number (``*_yuan``, replacing a ``*_yuan`` text
      column made for the terminal); a ``*_yuan`` column of text such as ``1,234.50`` becomes that number;
      every money column gets the currency format;
    * a ``*_rate`` kept as a share (0 to 1) shows as a percentage;
    * stored times (aware, or ISO text of a ``*_at``/``*_time`` column, which the store keeps in UTC) become
      Beijing wall-clock times Excel can read, labelled ``(Asia/Shanghai)`` in the header.
    """
    from yidi.workdays import BUSINESS_TZ

    out, formats = frame.copy(), {}
    for column in list(frame.columns):
        name, values = str(column), frame[column]
        if name.endswith("_fen") and (pd.api.types.is_numeric_dtype(values) or values.isna().all()):
            yuan = f"{name.removesuffix('_fen')}_yuan"
            out = out.drop(columns=[yuan], errors="ignore")
            out[column] = pd.to_numeric(values, errors="coerce") / 100
            out = out.rename(columns={column: yuan})
            formats[yuan] = YUAN_FORMAT
        elif _is_money(name):
            if _is_text(values) and values.dropna().map(lambda v: bool(_YUAN_TEXT.fullmatch(str(v)))).all():
                plain = values.astype("string").str.replace(",", "", regex=False)
                out[column] = pd.to_numeric(plain, errors="coerce").astype("float64")
            if pd.api.types.is_numeric_dtype(out[column]):
                formats[name] = YUAN_FORMAT
        elif name.endswith("_rate") and pd.api.types.is_numeric_dtype(values) and values.dropna().between(0, 1).all():
            formats[name] = SHARE_FORMAT
        else:
            when = None
            if isinstance(values.dtype, pd.DatetimeTZDtype):
                when = values
            elif _is_text(values) and name.endswith(("_at", "_time")) and values.notna().any():
                present = values.dropna()
                if present.map(lambda v: hasattr(v, "tzinfo") or bool(_ISO_TIME.fullmatch(str(v)))).all():
                    when = pd.to_datetime(values, utc=True, format="mixed")
            if when is not None:
                out[column] = when.dt.tz_convert(BUSINESS_TZ).dt.tz_localize(None)
                out = out.rename(columns={column: name + TIME_LABEL})
                formats[name + TIME_LABEL] = TIME_FORMAT
    return out, formats


def _display_width(value: object) -> int:
    text = f"{value:,.2f}" if isinstance(value, float) else str(value)
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)  # CJK characters take two columns


def polish_sheet(sheet, frame: pd.DataFrame, formats: Mapping[str, str]) -> None:
    """Number formats on the cells, columns wide enough for what they hold (CJK counted double), the header row
    frozen, filterable and printed on every page, which is landscape and one page wide."""
    from openpyxl.utils import get_column_letter

    for index, column in enumerate(frame.columns, start=1):
        letter = get_column_letter(index)
        if column in formats:
            for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                cell.number_format = formats[column]
        sample = frame[column].head(500).dropna()
        widest = max([_display_width(column), *(_display_width(v) for v in sample)])
        if formats.get(column) == TIME_FORMAT:
            widest = max(widest, 19)
        sheet.column_dimensions[letter].width = min(MAX_WIDTH, widest + 2)
    sheet.page_setup.orientation = "landscape"  # printed: every column on one page wide, as many pages long
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    sheet.page_setup.fitToWidth, sheet.page_setup.fitToHeight = 1, 0
    sheet.print_title_rows = "1:1"
    if len(frame.columns):
        sheet.freeze_panes = "A2"
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(frame.columns))}{max(1, len(frame) + 1)}"


def write_people_sheet(writer: pd.ExcelWriter, name: str, frame: pd.DataFrame):
    """``frame`` as one sheet people read (``people_frame`` and ``polish_sheet``); returns the worksheet."""
    shown, formats = people_frame(frame)
    shown.to_excel(writer, sheet_name=name[:31], index=False)
    # openpyxl renames a sheet whose name clashes, case aside, with one already there ("sheet" beside "Sheet")
    sheet = writer.sheets.get(name[:31]) or writer.book.worksheets[-1]
    polish_sheet(sheet, shown, formats)
    return sheet


@contextmanager
def excel_writer(path: Path | io.BytesIO) -> Iterator[pd.ExcelWriter]:
    """``pd.ExcelWriter`` (openpyxl) whose text cells are all saved as strings, never as formulas."""
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        yield writer
        type_text_cells_as_strings(writer.book)


def write_xlsx(sheets: Mapping[str, pd.DataFrame], path: Path | io.BytesIO) -> None:
    """One sheet per frame (sheet names cut to Excel's 31 characters) as people read it (``write_people_sheet``),
    text cells typed as strings."""
    with excel_writer(path) as writer:
        for name, frame in sheets.items():
            write_people_sheet(writer, str(name), frame)
