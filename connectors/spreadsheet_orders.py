"""Phone and fax orders: the order template (xlsx or csv) that staff fill and drop into the inbox folder.

Files are read in chunks (csv streamed, so a large drop needs memory for one chunk only); encodings UTF-8,
UTF-8 with BOM and GBK/GB18030 are decided by checking the whole file (a file that is none of them is quarantined,
never guessed). xlsx: the header row is found among the first rows (title rows above it are fine), merged cells
take the merged value, a formula gives its saved result (a formula without one is shown as the formula text, so the
row's reason says so), empty rows are skipped. Each chunk lands as one raw record (the rows as read); an order
that cannot be understood also gets a record of its own, to fix and replay (see ``connectors.template.records``).

After a file's last chunk is committed it moves to ``processed/YYYY-MM-DD/``; an unreadable file moves to
``failed/`` with a quarantined record saying why. Re-dropping a file is harmless: chunks already landed are
skipped, and a changed chunk updates only the orders that changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path

import numpy as np
import pandas as pd

from connectors.base import (
    RECORD_COLUMNS,
    Batch,
    BulkChunk,
    Connector,
    Parsed,
    empty_lines,
    empty_orders,
    make_records,
    problem_rows,
)
from connectors.template.csv_rows import (
    RowChunk,
    UnreadableFile,
    detect_encoding,
    iter_csv_chunks,
    rows_to_csv_lines,
)
from connectors.template.headers import map_headers
from connectors.template.records import (
    CHUNK_CONTENT_TYPE,
    CONTENT_TYPE,
    SeenOrders,
    TemplateResult,
    build_template_records,
    parse_chunk_records,
    parse_template_records,
)
from yidi.bulk import gc_paused

TABLE_SUFFIXES = {".csv", ".txt", ".xlsx", ".xlsm"}
UNREADABLE_TYPE = "text/plain; unreadable-file"


def _cell_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else format(value, ".12g")
    text = str(value).strip()
    return text or None


def read_xlsx_chunks(data: bytes, chunk_rows: int = 50_000) -> Iterator[RowChunk]:
    """Rows of the first sheet that looks like the order template, as csv-text chunks (see module doc)."""
    from openpyxl import load_workbook

    values_book = load_workbook(io.BytesIO(data), data_only=True)
    formulas_book = load_workbook(io.BytesIO(data), data_only=False)
    best = None
    for sheet in values_book.worksheets:
        grid = [list(row) for row in sheet.iter_rows(values_only=True)]
        formula_grid = [list(row) for row in formulas_book[sheet.title].iter_rows(values_only=True)]
        for r, row in enumerate(grid):
            # A formula cell is read as its text (=HYPERLINK("…","x") stays that, not "x"; review flags it as
            # TEXT_IS_FORMULA), unless its saved result is a number (a computed quantity or price).
            for c, value in enumerate(row):
                if r < len(formula_grid) and c < len(formula_grid[r]):
                    formula = formula_grid[r][c]
                    if (isinstance(formula, str) and formula.startswith("=")
                            and not (isinstance(value, int | float) and not isinstance(value, bool))):
                        row[c] = formula
        for merged in sheet.merged_cells.ranges:  # every cell of a merged range takes the range's value
            top = grid[merged.min_row - 1][merged.min_col - 1] if merged.min_row - 1 < len(grid) else None
            for r in range(merged.min_row - 1, min(merged.max_row, len(grid))):
                for c in range(merged.min_col - 1, min(merged.max_col, len(grid[r]))):
                    grid[r][c] = top
        header_index, score = 0, -1
        for r, row in enumerate(grid[:15]):
            found = len(map_headers([_cell_text(v) or "" for v in row]))
            if found > score:
                header_index, score = r, found
        if best is None or score > best[2]:
            best = (grid, header_index, score)
    if best is None or not best[0]:
        return
    grid, header_index, _ = best
    header_cells = [_cell_text(v) or "" for v in grid[header_index]]
    while header_cells and header_cells[-1] == "":
        header_cells.pop()
    width = len(header_cells)
    headers = [h or f"column{i + 1}" for i, h in enumerate(header_cells)]
    header_line, _ = rows_to_csv_lines(headers, [])
    rows, numbers = [], []
    for r in range(header_index + 1, len(grid)):
        cells = [_cell_text(v) for v in grid[r][:width]]
        cells += [None] * (width - len(cells))
        if all(c is None for c in cells):
            continue
        rows.append(cells)
        numbers.append(r + 1)
    for start in range(0, len(rows), chunk_rows):
        part = rows[start : start + chunk_rows]
        _, lines = rows_to_csv_lines(headers, part)
        frame = pd.DataFrame(part, columns=headers, dtype="str")
        yield RowChunk(header_line, headers, frame, lines, np.asarray(numbers[start : start + chunk_rows]), [])


def table_chunks(path: Path, chunk_rows: int) -> Iterator[RowChunk]:
    """Chunks of a csv/xlsx template file; raises UnreadableFile with a reason a person can act on."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        try:
            yield from read_xlsx_chunks(path.read_bytes(), chunk_rows)
        except UnreadableFile:
            raise
        except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
            raise UnreadableFile(f"not a readable xlsx workbook ({type(exc).__name__}: {exc})") from None
        return
    with path.open("rb") as raw:
        encoding = detect_encoding(raw)
        text = io.TextIOWrapper(raw, encoding=encoding, newline="")
        yield from iter_csv_chunks(text, chunk_rows)


def unreadable_record(path: Path, reason: str, kept_at: Path | None) -> tuple[pd.DataFrame, Parsed]:
    data = path.read_bytes() if path.exists() else b""
    content = json.dumps(
        {
            "file": path.name,
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "kept_at": str(kept_at or path),
        },
        ensure_ascii=False,
    )
    records = make_records([content], f"file:{path}", content_type=UNREADABLE_TYPE)
    full_reason = (
        f"{path.name}: {reason}. The file is kept at {kept_at or path}; save it as xlsx or as a UTF-8/GBK csv "
        "with the order template's columns and drop it into the inbox again"
    )
    return records, Parsed(empty_orders(), empty_lines(), problem_rows([(0, full_reason)]))


def _concat(a: RowChunk, b: RowChunk) -> RowChunk:
    return RowChunk(a.header_line, a.headers, pd.concat([a.frame, b.frame], ignore_index=True), a.lines + b.lines,
                    np.concatenate([a.row_numbers, b.row_numbers]), a.bad_rows + b.bad_rows)


def _slice(chunk: RowChunk, start: int, end: int | None, bad_rows: list) -> RowChunk:
    return RowChunk(chunk.header_line, chunk.headers, chunk.frame.iloc[start:end].reset_index(drop=True),
                    chunk.lines[start:end], chunk.row_numbers[start:end], bad_rows)


def order_aligned(chunks: Iterator[RowChunk]) -> Iterator[RowChunk]:
    """Chunks cut between orders: the rows of the last order of a chunk move on to the next chunk, so an order
    whose (adjacent) rows straddle a chunk boundary is read whole. The file's last chunk has nothing after it and
    is kept whole (a small file is one chunk)."""
    carry: RowChunk | None = None
    iterator = iter(chunks)
    chunk = next(iterator, None)
    while chunk is not None:
        following = next(iterator, None)
        if carry is not None:
            chunk = _concat(carry, chunk)
            carry = None
        column = map_headers(chunk.headers).get("order_id")
        if following is None or column is None or not len(chunk.frame):
            yield chunk
            chunk = following
            continue
        ids = chunk.frame[column]
        last = None if pd.isna(ids.iloc[-1]) else ids.iloc[-1]
        same = (ids == last).to_numpy(dtype=bool, na_value=False) if last is not None else None
        # The last order's trailing rows start at ``start`` (compared in Arrow: no Python object per row).
        start = 0 if same is None or same.all() else len(same) - int(np.argmin(same[::-1]))
        if last is None:  # no order number on the last row: nothing to hold back
            yield chunk
        elif start > 0 and same[:start].any():
            yield chunk  # the order also has rows earlier in this chunk: it is grouped here, keep it whole
        elif start == 0:  # one order fills the chunk: it goes on with the next one
            carry = chunk
        else:
            cut = chunk.row_numbers[start]  # unreadable rows after the cut may be the held-back order's
            yield _slice(chunk, 0, start, [b for b in chunk.bad_rows if b[0] < cut])
            carry = _slice(chunk, start, None, [b for b in chunk.bad_rows if b[0] >= cut])
        chunk = following


def template_batches(
    path: Path,
    *,
    source_ref: str,
    default_channel: str,
    chunk_rows: int,
    received_at: datetime | None = None,
) -> Iterator[Batch]:
    """One batch per chunk of a template file: the chunk lands as one record (a chunk that is not the order
    template at all lands as a quarantined record instead). Raises UnreadableFile."""
    received_at = received_at or datetime.now(UTC)
    seen = SeenOrders()
    chunks = order_aligned(table_chunks(path, chunk_rows))
    while True:
        with gc_paused():  # a chunk is read and grouped with the cyclic GC paused (not across the yield below)
            chunk = next(chunks, None)
            if chunk is None:
                break
            result: TemplateResult = build_template_records(
                chunk, source_ref=source_ref, default_channel=default_channel, received_at=received_at,
                seen_before=seen,
            )
        seen.add(result.orders_seen)
        numbers = np.concatenate([chunk.row_numbers[:1], chunk.row_numbers[-1:],
                                  np.array([n for n, _, _ in chunk.bad_rows], dtype=np.int64)])
        span = f"rows {numbers.min()}-{numbers.max()}" if len(numbers) else "no rows"
        if result.frame is None:  # the chunk cannot be read as orders: its records are quarantined as they are
            yield Batch(result.records, parsed=result.parse, label=f"{path.name} {span}")
            continue
        bulk = BulkChunk(result.chunk_record(f"{source_ref}#{span.replace(' ', '=')}"), result.size,
                         result.records_at)
        yield Batch(pd.DataFrame(columns=RECORD_COLUMNS), parsed=result.parse, label=f"{path.name} {span}",
                    bulk=bulk)


class SpreadsheetConnector(Connector):
    """Options: inbox_dir, default_channel ("phone"|"fax"), chunk_rows, settle_seconds, move_processed,
    files (explicit list of paths instead of the inbox)."""

    def _inbox(self) -> Path:
        from yidi.settings import yidi_home

        inbox = Path(self.options.get("inbox_dir", "inbox/orders")).expanduser()
        return inbox if inbox.is_absolute() else yidi_home() / inbox

    def pending_files(self) -> list[Path]:
        if self.options.get("files"):
            return [Path(p) for p in self.options["files"]]
        inbox = self._inbox()
        inbox.mkdir(parents=True, exist_ok=True)
        settle = float(self.options.get("settle_seconds", 2))
        now = datetime.now().timestamp()
        files = [
            p for p in inbox.iterdir()
            if p.is_file() and not p.name.startswith((".", "~$")) and now - p.stat().st_mtime >= settle
        ]
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))

    def fetch(self, cursor: str | None) -> Iterator[Batch]:
        chunk_rows = int(self.options.get("chunk_rows", 50_000))
        default_channel = self.options.get("default_channel", "phone")
        move = bool(self.options.get("move_processed", not self.options.get("files")))
        for path in self.pending_files():
            if path.suffix.lower() not in TABLE_SUFFIXES:
                target = self._move(path, "failed") if move else None
                records, parsed = unreadable_record(
                    target or path, f"unsupported file type {path.suffix or '(none)'}", target)
                yield Batch(records, parsed=parsed, label=path.name)
                continue
            try:  # reads the first chunk only: format and encoding problems surface here, before any yield
                batches = self._file_batches(path, default_channel, chunk_rows, move)
            except UnreadableFile as exc:
                target = self._move(path, "failed") if move else None
                records, parsed = unreadable_record(target or path, str(exc), target)
                yield Batch(records, parsed=parsed, label=path.name)
                continue
            yield from batches

    def _file_batches(self, path: Path, default_channel: str, chunk_rows: int, move: bool) -> Iterator[Batch]:
        # Encoding and format problems surface on the first chunk, before anything is yielded.
        source_ref = f"file:{path.name}"
        iterator = template_batches(path, source_ref=source_ref, default_channel=default_channel,
                                    chunk_rows=chunk_rows)
        first = next(iterator, None)
        if first is None:
            raise UnreadableFile("the file has no header row or no rows")

        def generate():
            current = first
            for following in iterator:
                yield current
                current = following
            if move:
                current.on_commit = lambda: self._move(path, "processed")
            yield current

        return generate()

    def _move(self, path: Path, folder: str) -> Path | None:
        if not path.exists():
            return None
        target_dir = path.parent / folder / datetime.now().strftime("%Y-%m-%d")
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / path.name
        if target.exists():
            target = target_dir / f"{path.stem}.{datetime.now().strftime('%H%M%S%f')}{path.suffix}"
        shutil.move(str(path), target)
        return target

    def parse(self, records: pd.DataFrame) -> Parsed:
        return parse_file_records(records, self.options.get("default_channel", "phone"))


def parse_file_records(records: pd.DataFrame, default_channel: str) -> Parsed:
    """Replay path: template records are parsed again; an unreadable-file record stays unreadable. A bulk drop's
    chunk record is parsed whole (the internal audit re-derives its orders); its orders are numbered after the
    records' positions (``parse_chunk_records``)."""
    types = records["content_type"].tolist()
    if all(t == CONTENT_TYPE for t in types):
        return parse_template_records(records, default_channel=default_channel)
    problems = [(i, "this record stands for a whole file that could not be read; fix the file and drop it into "
                    "the inbox again (then discard this record)")
                for i, t in enumerate(types) if t not in (CONTENT_TYPE, CHUNK_CONTENT_TYPE)]
    template_idx = [i for i, t in enumerate(types) if t == CONTENT_TYPE]
    parsed = parse_template_records(records.iloc[template_idx].reset_index(drop=True),
                                    default_channel=default_channel)
    mapping = np.asarray(template_idx, dtype=np.int64)
    for frame in (parsed.orders, parsed.lines, parsed.problems):
        if len(frame):
            frame["record_idx"] = mapping[frame["record_idx"].astype("int64").to_numpy()]
    chunk_idx = [i for i, t in enumerate(types) if t == CHUNK_CONTENT_TYPE]
    chunks = parse_chunk_records(records.iloc[chunk_idx], default_channel=default_channel, first_idx=len(records))
    parsed.orders = pd.concat([parsed.orders, chunks.orders], ignore_index=True)
    parsed.lines = pd.concat([parsed.lines, chunks.lines], ignore_index=True)
    parsed.problems = pd.concat([parsed.problems, chunks.problems, problem_rows(problems)], ignore_index=True)
    return parsed
