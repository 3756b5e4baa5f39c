"""Reading template csv in chunks of rows, keeping each row's raw text (so an order can be stored as written).

Encodings are decided by scanning the whole byte stream (``yidi.textfiles``), never by a guess on a prefix.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from yidi.textfiles import UnreadableText, detect_stream_encoding


class UnreadableFile(ValueError):
    pass


def detect_encoding(stream: io.BufferedIOBase) -> str:
    """The house encoding policy (``yidi.textfiles``), streaming; raises UnreadableFile."""
    try:
        return detect_stream_encoding(stream)
    except UnreadableText as exc:
        raise UnreadableFile(str(exc)) from None



@dataclass
class RowChunk:
    header_line: str
    headers: list[str]
    frame: pd.DataFrame  # str cells, original header names
    lines: list[str]  # raw text of each row (aligned with frame)
    row_numbers: np.ndarray  # 1-based line numbers in the file (header = 1)
    bad_rows: list[tuple[int, str, str]]  # (row number, raw text, reason) rows that could not be split


def _unique_headers(headers: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for header in headers:
        name = header.strip() or "column"
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return out


def _is_blank(line: str) -> bool:
    return line.strip(" ,\t\r\n\ufeff") == ""


def _physical_lines(text_stream: io.TextIOBase, block_chars: int = 1 << 22) -> Iterator[tuple[list[str], bool]]:
    """The stream's lines (without terminators) in blocks, and whether the block has a quote character;
    \r\n and a lone \r end a line too, as in csv."""
    carry = ""
    while block := text_stream.read(block_chars):
        block = carry + block
        if "\r" in block:
            if block.endswith("\r"):  # the \n of a \r\n may start the next block
                block, carry = block[:-1], "\r"
            else:
                carry = ""
            block = block.replace("\r\n", "\n").replace("\r", "\n")
        else:
            carry = ""
        lines = block.split("\n")
        carry = lines.pop() + carry
        yield lines, '"' in block
    if carry:  # the last line had no terminator (or was a lone \r, which ends an empty line)
        yield [carry.removesuffix("\r")], '"' in carry


def iter_csv_chunks(text_stream: io.TextIOBase, chunk_rows: int = 50_000, *, block_chars: int = 1 << 22
                    ) -> Iterator[RowChunk]:
    """Split a csv text stream into chunks of rows; blank rows are skipped; quoted newlines are kept together.

    Lines are read in blocks and split in C; a row whose quotes do not balance continues on the next line."""
    header_line = ""
    headers: list[str] = []
    line_no = 0
    lines: list[str] = []
    numbers: list[int] = []
    pending = ""
    pending_start = 0
    for block, quoted in _physical_lines(text_stream, block_chars):
        start = line_no + 1
        line_no += len(block)
        if not header_line:
            for offset, raw in enumerate(block):
                if not _is_blank(raw):
                    header_line = raw
                    headers = _unique_headers(next(csv.reader([header_line])))
                    start += offset + 1
                    block = block[offset + 1 :]
                    break
            else:
                continue
        if not pending and (not quoted or not any(line.count('"') & 1 for line in block)):
            # No line leaves a quote open (the usual drop, quoted or not): every non-blank line is a row.
            kept = [i for i, line in enumerate(block) if line.strip(" ,\t\r\n\ufeff")]
            if len(kept) == len(block):
                lines.extend(block)
                numbers.extend(range(start, start + len(block)))
            else:
                lines.extend(block[i] for i in kept)
                numbers.extend(start + i for i in kept)
        else:
            for offset, line in enumerate(block):
                if pending:
                    pending += "\n" + line
                    if pending.count('"') % 2 == 0:
                        lines.append(pending)
                        numbers.append(pending_start)
                        pending = ""
                elif _is_blank(line):
                    continue
                elif line.count('"') % 2:
                    pending, pending_start = line, start + offset
                else:
                    lines.append(line)
                    numbers.append(start + offset)
        while len(lines) >= chunk_rows:
            yield _parse_lines(header_line, headers, lines[:chunk_rows], numbers[:chunk_rows])
            lines, numbers = lines[chunk_rows:], numbers[chunk_rows:]
    if pending:
        lines.append(pending)
        numbers.append(pending_start)
    if lines:
        yield _parse_lines(header_line, headers, lines, numbers)


def _parse_lines(header_line: str, headers: list[str], lines: list[str], numbers: list[int]) -> RowChunk:
    invalid: list[tuple[str, int]] = []

    def on_invalid(row) -> str:
        invalid.append((row.text, row.actual_columns))
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO("\n".join(lines).encode("utf-8")),
        read_options=pacsv.ReadOptions(column_names=headers, use_threads=True, block_size=1 << 24),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={h: pa.string() for h in headers}, strings_can_be_null=True, null_values=[""]
        ),
    )
    bad_rows: list[tuple[int, str, str]] = []
    number_array = np.asarray(numbers, dtype=np.int64)
    if invalid:
        drop: list[int] = []
        positions = {line: i for i, line in enumerate(lines)}
        for text, actual in invalid:
            i = positions.get(text.rstrip("\r\n"))
            if i is None:
                continue
            drop.append(i)
            bad_rows.append(
                (
                    int(number_array[i]),
                    lines[i],
                    f"row {number_array[i]} has {actual} values but the header has {len(headers)} columns "
                    "(a stray comma or quote?)",
                )
            )
        keep = np.ones(len(lines), dtype=bool)
        keep[drop] = False
        lines = [line for line, k in zip(lines, keep, strict=True) if k]
        number_array = number_array[keep]
    if table.num_rows != len(lines):  # a quoted field the quote-count heuristic could not follow: re-split exactly
        return _parse_lines_exact(header_line, headers, lines, number_array)
    # Cells stripped in Arrow (as str.strip would, Unicode spaces included), before pandas sees them.
    table = pa.table([pc.utf8_trim_whitespace(column) for column in table.columns], names=table.column_names)
    frame = table.to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow") if t == pa.string() else None)
    return RowChunk(header_line, headers, frame, lines, number_array, bad_rows)


def _parse_lines_exact(header_line, headers, lines, numbers) -> RowChunk:
    rows, raw, nums, bad = [], [], [], []
    for line, number in zip(lines, numbers, strict=True):
        for values in csv.reader(io.StringIO(line)):
            if len(values) != len(headers):
                bad.append((int(number), line, f"row {number} has {len(values)} values but the header has "
                            f"{len(headers)} columns"))
                continue
            rows.append([v.strip() or None for v in values])
            raw.append(line)
            nums.append(number)
    frame = pd.DataFrame(rows, columns=headers, dtype="str")
    return RowChunk(header_line, headers, frame, raw, np.asarray(nums, dtype=np.int64), bad)


def rows_to_csv_lines(headers: list[str], rows: list[list]) -> tuple[str, list[str]]:
    """Render a header and rows of cell texts as csv lines (for xlsx sheets and replay)."""

    def render(values) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(["" if v is None else v for v in values])
        return buffer.getvalue()

    return render(headers), [render(r) for r in rows]

