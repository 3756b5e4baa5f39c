"""The one small interface every order channel implements, and the canonical frames channels parse into.

A channel is one module with a ``Connector`` subclass:

- ``fetch(cursor)`` yields ``Batch``es: raw records (text exactly as the source sent it) plus the cursor to
  persist once the batch is committed (``None``: do not advance yet) and an optional ``on_commit`` hook
  (mark a mail read, move a file to ``processed/``). Fetching never writes to our store.
- ``parse(records)`` maps raw records to the canonical ``orders`` / ``lines`` frames (columns named below) and a
  ``problems`` frame of records that cannot be understood, each with a reason a person can act on. Parsing is
  pure: a quarantined record replayed later goes through the same function.

One raw record yields at most one order; ``record_idx`` links orders, lines and problems to the record's
position in the batch. The exception is a bulk drop (a csv of thousands of orders): each chunk of it lands as one
record (``BulkChunk``), and ``record_idx`` numbers the orders inside the chunk.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

SHANGHAI = ZoneInfo("Asia/Shanghai")

# Canonical order columns a channel's parse() produces (before normalisation/classification).
ORDER_COLUMNS = [
    "record_idx",
    "channel",  # business channel: taobao, website, email, phone, fax
    "channel_order_id",
    "customer_name",
    "customer_phone",
    "customer_email",
    "ship_country",  # ISO code; CN unless the source says otherwise
    "ship_province",
    "ship_city",
    "ship_district",
    "ship_detail",
    "ship_full_address",  # free text when the source has no structured fields
    "ship_postcode",
    "payment_method",
    "installments",
    "currency",
    "goods_total_fen",  # NA: computed from the lines
    "discount_fen",
    "freight_fen",
    "order_total_fen",  # NA: computed
    "source_status",
    "source_cancelled",  # the source says the order is cancelled/closed
    "order_time",
    "source_modified_at",
    "buyer_note",
    "source_extra",  # JSON text of source facts with no column (refunds...): part of change detection
]

LINE_COLUMNS = [
    "record_idx",
    "line_no",
    "item_code",
    "item_kind",  # product | service | NA (decided from the catalog)
    "item_name",
    "spec",
    "model",
    "quantity",
    "unit_price_fen",
    "discount_fen",
    "line_total_fen",  # NA: computed
]

RECORD_COLUMNS = ["source_ref", "source_key", "content", "content_type", "content_hash"]

PROBLEM_COLUMNS = ["record_idx", "reason"]


class ChannelError(RuntimeError):
    """A channel failed in a way retrying will not fix (bad credentials, signature, configuration)."""


class TransientChannelError(ChannelError):
    """A channel failed in a way that may pass (5xx, timeout, throttling, truncated response): retry later."""


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()


def hash_contents(contents: list[str]) -> list[str]:
    sha = hashlib.sha256
    return [sha(c.encode("utf-8", "surrogatepass")).hexdigest() for c in contents]


def make_records(
    contents: list[str],
    source_refs: list[str] | str,
    *,
    content_type: str,
    source_keys: list[str | None] | None = None,
) -> pd.DataFrame:
    """A records frame (RECORD_COLUMNS) from raw texts."""
    n = len(contents)
    refs = [source_refs] * n if isinstance(source_refs, str) else list(source_refs)
    keys = source_keys if source_keys is not None else [None] * n
    return pd.DataFrame(
        {
            "source_ref": pd.array(refs, dtype="str"),
            "source_key": pd.array(keys, dtype="str"),
            "content": pd.array(contents, dtype="str"),
            "content_type": content_type,
            "content_hash": pd.array(hash_contents(contents), dtype="str"),
        }
    )


@dataclass
class Parsed:
    orders: pd.DataFrame
    lines: pd.DataFrame
    problems: pd.DataFrame

    @classmethod
    def empty(cls) -> Parsed:
        return cls(empty_orders(), empty_lines(), empty_problems())


@dataclass
class BulkChunk:
    """A chunk of a bulk drop (thousands of orders) that lands as one raw record: its text as read.

    Positions ``0 … size-1`` number the orders (and unusable rows) in the chunk, as ``record_idx`` does in the
    batch's ``parsed``. Only the positions that end in quarantine get records of their own (``records_at``), so a
    person can fix and replay one order; the accepted orders point at the chunk record.
    """

    record: pd.DataFrame  # RECORD_COLUMNS, one row
    size: int
    records_at: Callable[[np.ndarray], pd.DataFrame]  # RECORD_COLUMNS for these positions, in that order


@dataclass
class Batch:
    records: pd.DataFrame  # RECORD_COLUMNS (empty when ``bulk`` is set)
    cursor: str | None = None  # persisted after commit; None = leave the stored cursor as it is
    on_commit: Callable[[], None] | None = None
    # A connector that parsed while reading hands the parse over, or a function parsing the records at the
    # given positions (numbered as in ``records``), so records already landed are not parsed again.
    parsed: Parsed | Callable[[np.ndarray], Parsed] | None = None
    label: str = ""  # shown in logs: "page 3 of window …", "orders.csv rows 1-50000"
    bulk: BulkChunk | None = None  # the batch is one chunk of a bulk drop (see BulkChunk)


@dataclass
class Connector(ABC):
    """Base of every order channel. ``name`` is the intake channel (``intake_records.channel``, cursor key)."""

    name: str
    options: dict = field(default_factory=dict)

    @abstractmethod
    def fetch(self, cursor: str | None) -> Iterator[Batch]:
        """Yield batches of raw records from ``cursor`` on."""

    @abstractmethod
    def parse(self, records: pd.DataFrame) -> Parsed:
        """Map raw records to canonical orders and lines; unreadable records go to ``problems``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


# ---------------------------------------------------------------------------------------------------------------
# Frame builders and value parsing shared by channels.


def empty_orders() -> pd.DataFrame:
    return frame_from_rows([], ORDER_COLUMNS)


def empty_lines() -> pd.DataFrame:
    return frame_from_rows([], LINE_COLUMNS)


def empty_problems() -> pd.DataFrame:
    return pd.DataFrame({"record_idx": pd.Series(dtype="int64"), "reason": pd.Series(dtype="str")})


_INT_COLUMNS = {
    "record_idx",
    "line_no",
    "installments",
    "goods_total_fen",
    "discount_fen",
    "freight_fen",
    "order_total_fen",
    "unit_price_fen",
    "line_total_fen",
}
_TIME_COLUMNS = {"order_time", "source_modified_at"}


def frame_from_rows(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """A canonical frame with stable dtypes from a list of dicts (missing keys are NA)."""
    data = {}
    for column in columns:
        values = [row.get(column) for row in rows]
        if column in _INT_COLUMNS:
            data[column] = pd.array(values, dtype="Int64")
        elif column in _TIME_COLUMNS:
            data[column] = pd.to_datetime(pd.Series(values, dtype=object), utc=True)
        elif column == "quantity":
            data[column] = pd.array(values, dtype="Float64")
        elif column == "source_cancelled":
            data[column] = pd.array([bool(v) for v in values], dtype="boolean")
        else:
            data[column] = pd.array([None if v is None else str(v) for v in values], dtype="str")
    return pd.DataFrame(data, columns=columns)


class BadValue(ValueError):
    """A field value that cannot be read; the message says which and why."""


def parse_quantity(value, field_name: str = "quantity") -> float | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    if text == "":
        return None
    try:
        number = float(text.replace(",", ""))
    except ValueError:
        raise BadValue(f"{field_name} {value!r} is not a number") from None
    if not np.isfinite(number) or number <= 0:
        raise BadValue(f"{field_name} {value!r} must be a positive number")
    return number


def parse_local_time(value, field_name: str = "order time", tz=SHANGHAI) -> datetime | None:
    """A timestamp from a source: aware ones are kept, naive ones are read in ``tz`` (China time)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, datetime):
        stamp = value
    else:
        text = str(value).strip()
        if text == "":
            return None
        try:
            stamp = pd.Timestamp(text.replace("/", "-")).to_pydatetime()
        except (ValueError, OverflowError):
            raise BadValue(f"{field_name} {value!r} is not a date and time (like 2025-11-27 14:30)") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=tz)
    return stamp.astimezone(UTC)


def clean_text(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def problem_rows(pairs: list[tuple[int, str]]) -> pd.DataFrame:
    if not pairs:
        return empty_problems()
    idx, reasons = zip(*pairs, strict=True)
    return pd.DataFrame({"record_idx": pd.array(idx, dtype="int64"), "reason": pd.array(reasons, dtype="str")})
