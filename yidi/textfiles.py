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
    """The bytes are neither UTF-8 nor GB18030 (or are UTF-16/binary); the message says where it failed."""


GBK_FAMILY = ("gbk", "gb2312", "gb18030", "cp936")


def _fallback(fallback: str) -> str:
    # GB18030 is a strict superset of GBK and GB2312: a file said to be GBK that uses a GB18030-only character
    # is still read right, and nothing GBK reads differently.
    return "gb18030" if fallback.lower().replace("-", "").replace("_", "") in GBK_FAMILY else fallback


def _refuse_utf16(head: bytes) -> None:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head[:4096]:
        raise UnreadableText("the file is UTF-16 or binary: not UTF-8 and not GBK/GB18030 text")


def decode_bytes(data: bytes, fallback: str = "gb18030") -> tuple[str, str]:
    """Return ``(text, encoding)``: a UTF-8 BOM decides; else valid UTF-8; else strict ``fallback`` (GB18030
    for the GBK family). UTF-16, binary and undecodable bytes raise ``UnreadableText`` with the offset."""
    _refuse_utf16(data)
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8) :].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise UnreadableText(f"has a UTF-8 mark but is not UTF-8 (bad byte at offset {exc.start + 3})") from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    encoding = _fallback(fallback)
    try:
        return data.decode(encoding), encoding
    except (UnicodeDecodeError, LookupError) as exc:
        where = f" (bad byte 0x{data[exc.start]:02x} at offset {exc.start})" if isinstance(exc, UnicodeDecodeError) else ""
        raise UnreadableText(f"not UTF-8 and not {_describe(encoding)}{where}") from None


def _describe(encoding: str) -> str:
    return "GBK/GB18030" if encoding == "gb18030" else encoding


def detect_stream_encoding(stream: io.BufferedIOBase, fallback: str = "gb18030", block: int = 1 << 20) -> str:
    """The same policy as ``decode_bytes`` for a large file, in constant memory: the whole stream is checked
    (never a guess on a prefix) and rewound; returns 'utf-8-sig', 'utf-8' or the fallback's codec."""
    start = stream.tell()
    head = stream.read(4096)
    stream.seek(start)
    _refuse_utf16(head)
    candidates = ["utf-8-sig"] if head.startswith(codecs.BOM_UTF8) else ["utf-8", _fallback(fallback)]
    failure = ""
    for encoding in candidates:
        if encoding != _fallback(fallback) and _valid_utf8(stream, block):
            stream.seek(start)
            return encoding
        stream.seek(start)  # not valid UTF-8 (or the fallback): the decoder says where it fails, or that it reads
        decoder = codecs.getincrementaldecoder(encoding)("strict")
        offset = 0
        try:
            while chunk := stream.read(block):
                decoder.decode(chunk)
                offset += len(chunk)
            decoder.decode(b"", final=True)
            stream.seek(start)
            return encoding
        except UnicodeDecodeError as exc:
            failure = f"not UTF-8 and not {_describe(candidates[-1])} (bad byte at offset {offset + exc.start})"
        stream.seek(start)
    raise UnreadableText(failure)


def _valid_utf8(stream: io.BufferedIOBase, block: int) -> bool:
    """Whether the rest of the stream is valid UTF-8, checked by Arrow's validator (the same rules as Python's strict
    decoder, without building any text: a fifth of the cost on a large drop). A character cut by a block's end is
    carried into the next block."""
    import numpy as np
    import pyarrow as pa

    carry = b""
    while chunk := stream.read(block):
        data = carry + chunk
        cut = _whole_characters(data)
        offsets = pa.py_buffer(np.array([0, cut], dtype=np.int32))
        try:
            pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(data)]).cast(pa.string())
        except pa.ArrowInvalid:
            return False
        carry = data[cut:]
    return not carry


def _whole_characters(data: bytes) -> int:
    """The length of ``data`` without a multi-byte character its end cuts short."""
    lead = len(data) - 1
    while lead >= max(len(data) - 4, 0) and 0x80 <= data[lead] <= 0xBF:
        lead -= 1
    if lead < 0:
        return len(data)
    first = data[lead]
    size = 2 if 0xC0 <= first < 0xE0 else 3 if 0xE0 <= first < 0xF0 else 4 if 0xF0 <= first < 0xF8 else 1
    return lead if len(data) - lead < size else len(data)


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
