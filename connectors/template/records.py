"""Template rows grouped into one record per order, built on demand, and stored records parsed again (replay)."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

import numpy as np
import pandas as pd

from connectors.base import Parsed, empty_lines, empty_orders, empty_problems, make_records, problem_rows
from connectors.template.csv_rows import RowChunk, iter_csv_chunks
from connectors.template.headers import LABELS, header_problem, map_headers
from connectors.template.rows import column_cells, parse_rows

CONTENT_TYPE = "text/csv; template=order-lines"
CHUNK_CONTENT_TYPE = "text/csv; template=order-lines; chunk"  # many orders: a bulk drop's chunk


class SeenOrders:
    """Order numbers met in earlier chunks of one file, as sorted 64-bit hashes (8 bytes an order; membership and
    merge in O(n), so a million-order file stays linear)."""

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype=np.uint64)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        if not len(self._sorted):
            return np.zeros(len(hashes), dtype=bool)
        # Looked up in sorted order: the probes walk the seen hashes forward (~3x faster than in file order).
        order = np.argsort(hashes)
        ordered = hashes[order]
        found = np.empty(len(hashes), dtype=bool)
        found[order] = self._sorted[np.minimum(np.searchsorted(self._sorted, ordered), len(self._sorted) - 1)] == ordered
        return found

    def add(self, hashes: np.ndarray) -> None:
        fresh = np.sort(hashes[~self.contains(hashes)])
        self._sorted = np.insert(self._sorted, np.searchsorted(self._sorted, fresh), fresh)


@dataclass
class TemplateResult:
    """A chunk's records (one per order, plus one per unusable row) and their parse, both computed on demand.

    Positions number the records: unusable rows first, then the orders in order of first appearance. A record's
    content is the header plus that order's rows as csv text, so a person can fix and replay one order alone.
    Bulk drops land the whole chunk as one record (``chunk_record``) and build per-order records only for the
    orders that are quarantined (``records_at``); email attachments land every order as a record (``records``).
    """

    header: str
    chunk_text: str  # the chunk as read: header + every row, in file order
    refs: list[str]  # source_ref per position
    keys: list[str | None]  # source_key (the order number) per position
    pre_contents: list[str]  # contents of the unusable rows (the first positions)
    orders_seen: np.ndarray  # pandas hashes of the order numbers in this chunk (duplicate detection across chunks)
    pre_problems: pd.DataFrame  # problems known from grouping alone (record_idx, reason)
    lines: list[str] = field(default_factory=list)  # raw rows of the orders
    row_order: np.ndarray | None = None  # positions in ``lines`` grouped by order (stable: file order within)
    starts: np.ndarray | None = None  # each order's slice of ``row_order``
    ends: np.ndarray | None = None
    frame: pd.DataFrame | None = None  # rows of the orders (str cells)
    mapping: dict | None = None
    row_record_idx: np.ndarray | None = None
    row_numbers: np.ndarray | None = None
    default_channel: str = "phone"
    received_at: datetime | None = None
    held_rows: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # order -> its unreadable rows


    @property
    def size(self) -> int:
        return len(self.refs)

    def _content(self, position: int) -> str:
        base = len(self.pre_contents)
        if position < base:
            return self.pre_contents[position]
        g = position - base
        rows = self.row_order[self.starts[g] : self.ends[g]].tolist()
        if g in self.held_rows:  # the order's unreadable rows go back in their place, to be fixed and replayed
            numbered = sorted([*((int(self.row_numbers[i]), self.lines[i]) for i in rows), *self.held_rows[g]])
            return self.header + "\n" + "\n".join(line for _, line in numbered)
        return self.header + "\n" + "\n".join(self.lines[i] for i in rows)

    def records_at(self, positions: np.ndarray) -> pd.DataFrame:
        """RECORD_COLUMNS for the records at ``positions``, in that order."""
        positions = np.asarray(positions, dtype=np.int64).tolist()
        base = len(self.pre_contents)
        if not self.held_rows and self.row_order is not None and len(self.row_order) == len(self.refs) - base and np.array_equal(
            self.row_order, np.arange(len(self.row_order))
        ):  # one row per order, in file order (the usual drop): no grouping to do
            lines, header = self.lines, self.header + "\n"
            contents = [self.pre_contents[p] if p < base else header + lines[p - base] for p in positions]
        else:
            contents = [self._content(p) for p in positions]
        return make_records(contents, [self.refs[p] for p in positions], content_type=CONTENT_TYPE,
                            source_keys=[self.keys[p] for p in positions])

    @cached_property
    def records(self) -> pd.DataFrame:
        return self.records_at(np.arange(self.size))

    def chunk_record(self, source_ref: str) -> pd.DataFrame:
        """The whole chunk as one record (RECORD_COLUMNS, one row). Its hash also covers the content type: a chunk
        holding a single order has that order's text, and the order may need a (quarantined) record of its own."""
        digest = hashlib.sha256(f"{CHUNK_CONTENT_TYPE}\x00".encode())
        digest.update(self.chunk_text.encode("utf-8", "surrogatepass"))
        return pd.DataFrame({  # megabytes of text: kept a Python str (no copy into Arrow), bound once by the driver
            "source_ref": pd.array([source_ref], dtype="str"),
            "source_key": pd.array([None], dtype="str"),
            "content": pd.Series([self.chunk_text], dtype=object),
            "content_type": CHUNK_CONTENT_TYPE,
            "content_hash": pd.array([digest.hexdigest()], dtype="str"),
        })

    def parse(self, positions: np.ndarray | None = None) -> Parsed:
        """The parse of the records at ``positions`` (all when None), numbered as in ``records``."""
        pre = self.pre_problems
        if positions is not None:
            pre = pre[pre["record_idx"].isin(positions)]
        if self.frame is None or not len(self.frame):
            return Parsed(empty_orders(), empty_lines(), pre.reset_index(drop=True))
        rows = np.ones(len(self.frame), dtype=bool) if positions is None else np.isin(self.row_record_idx,
                                                                                     positions)
        parsed = parse_rows(self.frame[rows].reset_index(drop=True), self.mapping,
                            record_idx=self.row_record_idx[rows], row_numbers=self.row_numbers[rows],
                            default_channel=self.default_channel, received_at=self.received_at)
        keys = np.asarray(self.keys, dtype=object)
        parsed.orders["channel_order_id"] = pd.array(
            keys[parsed.orders["record_idx"].astype("int64").to_numpy()], dtype="str")
        if len(pre):
            parsed.problems = pd.concat([pre, parsed.problems], ignore_index=True)
        return parsed

    @property
    def parsed(self) -> Parsed:
        return self.parse(None)


def _chunk_text(chunk: RowChunk) -> str:
    """The chunk's rows as read (unusable rows included), in file order, under the header."""
    if not chunk.bad_rows:
        return chunk.header_line + "\n" + "\n".join(chunk.lines)
    numbered = sorted([*zip(chunk.row_numbers.tolist(), chunk.lines, strict=True),
                       *((number, line) for number, line, _ in chunk.bad_rows)])
    return chunk.header_line + "\n" + "\n".join(line for _, line in numbered)


def build_template_records(
    chunk: RowChunk,
    *,
    source_ref: str,
    default_channel: str,
    received_at: datetime,
    seen_before: SeenOrders | None = None,
) -> TemplateResult:
    """Group a chunk's rows into per-order records (built on demand) and parse them into canonical frames."""
    frame = chunk.frame
    mapping = map_headers(chunk.headers)
    problem = header_problem(chunk.headers)
    header = chunk.header_line
    contents: list[str] = []
    refs: list[str] = []
    keys: list[str | None] = []
    problems: list[tuple[int, str]] = []
    text = _chunk_text(chunk)

    held = _rows_of_known_orders(chunk, mapping) if problem is None else {}
    for number, line, reason in chunk.bad_rows:
        if number in held:
            continue  # quarantined with its order, below
        problems.append((len(contents), reason))
        contents.append(header + "\n" + line)
        refs.append(f"{source_ref}#row={number}")
        keys.append(None)

    if problem is not None:
        # The whole chunk is unusable: one record with everything, for a person to fix (or re-drop the file).
        if len(chunk.lines):
            problems.append((len(contents), problem))
            contents.append(header + "\n" + "\n".join(chunk.lines))
            refs.append(f"{source_ref}#rows={chunk.row_numbers[0]}-{chunk.row_numbers[-1]}")
            keys.append(None)
        return TemplateResult(header, text, refs, keys, contents, np.array([], dtype=np.uint64), problem_rows(problems))

    order_ids = column_cells(frame, mapping, "order_id")
    blank_id = order_ids.isna()
    for i in np.flatnonzero(blank_id.to_numpy()):
        number = chunk.row_numbers[i]
        problems.append((len(contents), f"row {number}: {LABELS['order_id']} (order number) is empty; give "
                         "each order a number (rows of one order share it) and replay"))
        contents.append(header + "\n" + chunk.lines[i])
        refs.append(f"{source_ref}#row={number}")
        keys.append(None)
    base = len(contents)

    keep = np.flatnonzero(~blank_id.to_numpy())
    if len(keep) < len(frame):
        frame = frame.iloc[keep].reset_index(drop=True)
        lines = [chunk.lines[i] for i in keep]
        row_numbers = chunk.row_numbers[keep]
        order_ids = order_ids.iloc[keep].reset_index(drop=True)
    else:
        lines, row_numbers = chunk.lines, chunk.row_numbers

    codes, uniques = pd.factorize(order_ids, sort=False)
    n_orders = len(uniques)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.searchsorted(sorted_codes, np.arange(n_orders), side="left")
    ends = np.searchsorted(sorted_codes, np.arange(n_orders), side="right")
    first_rows = row_numbers[order[starts]]
    last_rows = row_numbers[order[ends - 1]]
    refs.extend(
        f"{source_ref}#row={a}" if a == b else f"{source_ref}#rows={a}-{b}"
        for a, b in zip(first_rows.tolist(), last_rows.tolist(), strict=True)
    )
    id_list = uniques.tolist() if hasattr(uniques, "tolist") else list(uniques)
    keys.extend(id_list)

    held_rows: dict[int, list[tuple[int, str]]] = {}
    if held:
        group_of = {order_id: g for g, order_id in enumerate(id_list)}
        for number, line, reason in chunk.bad_rows:
            if number in held:
                g = group_of[held[number]]
                held_rows.setdefault(g, []).append((number, line))
                problems.append((base + g, f"order {held[number]} is held whole: {reason}; fix that row in "
                                 "this record and replay"))
        for g, rows in held_rows.items():
            numbers = [int(first_rows[g]), int(last_rows[g]), *(n for n, _ in rows)]
            refs[base + g] = f"{source_ref}#rows={min(numbers)}-{max(numbers)}"

    hashes = pd.util.hash_array(np.asarray(id_list, dtype=object))
    if seen_before is not None:
        repeated = seen_before.contains(hashes)
        for g in np.flatnonzero(repeated):
            problems.append((base + int(g), f"order {id_list[g]} also appears earlier in this file; rows of one "
                             "order must be together (fix the file, or merge the rows here and replay)"))

    return TemplateResult(header, text, refs, keys, contents, hashes, problem_rows(problems), lines=lines,
                          row_order=order, starts=starts, ends=ends, frame=frame, mapping=mapping,
                          row_record_idx=(codes + base).astype(np.int64), row_numbers=row_numbers,
                          default_channel=default_channel, received_at=received_at, held_rows=held_rows)


def _rows_of_known_orders(chunk: RowChunk, mapping: dict[str, str]) -> dict[int, str]:
    """{row number: order number} for the unreadable rows whose order number is readable and names an order
    with readable rows in this chunk: such an order is quarantined whole (never accepted with lines missing)."""
    if not chunk.bad_rows or "order_id" not in mapping:
        return {}
    position = chunk.headers.index(mapping["order_id"])
    known = set(column_cells(chunk.frame, mapping, "order_id").dropna().tolist())
    found = {}
    for number, line, _ in chunk.bad_rows:
        values = next(csv.reader([line]), [])
        order_id = values[position].strip() if position < len(values) else ""
        if order_id in known:
            found[number] = order_id
    return found



def parse_template_records(records: pd.DataFrame, *, default_channel: str, received_at: datetime | None = None
                           ) -> Parsed:
    """Parse stored template records (header + rows as csv text), e.g. on replay. One order per record."""
    received_at = received_at or datetime.now(UTC)
    orders, lines, problems = [], [], []
    for idx, content in enumerate(records["content"].tolist()):
        chunks = list(iter_csv_chunks(io.StringIO(content), chunk_rows=1_000_000))
        if not chunks:
            problems.append(problem_rows([(idx, "the record is empty (no header or rows)")]))
            continue
        chunk = chunks[0]
        problem = header_problem(chunk.headers)
        if problem:
            problems.append(problem_rows([(idx, problem)]))
            continue
        if chunk.bad_rows:
            problems.append(problem_rows([(idx, reason) for _, _, reason in chunk.bad_rows]))
            continue
        mapping = map_headers(chunk.headers)
        ids = column_cells(chunk.frame, mapping, "order_id").dropna().unique().tolist()
        if len(ids) != 1:
            problems.append(problem_rows([(idx, f"a record must hold exactly one order; it has order numbers "
                                              f"{ids[:5] or '(none)'}")]))
            continue
        parsed = parse_rows(
            chunk.frame,
            mapping,
            record_idx=np.full(len(chunk.frame), idx),
            row_numbers=chunk.row_numbers,
            default_channel=default_channel,
            received_at=received_at,
        )
        parsed.orders["channel_order_id"] = ids[0]
        orders.append(parsed.orders)
        lines.append(parsed.lines)
        problems.append(parsed.problems)
    return Parsed(
        pd.concat(orders, ignore_index=True) if orders else empty_orders(),
        pd.concat(lines, ignore_index=True) if lines else empty_lines(),
        pd.concat(problems, ignore_index=True) if problems else empty_problems(),
    )



def parse_chunk_records(records: pd.DataFrame, *, default_channel: str, received_at: datetime | None = None,
                        first_idx: int = 0) -> Parsed:
    """Parse stored bulk-drop chunks again, each whole (the internal audit re-derives the orders a chunk holds):
    the same grouping and row parse as when the chunk landed. A chunk holds many orders, so ``record_idx`` here
    numbers the orders (from ``first_idx`` on, across the chunks): each keeps its own lines and problems."""
    received_at = received_at or datetime.now(UTC)
    orders, lines, problems = [], [], []
    offset = first_idx
    for content in records["content"].tolist():
        chunks = list(iter_csv_chunks(io.StringIO(content), chunk_rows=content.count("\n") + 1))
        if not chunks:
            continue  # an empty chunk holds no order
        result = build_template_records(chunks[0], source_ref="", default_channel=default_channel,
                                        received_at=received_at)
        parsed = result.parse(None)
        for frame, pieces in ((parsed.orders, orders), (parsed.lines, lines), (parsed.problems, problems)):
            pieces.append(frame.assign(record_idx=frame["record_idx"].astype("int64") + offset))
        offset += result.size
    return Parsed(
        pd.concat(orders, ignore_index=True) if orders else empty_orders(),
        pd.concat(lines, ignore_index=True) if lines else empty_lines(),
        pd.concat(problems, ignore_index=True) if problems else empty_problems(),
    )
