"""Staff exports of any store table (the CLI masks personal columns unless ``--unmasked``, which is recorded)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection, func, select

from yidi.schema import metadata
from yidi.sheets import write_csv


class UnknownTable(LookupError):
    pass


def count_rows(conn: Connection, table_name: str) -> int:
    import yidi.schema_all  # noqa: F401

    table = metadata.tables.get(table_name)
    return conn.execute(select(func.count()).select_from(table)).scalar() if table is not None else 0


def export_table(
    conn: Connection,
    table_name: str,
    fmt: str,
    output: Path,
    chunk_rows: int = 50_000,
    progress: Callable[[int], None] | None = None,
    mask: bool = False,
    stats: dict | None = None,
) -> int:
    """Write ``table_name`` to ``output`` as csv (UTF-8 with BOM, for Excel), xlsx or json lines; returns rows.

    ``progress`` is called with the number of rows written after each chunk. ``mask`` masks the personal columns
    (``yidi.access_log.personal_columns``); ``stats["people"]`` counts the rows whose personal data was written in
    full (for the access trail).
    """
    import yidi.schema_all  # noqa: F401  (every area's tables on the shared metadata)
    from yidi.access_log import personal_columns
    from yidi.masking import mask_frame

    table = metadata.tables.get(table_name)
    if table is None:
        raise UnknownTable(f"no table {table_name!r}; tables: {', '.join(sorted(metadata.tables))}")
    result = conn.execution_options(stream_results=True).execute(select(table).order_by(*table.primary_key))
    columns = list(result.keys())
    personal = personal_columns(columns)
    people = 0
    output.parent.mkdir(parents=True, exist_ok=True)
    total = 0
    frames = []
    with output.open("w", encoding="utf-8-sig" if fmt == "csv" else "utf-8", newline="") as handle:
        while rows := result.fetchmany(chunk_rows):
            frame = pd.DataFrame(rows, columns=columns)
            if personal and mask:
                frame = mask_frame(frame, personal)
            elif personal:
                people += int(frame[list(personal)].notna().any(axis=1).sum())
            total += len(frame)
            if progress:
                progress(len(frame))
            if fmt == "csv":
                write_csv(frame, handle, header=total == len(frame))  # formula-like text quoted (OWASP)
            elif fmt == "json":
                frame.to_json(handle, orient="records", lines=True, force_ascii=False, date_format="iso")
            else:
                frames.append(frame)
    if fmt == "xlsx":
        frame = pd.concat(frames) if frames else pd.DataFrame(columns=columns)
        write_staff_xlsx(table_name, frame, output)
    if stats is not None:
        stats["people"] = people
    return total


YUAN_FORMAT = '"¥"#,##0.00'  # Excel's number format for money in yuan (the cell stays a number)
TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"


def staff_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """A table as staff read it in Excel: money columns (``*_fen``) as yuan numbers (``*_yuan``), stored UTC times
    as Asia/Shanghai times Excel can read (no zone in the cell, so the zone goes in the header:
    ``created_at (Asia/Shanghai)``). Returns the frame and each changed column's Excel number format."""
    from yidi.workdays import BUSINESS_TZ

    out, formats = frame.copy(), {}
    for column in frame.columns:
        values = frame[column]
        if str(column).endswith("_fen") and (pd.api.types.is_numeric_dtype(values) or values.isna().all()):
            name = f"{str(column).removesuffix('_fen')}_yuan"
            out[column] = pd.to_numeric(values, errors="coerce") / 100
            out = out.rename(columns={column: name})
            formats[name] = YUAN_FORMAT
        elif isinstance(values.dtype, pd.DatetimeTZDtype):
            name = f"{column} (Asia/Shanghai)"
            out[column] = values.dt.tz_convert(BUSINESS_TZ).dt.tz_localize(None)
            out = out.rename(columns={column: name})
            formats[name] = TIME_FORMAT
    return out, formats


def write_staff_xlsx(sheet: str, frame: pd.DataFrame, output: Path) -> None:
    """``staff_frame`` written to xlsx with the number formats on the cells (text cells typed as strings)."""
    from openpyxl.utils import get_column_letter

    from yidi.sheets import excel_writer

    shown, formats = staff_frame(frame)
    with excel_writer(output) as writer:
        shown.to_excel(writer, sheet_name=sheet[:31], index=False)
        worksheet = writer.sheets[sheet[:31]]
        for index, column in enumerate(shown.columns, start=1):
            if column in formats:
                letter = get_column_letter(index)
                for (cell,) in worksheet.iter_rows(min_row=2, min_col=index, max_col=index):
                    cell.number_format = formats[column]
                worksheet.column_dimensions[letter].width = max(14, len(str(column)) + 2)
