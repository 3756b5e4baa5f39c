"""The phone/fax order template: one row per order line, Chinese or English headers, csv or xlsx.

Staff key phone and fax orders into this template (and customers attach it to order emails). Columns are found by
name (any of the aliases below, case/space/bracket-insensitive), never by position. Rows of one order share the
order number (订单号); order-level cells (customer, address…) may be repeated on each row, left empty after the
first, or merged. Each order becomes one raw record whose content is the header plus that order's rows as csv
text, so a person can fix and replay one order without touching the rest of the file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from connectors.base import (
    LINE_COLUMNS,
    ORDER_COLUMNS,
    SHANGHAI,
    Parsed,
    empty_lines,
    empty_orders,
    empty_problems,
    make_records,
    problem_rows,
)
from yidi.textfiles import UnreadableText, detect_stream_encoding

CONTENT_TYPE = "text/csv; template=order-lines"
CHUNK_CONTENT_TYPE = "text/csv; template=order-lines; chunk"  # many orders: a bulk drop's chunk

# canonical field -> header aliases (compared after _header_key normalisation)
ALIASES: dict[str, list[str]] = {
    "order_id": ["订单号", "订单编号", "单号", "订单id", "orderno", "orderid", "ordernumber", "order"],
    "channel": ["渠道", "来源", "下单渠道", "channel", "source"],
    "order_time": ["下单时间", "订单时间", "下单日期", "日期", "ordertime", "orderdate", "date"],
    "customer_name": ["客户名称", "客户", "客户姓名", "收货人", "联系人", "customer", "customername", "name"],
    "customer_phone": ["联系电话", "电话", "手机", "手机号", "联系方式", "phone", "mobile", "tel", "telephone"],
    "customer_email": ["邮箱", "电子邮箱", "email", "e-mail", "mail"],
    "province": ["省", "省份", "province", "state"],
    "city": ["市", "城市", "city"],
    "district": ["区", "区县", "县区", "district", "county"],
    "detail": ["详细地址", "地址", "address", "detailaddress", "street"],
    "full_address": ["收货地址", "完整地址", "fulladdress", "shippingaddress"],
    "postcode": ["邮编", "邮政编码", "postcode", "zip", "zipcode"],
    "item_code": ["商品编码", "编码", "物料编码", "服务编码", "商品编号", "sku", "itemcode", "code"],
    "item_name": ["商品名称", "品名", "名称", "商品", "服务名称", "itemname", "product", "item"],
    "item_kind": ["类型", "商品类型", "kind", "type", "itemkind"],
    "spec": ["规格", "spec", "specification"],
    "model": ["型号", "model"],
    "quantity": ["数量", "qty", "quantity"],
    "unit_price": ["单价", "价格", "unitprice", "price"],
    "line_discount": ["折扣", "行折扣", "优惠", "discount", "linediscount"],
    "freight": ["运费", "freight", "shipping", "shippingfee"],
    "order_discount": ["订单优惠", "整单优惠", "整单折扣", "orderdiscount"],
    "payment_method": ["付款方式", "支付方式", "payment", "paymentmethod"],
    "installments": ["分期数", "分期期数", "installments"],
    "note": ["备注", "留言", "note", "remark", "buyernote", "notes"],
}
LABELS = {field: aliases[0] for field, aliases in ALIASES.items()}
REQUIRED = ["order_id", "customer_name", "customer_phone", "quantity", "unit_price"]
REQUIRED_ONE_OF = [("item_code", "item_name"), ("detail", "full_address")]
ORDER_LEVEL = [
    "channel",
    "order_time",
    "customer_name",
    "customer_phone",
    "customer_email",
    "province",
    "city",
    "district",
    "detail",
    "full_address",
    "postcode",
    "freight",
    "order_discount",
    "payment_method",
    "installments",
    "note",
]

CHANNEL_VALUES = {
    "电话": "phone",
    "phone": "phone",
    "tel": "phone",
    "传真": "fax",
    "fax": "fax",
    "邮件": "email",
    "电子邮件": "email",
    "email": "email",
    "e-mail": "email",
}
PAYMENT_VALUES = {
    "支付宝": "alipay",
    "alipay": "alipay",
    "微信": "wechatpay",
    "微信支付": "wechatpay",
    "wechat": "wechatpay",
    "wechatpay": "wechatpay",
    "银行转账": "bank_transfer",
    "转账": "bank_transfer",
    "对公转账": "bank_transfer",
    "banktransfer": "bank_transfer",
    "bank_transfer": "bank_transfer",
    "货到付款": "cod",
    "cod": "cod",
    "分期": "installment",
    "分期付款": "installment",
    "installment": "installment",
}
KIND_VALUES = {"商品": "product", "产品": "product", "product": "product", "服务": "service", "service": "service"}


def _header_key(text: str) -> str:
    text = str(text).strip().lower()
    text = re.sub(r"[（(\[【].*?[)）\]】]", "", text)  # "单价（元）" -> "单价"
    return re.sub(r"[\s*_:：\-]", "", text)


_ALIAS_LOOKUP = {_header_key(alias): field for field, aliases in ALIASES.items() for alias in aliases}


def map_headers(headers: list[str]) -> dict[str, str]:
    """{canonical field: original header} for the headers we recognise (first one wins)."""
    mapping: dict[str, str] = {}
    for header in headers:
        field_name = _ALIAS_LOOKUP.get(_header_key(header))
        if field_name and field_name not in mapping:
            mapping[field_name] = header
    return mapping


def missing_columns(mapping: dict[str, str]) -> list[str]:
    missing = [f"{LABELS[f]} ({f})" for f in REQUIRED if f not in mapping]
    for options in REQUIRED_ONE_OF:
        if not any(o in mapping for o in options):
            missing.append(" or ".join(f"{LABELS[o]} ({o})" for o in options))
    return missing


def header_problem(headers: list[str]) -> str | None:
    missing = missing_columns(map_headers(headers))
    if not missing:
        return None
    return (
        f"the order template is missing column(s): {', '.join(missing)}; found columns: "
        f"{', '.join(str(h) for h in headers) or '(none)'}. Add the columns (Chinese or English names) and "
        "drop the file again, or fix this record and replay it"
    )


# ---------------------------------------------------------------------------------------------------------------
# Encodings: decided by scanning the whole byte stream, never by a guess on a prefix.


class UnreadableFile(ValueError):
    pass


def detect_encoding(stream: io.BufferedIOBase) -> str:
    """The house encoding policy (``yidi.textfiles``), streaming; raises UnreadableFile."""
    try:
        return detect_stream_encoding(stream)
    except UnreadableText as exc:
        raise UnreadableFile(str(exc)) from None


# ---------------------------------------------------------------------------------------------------------------
# Reading csv in chunks, keeping each row's raw text.


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
    frame = table.to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow") if t == pa.string() else None)
    if len(frame) != len(lines):  # a quoted field the quote-count heuristic could not follow: re-split exactly
        return _parse_lines_exact(header_line, headers, lines, number_array)
    frame = frame.apply(lambda column: column.str.strip())
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


# ---------------------------------------------------------------------------------------------------------------
# Rows -> one record per order -> canonical frames.


def _cells(frame: pd.DataFrame, mapping: dict[str, str], field_name: str) -> pd.Series:
    if field_name in mapping:
        return frame[mapping[field_name]].astype("str")
    return pd.Series(pd.NA, index=frame.index, dtype="str")


def _lookup(series: pd.Series, table: dict[str, str], *, keep_unknown: bool = False) -> pd.Series:
    """``table`` at each value lower-cased without spaces; unknown values give NA (or that key, with
    ``keep_unknown``). Worked out once per distinct value: these columns repeat a few values."""
    codes, uniques = pd.factorize(series)
    keys = [re.sub(r"\s+", "", str(u).lower()) for u in uniques]
    found = np.array([table.get(k, k if keep_unknown else None) for k in keys] + [None], dtype=object)
    return pd.Series(found[codes], index=series.index, dtype="str")


def _parse_times(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Naive times are China time. Returns (UTC timestamps, mask of unreadable non-empty values)."""
    text = series.str.replace("/", "-", regex=False).str.replace("T", " ", regex=False)
    stamps = pd.to_datetime(text, format="ISO8601", errors="coerce")
    retry = stamps.isna() & text.notna()
    if retry.any():
        stamps = stamps.astype("datetime64[ns]") if stamps.dt.tz is None else stamps.dt.tz_convert(None)
        stamps[retry] = pd.to_datetime(text[retry], format="mixed", errors="coerce")
    if stamps.dt.tz is None:
        stamps = stamps.dt.tz_localize(SHANGHAI, ambiguous="NaT", nonexistent="NaT")
    stamps = stamps.dt.tz_convert(UTC)
    bad = stamps.isna() & text.notna()
    return stamps, bad


def _money(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    from yidi.money import yuan_series_to_fen

    return yuan_series_to_fen(series)


class SeenOrders:
    """Order numbers met in earlier chunks of one file, as sorted 64-bit hashes (8 bytes an order; membership and
    merge in O(n), so a million-order file stays linear)."""

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype=np.uint64)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        if not len(self._sorted):
            return np.zeros(len(hashes), dtype=bool)
        at = np.minimum(np.searchsorted(self._sorted, hashes), len(self._sorted) - 1)
        return self._sorted[at] == hashes

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

    @property
    def size(self) -> int:
        return len(self.refs)

    def _content(self, position: int) -> str:
        base = len(self.pre_contents)
        if position < base:
            return self.pre_contents[position]
        g = position - base
        rows = self.row_order[self.starts[g] : self.ends[g]].tolist()
        return self.header + "\n" + "\n".join(self.lines[i] for i in rows)

    def records_at(self, positions: np.ndarray) -> pd.DataFrame:
        """RECORD_COLUMNS for the records at ``positions``, in that order."""
        positions = np.asarray(positions, dtype=np.int64).tolist()
        base = len(self.pre_contents)
        if self.row_order is not None and len(self.row_order) == len(self.refs) - base and np.array_equal(
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

    for number, line, reason in chunk.bad_rows:
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

    order_ids = _cells(frame, mapping, "order_id")
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

    hashes = pd.util.hash_array(np.asarray(id_list, dtype=object))
    if seen_before is not None:
        repeated = seen_before.contains(hashes)
        for g in np.flatnonzero(repeated):
            problems.append((base + int(g), f"order {id_list[g]} also appears earlier in this file; rows of one "
                             "order must be together (fix the file, or merge the rows here and replay)"))

    return TemplateResult(header, text, refs, keys, contents, hashes, problem_rows(problems), lines=lines,
                          row_order=order, starts=starts, ends=ends, frame=frame, mapping=mapping,
                          row_record_idx=(codes + base).astype(np.int64), row_numbers=row_numbers,
                          default_channel=default_channel, received_at=received_at)


def _repeated(value, n: int, dtype: str):
    """``n`` copies of one value as a pandas array (a take of one element: no per-row Python objects)."""
    return pd.array([value], dtype=dtype).take(np.zeros(n, dtype=np.intp))


def parse_rows(
    frame: pd.DataFrame,
    mapping: dict[str, str],
    *,
    record_idx: np.ndarray,
    row_numbers: np.ndarray,
    default_channel: str,
    received_at: datetime,
) -> Parsed:
    """Vectorised parse of template rows (one per line) whose order they belong to is ``record_idx``."""
    n = len(frame)
    record_idx = np.asarray(record_idx, dtype=np.int64)
    cells = {f: _cells(frame, mapping, f) for f in ALIASES}
    bad: list[tuple[np.ndarray, str]] = []  # (row mask, message template with {row} and {value})

    # Order-level values: the first non-empty value of each order (covers repeated, blank-after-first and merged).
    row_frame = pd.DataFrame({f: cells[f] for f in ORDER_LEVEL})
    row_frame["record_idx"] = record_idx
    row_frame["row_no"] = row_numbers
    grouped = row_frame.groupby("record_idx", sort=True)
    first = grouped.first()  # first non-null per column
    order_index = first.index.to_numpy()

    # Conflicts: several different non-empty values for an order-level field in one order.
    sizes = grouped.size()
    multi = sizes.index[sizes.to_numpy() > 1]
    conflicts: dict[int, str] = {}
    if len(multi):
        sub = row_frame[row_frame["record_idx"].isin(multi)]
        present = [f for f in ORDER_LEVEL if f in mapping]
        distinct = sub.groupby("record_idx")[present].nunique()  # one grouping for every field
        for field_name in present:
            for rid in distinct.index[distinct[field_name].to_numpy() > 1]:
                values = sub.loc[sub["record_idx"] == rid, field_name].dropna().unique().tolist()[:3]
                conflicts.setdefault(
                    int(rid),
                    f"rows of this order disagree on {mapping[field_name]}: {', '.join(repr(v) for v in values)}; "
                    "keep one value (or leave the later rows empty) and replay",
                )

    channel_text = first["channel"]
    channel = _lookup(channel_text, CHANNEL_VALUES)
    bad_channel = channel.isna() & channel_text.notna()
    channel = channel.fillna(default_channel).astype("str")

    times, bad_time = _parse_times(first["order_time"])
    times = times.fillna(pd.Timestamp(received_at).tz_convert(UTC))
    freight, bad_freight = _money(first["freight"])
    order_discount, bad_order_discount = _money(first["order_discount"])
    pay_text = first["payment_method"]
    payment = _lookup(pay_text, PAYMENT_VALUES, keep_unknown=True)
    installments = pd.to_numeric(first["installments"], errors="coerce")
    bad_installments = (installments.isna() | (installments < 1) | (installments % 1 != 0)) & first[
        "installments"
    ].notna()

    extra = np.where(first["order_time"].isna(), json.dumps({"order_time_from": "received_at"}), None)
    m = len(first)
    text = {name: first[name].array for name in ("customer_name", "customer_phone", "customer_email", "province",
                                                  "city", "district", "detail", "full_address", "postcode", "note")}
    absent = _repeated(None, m, "str")
    orders = pd.DataFrame(
        {
            "record_idx": pd.array(order_index, dtype="Int64"),
            "channel": channel.array,
            "channel_order_id": absent,  # filled from the records' keys by the caller
            "customer_name": text["customer_name"],
            "customer_phone": text["customer_phone"],
            "customer_email": text["customer_email"],
            "ship_country": _repeated("CN", m, "str"),
            "ship_province": text["province"],
            "ship_city": text["city"],
            "ship_district": text["district"],
            "ship_detail": text["detail"],
            "ship_full_address": text["full_address"],
            "ship_postcode": text["postcode"],
            "payment_method": payment.array,
            "installments": pd.array(installments.where(~bad_installments).fillna(1).astype("int64"), dtype="Int64"),
            "currency": _repeated("CNY", m, "str"),
            "goods_total_fen": _repeated(None, m, "Int64"),
            "discount_fen": pd.array(order_discount.fillna(0).to_numpy(), dtype="Int64"),
            "freight_fen": pd.array(freight.fillna(0).to_numpy(), dtype="Int64"),
            "order_total_fen": _repeated(None, m, "Int64"),
            "source_status": absent,
            "source_cancelled": pd.array(np.zeros(m, dtype=bool), dtype="boolean"),
            "order_time": times.array,
            "source_modified_at": pd.array(np.full(m, np.datetime64("NaT"), dtype="datetime64[ns]"),
                                           dtype="datetime64[ns]").tz_localize("UTC"),
            "buyer_note": text["note"],
            "source_extra": pd.array(extra, dtype="str"),
        },
        columns=ORDER_COLUMNS,
    )

    order_problem_masks = [
        (bad_channel, lambda i: f"{mapping.get('channel')} {channel_text.iloc[i]!r} is not one of 电话/传真/邮件 "
         "(phone/fax/email)"),
        (bad_time, lambda i: f"{mapping.get('order_time')} {first['order_time'].iloc[i]!r} is not a date and time "
         "(like 2025-11-27 14:30)"),
        (bad_freight, lambda i: f"{mapping.get('freight')} {first['freight'].iloc[i]!r} is not an amount in yuan"),
        (bad_order_discount, lambda i: f"{mapping.get('order_discount')} {first['order_discount'].iloc[i]!r} is "
         "not an amount in yuan"),
        (bad_installments, lambda i: f"{mapping.get('installments')} {first['installments'].iloc[i]!r} is not a "
         "whole number of installments"),
    ]
    order_problems: list[tuple[int, str]] = [(rid, reason) for rid, reason in conflicts.items()]
    for mask, message in order_problem_masks:
        for i in np.flatnonzero(mask.to_numpy(dtype=bool, na_value=False)):
            order_problems.append((int(order_index[i]), message(i)))

    # Lines.
    quantity_text = cells["quantity"]
    quantity = pd.to_numeric(quantity_text.str.replace(",", "", regex=False), errors="coerce")
    bad_quantity = quantity.isna() | (quantity <= 0) | ~np.isfinite(quantity.fillna(0))
    price, bad_price = _money(cells["unit_price"])
    bad_price = bad_price | price.isna() | (price < 0)
    discount, bad_discount = _money(cells["line_discount"])
    kind_text = cells["item_kind"]
    kind = _lookup(kind_text, KIND_VALUES)
    bad_kind = kind.isna() & kind_text.notna()
    no_item = cells["item_code"].isna() & cells["item_name"].isna()
    bad.extend(
        [
            (bad_quantity.to_numpy(dtype=bool, na_value=True), "quantity"),
            (bad_price.to_numpy(dtype=bool, na_value=True), "unit_price"),
            (bad_discount.to_numpy(dtype=bool, na_value=False), "line_discount"),
            (bad_kind.to_numpy(dtype=bool, na_value=False), "item_kind"),
            (no_item.to_numpy(dtype=bool, na_value=False), "item"),
        ]
    )
    line_problems: list[tuple[int, str]] = []
    for mask, field_name in bad:
        for i in np.flatnonzero(mask):
            row = row_numbers[i]
            if field_name == "item":
                msg = f"row {row}: neither {LABELS['item_code']} nor {LABELS['item_name']} is filled in"
            else:
                header = mapping.get(field_name, LABELS[field_name])
                value = cells[field_name].iloc[i]
                what = {
                    "quantity": "a positive number",
                    "unit_price": "an amount in yuan (like 199.00)",
                    "line_discount": "an amount in yuan",
                    "item_kind": "商品/服务 (product/service)",
                }[field_name]
                shown = "empty" if value is None or value is pd.NA else f"{value!r}"
                msg = f"row {row}: {header} is {shown}, expected {what}"
            line_problems.append((int(record_idx[i]), msg))

    line_no = pd.Series(record_idx).groupby(record_idx).cumcount().to_numpy() + 1
    lines = pd.DataFrame(
        {
            "record_idx": pd.array(record_idx, dtype="Int64"),
            "line_no": pd.array(line_no, dtype="Int64"),
            "item_code": cells["item_code"].array,
            "item_kind": kind.array,
            "item_name": cells["item_name"].array,
            "spec": cells["spec"].array,
            "model": cells["model"].array,
            "quantity": pd.array(quantity.where(~bad_quantity).to_numpy(), dtype="Float64"),
            "unit_price_fen": pd.array(price.where(~bad_price).to_numpy(), dtype="Int64"),
            "discount_fen": pd.array(discount.fillna(0).to_numpy(), dtype="Int64"),
            "line_total_fen": _repeated(None, n, "Int64"),
        },
        columns=LINE_COLUMNS,
    )
    return Parsed(orders, lines, problem_rows(order_problems + line_problems))


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
        ids = _cells(chunk.frame, mapping, "order_id").dropna().unique().tolist()
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
