"""Reading the text files people and banks produce: UTF-8, UTF-8 with BOM, GBK/GB18030; csv and xlsx.

Detection is strict, never a silent wrong guess: a BOM decides; else valid UTF-8 is UTF-8 (GBK text is almost
never valid UTF-8); else strict GB18030 (a superset of GBK and GB2312); else the file is refused with the byte
offset that failed.
"""

from __future__ import annotations

import codecs
import io
from pathlib import Path

import pandas as pd


class UnreadableText(ValueError):
    """The bytes are neither UTF-8 nor GB18030."""


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Return ``(text, encoding)``; raises ``UnreadableText``."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise UnreadableText(
            f"not UTF-8 and not GBK/GB18030 (bad byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def _is_xlsx(data: bytes, name: str | None) -> bool:
    return data[:4] == b"PK\x03\x04" or bool(name and name.lower().endswith((".xlsx", ".xlsm")))


def read_table(source: str | Path | bytes, name: str | None = None, *, header_row: int = 0) -> pd.DataFrame:
    """A csv or xlsx table with every cell as a string (NA for empty), header names stripped."""
    if isinstance(source, str | Path):
        name = name or str(source)
        data = Path(source).read_bytes()
    else:
        data = source
    if _is_xlsx(data, name):
        # data_only: a formula cell yields its cached value, never the formula text.
        frame = pd.read_excel(io.BytesIO(data), dtype=str, header=header_row, engine="openpyxl")
    else:
        text, _ = decode_bytes(data)
        frame = pd.read_csv(io.StringIO(text), dtype=str, header=header_row, skip_blank_lines=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.dropna(how="all")
    return frame.apply(lambda column: column.str.strip())
