"""Template rows to canonical order and line frames (vectorised), with a reason for every cell that is unusable."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from connectors.base import LINE_COLUMNS, ORDER_COLUMNS, SHANGHAI, Parsed, problem_rows
from connectors.template.headers import (
    ALIASES,
    CHANNEL_VALUES,
    KIND_VALUES,
    LABELS,
    ORDER_LEVEL,
    PAYMENT_VALUES,
)
from yidi.money import yuan_series_to_fen


def column_cells(frame: pd.DataFrame, mapping: dict[str, str], field_name: str) -> pd.Series:
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


def _numbers(series: pd.Series) -> pd.Series:
    """``pd.to_numeric(series, errors="coerce")``, each distinct text converted once (quantities repeat)."""
    codes, distinct = pd.factorize(series)
    if not len(distinct):
        return pd.to_numeric(series, errors="coerce")
    numbers = pd.to_numeric(pd.Series(distinct, dtype=series.dtype), errors="coerce")
    return pd.Series(numbers.array.take(codes, allow_fill=True), index=series.index)


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



def _repeated(value, n: int, dtype: str):
    """``n`` copies of one value as a pandas array (a take of one element: no per-row Python objects)."""
    return pd.array([value], dtype=dtype).take(np.zeros(n, dtype=np.intp))


def _order_level(cells: dict[str, pd.Series], mapping: dict[str, str], record_idx: np.ndarray
                 ) -> tuple[pd.DataFrame, dict[int, str]]:
    """(first non-empty value of each ORDER_LEVEL field per order, indexed by record_idx ascending; {record_idx:
    reason} for orders whose rows disagree on a field). In numpy: the rows sorted by order (stable: file order
    within), each order's first non-empty row found by a minimum over its slice, a row disagrees when it is
    non-empty and differs from its order's first value (the same as more than one distinct value)."""
    n = len(record_idx)
    order = np.argsort(record_idx, kind="stable")
    sorted_idx = record_idx[order]
    starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]]) if n else np.empty(0, dtype=np.intp)
    order_index = sorted_idx[starts]
    sizes = np.diff(np.r_[starts, n])
    group_of_row = np.empty(n, dtype=np.intp)
    group_of_row[order] = np.repeat(np.arange(len(starts)), sizes)
    multi = sizes > 1
    present = [f for f in ORDER_LEVEL if f in mapping]
    columns: dict[str, pd.api.extensions.ExtensionArray] = {}
    conflicts: dict[int, str] = {}
    for field_name in ORDER_LEVEL:
        values = cells[field_name]
        filled = values.notna().to_numpy(dtype=bool)
        if n:
            positions = np.minimum.reduceat(np.where(filled[order], order, n), starts)
        else:
            positions = np.empty(0, dtype=np.intp)
        firsts = values.array.take(np.where(positions == n, -1, positions), allow_fill=True)
        columns[field_name] = firsts
        if field_name not in present or not multi.any():
            continue
        # A row of an order with several rows disagrees when it is filled and differs from the order's first value.
        candidates = filled & multi[group_of_row]
        if not candidates.any():
            continue
        rows = np.flatnonzero(candidates)
        differs = (values.array[rows] != firsts[group_of_row[rows]])
        differs = np.asarray(pd.array(differs, dtype="boolean").fillna(False), dtype=bool)
        for rid in np.unique(record_idx[rows[differs]]).tolist():
            shown = values[record_idx == rid].dropna().unique().tolist()[:3]
            conflicts.setdefault(
                int(rid),
                f"rows of this order disagree on {mapping[field_name]}: {', '.join(repr(v) for v in shown)}; "
                "keep one value (or leave the later rows empty) and replay",
            )
    first = pd.DataFrame(columns, index=pd.Index(order_index, name="record_idx"))
    return first, conflicts


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
    cells = {f: column_cells(frame, mapping, f) for f in ALIASES}
    bad: list[tuple[np.ndarray, str]] = []  # (row mask, message template with {row} and {value})

    # Order-level values: the first non-empty value of each order (covers repeated, blank-after-first and merged),
    # and conflicts: several different non-empty values for an order-level field in one order.
    first, conflicts = _order_level(cells, mapping, record_idx)
    order_index = first.index.to_numpy()

    channel_text = first["channel"]
    channel = _lookup(channel_text, CHANNEL_VALUES)
    bad_channel = channel.isna() & channel_text.notna()
    channel = channel.fillna(default_channel).astype("str")

    times, bad_time = _parse_times(first["order_time"])
    # an order without a time takes the file's arrival time, to the microsecond (pandas 3 refuses a fill value finer
    # than the column's unit, e.g. whole seconds parsed from the file)
    times = times.dt.as_unit("us").fillna(pd.Timestamp(received_at).tz_convert(UTC).as_unit("us"))
    freight, bad_freight = yuan_series_to_fen(first["freight"])
    order_discount, bad_order_discount = yuan_series_to_fen(first["order_discount"])
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
    quantity = _numbers(quantity_text.str.replace(",", "", regex=False))
    bad_quantity = quantity.isna() | (quantity <= 0) | ~np.isfinite(quantity.fillna(0))
    price, bad_price = yuan_series_to_fen(cells["unit_price"])
    bad_price = bad_price | price.isna() | (price < 0)
    discount, bad_discount = yuan_series_to_fen(cells["line_discount"])
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

