"""Staff exports of any store table (the CLI masks personal columns unless ``--unmasked``, which is recorded)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection, func, select

from yidi.schema import metadata
from yidi.sheets import write_csv, write_xlsx


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


def write_staff_xlsx(sheet: str, frame: pd.DataFrame, output: Path) -> None:
    """The table as staff read it in Excel: yuan numbers with a currency format, Beijing times Excel can read
    (``yidi.sheets.people_frame``), text cells typed as strings."""
    write_xlsx({sheet: frame}, output)
