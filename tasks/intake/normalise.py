"""Normalisation of parsed channel orders into the canonical order store rows (plain functions, vectorised).

- Contact phone normalised (``yidi.phone.normalise_phones``); the raw text is kept when it is not a phone number,
  so review sees what the customer wrote.
- Delivery address split and classified remote / local / unknown (``yidi.address.classify.classify_addresses``). The
  channel's structured fields are preferred; free text is parsed otherwise. Addresses with province, city and
  district are classified once per distinct combination (the street part cannot change the answer), except the
  Chongqing districts whose towns moved in the 2025 reform, whose street part decides the district.
- Lines: SKU or service code, kind from the catalog when the code is known, line totals.
- Totals: the channel's figures when it sends them, else computed (goods = Σ line totals; order = goods −
  discount + freight).
- ``content_hash``: a digest of the order as the channel states it (before phone/address normalisation, so a
  better classifier never makes an unchanged order look changed). Equal hash = nothing to do on re-read.
- Records that cannot be stored as they are (no lines, text longer than the store keeps, NUL characters) become
  problems with a reason, never truncated silently.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import String

from connectors.base import SHANGHAI, Parsed, empty_problems
from yidi.schema import order_lines, orders

# Canonical fields that define an order's content (what the hash covers), in a fixed order.
HASH_ORDER_FIELDS = [
    "channel", "channel_order_id", "customer_name", "customer_phone", "customer_email", "ship_country",
    "ship_province", "ship_city", "ship_district", "ship_detail", "ship_full_address", "ship_postcode",
    "payment_method", "installments", "currency", "goods_total_fen", "discount_fen", "freight_fen",
    "order_total_fen", "source_status", "source_cancelled", "order_time", "buyer_note", "source_extra",
]  # fmt: skip
HASH_LINE_FIELDS = ["line_no", "item_code", "item_kind", "item_name", "spec", "model", "quantity",
                    "unit_price_fen", "discount_fen", "line_total_fen"]

# Columns written to ``orders`` by intake (state, order_no, ids and times are set by landing).
ORDER_STORE_COLUMNS = [
    "channel", "channel_order_id", "customer_name", "customer_phone", "customer_email", "ship_country",
    "ship_province", "ship_city", "ship_district", "ship_detail", "ship_admin_code", "ship_postcode", "region", "region_note",
    "payment_method", "installments", "currency", "goods_total_fen", "discount_fen", "freight_fen",
    "order_total_fen", "source_status", "order_time", "source_modified_at", "buyer_note", "content_hash",
]  # fmt: skip
LINE_STORE_COLUMNS = ["line_no", "item_code", "item_kind", "item_name", "spec", "model", "quantity",
                      "unit_price_fen", "discount_fen", "line_total_fen"]


@dataclass
class Normalised:
    orders: pd.DataFrame  # ORDER_STORE_COLUMNS + record_idx, source_cancelled, source_extra, phone_kind
    lines: pd.DataFrame  # LINE_STORE_COLUMNS + record_idx
    problems: pd.DataFrame  # record_idx, reason


def order_numbers(ids: np.ndarray, received_at: datetime) -> pd.api.extensions.ExtensionArray:
    """Our order numbers: ``YD`` + the China date of receipt (yymmdd) + the order's id, e.g. ``YD26112700001234``.

    Unique because the id is; readable on the phone; and increasing, so the unique index on ``order_no`` grows at
    its end instead of taking random inserts (a hashed number cost ~3x at 1M orders).
    """
    day = received_at.astimezone(SHANGHAI).strftime("%y%m%d")
    digits = pc.utf8_lpad(pc.cast(pa.array(np.asarray(ids, dtype=np.int64)), pa.string()), 8, "0")
    return pd.array(pc.binary_join_element_wise(f"YD{day}", digits, ""), dtype="str")  # built in Arrow


def _arrow_text(series: pd.Series) -> pa.Array:
    """A column as Arrow large_string (NA stays null) in a fixed textual form."""
    if pd.api.types.is_datetime64_any_dtype(series):
        utc = series.dt.tz_convert("UTC").dt.tz_localize(None) if series.dt.tz is not None else series
        values = utc.to_numpy()
        # ISO text with the column's own sub-second digits (2026-11-24T15:19:00.000000 for microseconds), as Arrow's
        # strftime("%Y-%m-%dT%H:%M:%S") writes it; numpy formats it in C.
        text = np.datetime_as_string(values, unit=np.datetime_data(values.dtype)[0])
        return pa.array(text, type=pa.large_string(), mask=utc.isna().to_numpy())
    if pd.api.types.is_bool_dtype(series):
        return pc.cast(pc.if_else(pa.array(series.astype("boolean")), "1", "0"), pa.large_string())
    return pc.cast(pa.array(series, from_pandas=True), pa.large_string())


def _text_key(frame: pd.DataFrame, columns: list[str]) -> pa.Array:
    """One string per row from ``columns`` (null -> empty, unit separators between), joined in Arrow."""
    arrays = [_arrow_text(frame[c]) for c in columns]
    return pc.binary_join_element_wise(*arrays, pa.scalar("\x1f", pa.large_string()), null_handling="replace",
                                       null_replacement="")


def content_hashes(parsed_orders: pd.DataFrame, parsed_lines: pd.DataFrame) -> pd.Series:
    """Digest of each order's canonical content (fields + lines), aligned with ``parsed_orders``.

    The text hashed is ``order fields \x1d line 1 \x1e line 2 …`` (fields joined by \x1f), built in Arrow; only the
    sha256 runs per order.
    """
    if not len(parsed_orders):
        return pd.Series([], index=parsed_orders.index, dtype="str")
    order_text = _text_key(parsed_orders, HASH_ORDER_FIELDS)
    targets = parsed_orders["record_idx"].astype("int64").to_numpy()
    if len(parsed_lines):
        lines = parsed_lines.sort_values(["record_idx", "line_no"], kind="stable")
        line_text = _text_key(lines, HASH_LINE_FIELDS)
        owners = lines["record_idx"].astype("int64").to_numpy()
        starts = np.searchsorted(owners, targets, side="left")
        sizes = np.searchsorted(owners, targets, side="right") - starts
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        # Each order's lines, in order: positions starts[i] … starts[i] + sizes[i] - 1, laid end to end.
        picks = np.repeat(starts - offsets[:-1], sizes) + np.arange(offsets[-1])
        picked = line_text.take(picks)
        if isinstance(picked, pa.ChunkedArray):
            picked = picked.combine_chunks()
        per_order = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), picked)
        joined = pc.binary_join(per_order, pa.scalar("\x1e", pa.large_string()))
    else:
        joined = pa.array([""] * len(targets), pa.large_string())
    text = pc.binary_join_element_wise(order_text, joined, pa.scalar("\x1d", pa.large_string()))
    sha = hashlib.sha256
    digests = [sha(b).hexdigest() for b in pc.cast(text, pa.large_binary()).to_pylist()]
    return pd.Series(digests, index=parsed_orders.index, dtype="str")


# ---------------------------------------------------------------------------------------------------------------
# Phones and addresses (other modules do the hard part; we call them once per distinct value).


def _normalise_phones(raw: pd.Series) -> pd.DataFrame:
    from yidi.phone import normalise_phones

    return normalise_phones(raw)


def country_codes(raw: pd.Series) -> pd.Series:
    """ISO 3166-1 alpha-2 codes as stored (upper case); anything else is not a code and is left out (the region
    note still names the country the classifier recognised)."""
    text = raw.astype("str").str.strip().str.upper()
    return text.where(text.str.fullmatch(r"[A-Z]{2}").fillna(False).astype(bool)).astype("str")


def normalise_phone_column(raw: pd.Series, country: pd.Series | None = None) -> tuple[pd.Series, pd.Series]:
    """(phone to store, phone kind). Distinct values are normalised once. With ``country`` (ISO codes), numbers of
    orders shipped abroad are read in that country's numbering first (E.164, ``foreign``)."""
    stored, kinds = _phone_column(raw)
    if country is None:
        return stored, kinds
    code = country.astype("str").str.strip().str.upper()
    abroad = (code.notna() & (code != "CN") & code.str.fullmatch(r"[A-Z]{2}").fillna(False) & raw.notna()).to_numpy(
        dtype=bool)
    if abroad.any():
        from yidi.phone import foreign_phones

        e164 = foreign_phones(raw[abroad].astype("str"), code[abroad])
        found = e164.notna()
        stored.loc[found.index[found]] = e164[found]
        kinds.loc[found.index[found]] = "foreign"
    return stored, kinds


def _phone_column(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    codes, uniques = pd.factorize(raw.astype("str"), use_na_sentinel=True)
    if len(uniques) == 0:
        return raw.astype("str"), pd.Series(pd.NA, index=raw.index, dtype="str")
    result = _normalise_phones(pd.Series(uniques, dtype="str"))
    phone = result["phone"].astype("str").to_numpy()
    kind = result["phone_kind"].astype("str").to_numpy()
    safe = np.where(codes < 0, 0, codes)
    stored = pd.Series(phone[safe], index=raw.index, dtype="str")
    kinds = pd.Series(kind[safe], index=raw.index, dtype="str")
    missing = codes < 0
    stored[missing] = pd.NA
    kinds[missing] = pd.NA
    # Not recognisable as a phone: keep what the customer wrote (review flags it), never drop it.
    stored = stored.fillna(raw.astype("str").str.strip())
    return stored, kinds


@lru_cache(maxsize=1)
def detail_sensitive_districts() -> frozenset[str]:
    """Districts whose towns changed district in the 2025 Chongqing reform: their street part matters."""
    try:
        from yidi.address.gazetteer import DATA_DIR

        with (DATA_DIR / "chongqing_2025_towns.csv").open(encoding="utf-8") as handle:
            names = {row["written_district"] for row in csv.DictReader(handle)}
    except (ImportError, OSError, KeyError):
        names = set()
    return frozenset(names | {"渝北区", "北碚区", "江北区", "两江新区"})


def classify(frame: pd.DataFrame) -> pd.DataFrame:
    """``classify_addresses`` on canonical ship_* columns, once per distinct structured address."""
    from yidi.address.classify import classify_addresses

    province, city, district = frame["ship_province"], frame["ship_city"], frame["ship_district"]
    detail, full = frame["ship_detail"], frame["ship_full_address"]
    country = frame["ship_country"].astype("str")
    # No structure at all: the detail is the whole address, parse it as free text.
    no_structure = province.isna() & city.isna() & district.isna()
    full = full.where(full.notna() | ~no_structure, detail)
    detail = detail.where(~(no_structure & frame["ship_full_address"].isna()))
    structured = (
        province.notna() & city.notna() & district.notna() & full.isna()
        & (country.isna() | (country.str.upper() == "CN"))
        & ~district.isin(detail_sensitive_districts())
    )
    columns = ["province", "city", "district", "detail", "admin_code", "region", "region_note"]
    idx_structured = np.flatnonzero(structured.to_numpy())
    idx_rest = np.flatnonzero(~structured.to_numpy())
    parts = []
    if len(idx_structured):
        # Distinct (province, city, district) classified once, then spread by code.
        p, c, d = (s.iloc[idx_structured].reset_index(drop=True) for s in (province, city, district))
        codes, _ = pd.factorize(p + "\x1f" + c + "\x1f" + d)
        _, first = np.unique(codes, return_index=True)
        keys = pd.DataFrame({"province": p.iloc[first], "city": c.iloc[first], "district": d.iloc[first]},
                            dtype="str").reset_index(drop=True)
        result = classify_addresses(keys)[columns[:3] + columns[4:]].astype("str")
        part = result.take(codes).reset_index(drop=True)
        part["detail"] = detail.iloc[idx_structured].astype("str").array
        parts.append(part.set_axis(idx_structured))
    if len(idx_rest):
        inputs = pd.DataFrame({
            "province": province.iloc[idx_rest].to_numpy(),
            "city": city.iloc[idx_rest].to_numpy(),
            "district": district.iloc[idx_rest].to_numpy(),
            "detail": detail.iloc[idx_rest].to_numpy(),
            "full_address": full.iloc[idx_rest].to_numpy(),
            "country": country.iloc[idx_rest].to_numpy(),
        }, dtype="str")
        parts.append(classify_addresses(inputs)[columns].astype("str").set_axis(idx_rest))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="str") for c in columns}, index=frame.index)
    out = pd.concat(parts)[columns] if len(parts) > 1 else parts[0][columns]
    if len(parts) > 1:
        out = out.sort_index()
    out = out.set_axis(frame.index).astype("str")
    # Shipped abroad (or to HK/MO/TW): the gazetteer knows no foreign state or city, so what the channel sent is
    # kept as sent (state, city, the street lines whole) beside the country; the classifier only adds the region.
    abroad = (country.notna() & (country.str.upper() != "CN")).to_numpy(dtype=bool)
    if abroad.any():
        for name, given in (("province", frame["ship_province"]), ("city", frame["ship_city"])):
            out.loc[abroad, name] = out[name].where(out[name].notna(), given.astype("str"))[abroad]
        out.loc[abroad, "detail"] = frame["ship_detail"].astype("str").where(
            frame["ship_detail"].notna(), out["detail"])[abroad]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Limits of the store: refuse, with a reason, what does not fit.


def _limits(table) -> dict[str, int]:
    return {c.name: c.type.length for c in table.columns if isinstance(c.type, String) and c.type.length}


ORDER_TEXT_LIMITS = {k: v for k, v in _limits(orders).items() if k in ORDER_STORE_COLUMNS}
LINE_TEXT_LIMITS = {k: v for k, v in _limits(order_lines).items() if k in LINE_STORE_COLUMNS}
LABELS = {
    "channel_order_id": "order number", "customer_name": "customer name", "customer_phone": "phone",
    "customer_email": "email", "ship_province": "province", "ship_city": "city", "ship_district": "district",
    "ship_detail": "address", "ship_postcode": "postcode", "payment_method": "payment method",
    "source_status": "status", "item_code": "item code", "item_name": "item name", "spec": "specification",
    "model": "model", "currency": "currency",
}  # fmt: skip


def _length_problems(frame: pd.DataFrame, limits: dict[str, int], what: str) -> list[tuple[int, str]]:
    found = []
    for column, limit in limits.items():
        if column not in frame or not len(frame):
            continue
        text = frame[column].astype("str")
        longest = pc.max(pc.binary_length(pa.array(text, type=pa.large_string(), from_pandas=True))).as_py()
        if longest is None or longest <= limit:  # no text has more bytes than the limit has characters: all fit
            continue
        lengths = text.str.len()
        for i in np.flatnonzero((lengths > limit).to_numpy(dtype=bool, na_value=False)):
            label = LABELS.get(column, column)
            found.append((int(frame["record_idx"].iloc[i]), f"{what}{label} is {int(lengths.iloc[i]):,} characters; "
                          f"the order store keeps at most {limit}: shorten it and replay"))
    return found


def _may_hold_nul(array: pa.Array | pa.ChunkedArray) -> bool:
    """Whether a text array's character bytes hold a NUL byte: one pass over its data buffers (no string per value;
    a slice may also see bytes outside it, which only costs the exact check)."""
    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    return any(chunk.buffers()[2] is not None and not np.frombuffer(chunk.buffers()[2], dtype=np.uint8).all()
               for chunk in chunks)


def _nul_problems(frame: pd.DataFrame, what: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    text_columns = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c])]
    if not text_columns or not len(frame):
        return found
    for column in text_columns:
        values = frame[column]
        if values.dtype != "str":  # object columns of text: check them as text
            values = values.astype("str")
        arrow = pa.array(values.array)
        if not _may_hold_nul(arrow):
            continue
        matches = pc.match_substring(arrow, "\x00")
        has_nul = pc.fill_null(matches, False).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(has_nul):
            found.append((int(frame["record_idx"].iloc[i]), f"{what}{LABELS.get(column, column)} contains a NUL "
                          "character (binary data?); remove it and replay"))
    return found


# ---------------------------------------------------------------------------------------------------------------


def normalise(parsed: Parsed, *, catalog_kinds: dict[str, str] | None = None) -> Normalised:
    """Canonical store rows for the parsed orders; records with problems are left out (and listed)."""
    problems: list[tuple[int, str]] = []
    p_orders = parsed.orders.reset_index(drop=True)
    p_lines = parsed.lines.reset_index(drop=True)
    bad = set(parsed.problems["record_idx"].astype("int64").tolist()) if len(parsed.problems) else set()
    if bad:
        p_orders = p_orders[~p_orders["record_idx"].astype("int64").isin(bad)].reset_index(drop=True)
        p_lines = p_lines[~p_lines["record_idx"].astype("int64").isin(bad)].reset_index(drop=True)

    ids = p_orders["channel_order_id"].astype("str").str.strip()
    for i in np.flatnonzero(ids.isna().to_numpy() | (ids == "").to_numpy(dtype=bool, na_value=True)):
        problems.append((int(p_orders["record_idx"].iloc[i]), "the channel's order number is missing"))
    with_lines = set(p_lines["record_idx"].astype("int64").tolist())
    for rid in p_orders["record_idx"].astype("int64").tolist():
        if rid not in with_lines:
            problems.append((rid, "the order has no lines (no product or service)"))
    problems += _length_problems(p_orders, ORDER_TEXT_LIMITS, "")
    problems += _length_problems(p_lines, LINE_TEXT_LIMITS, "a line's ")
    problems += _nul_problems(p_orders, "")
    problems += _nul_problems(p_lines, "a line's ")
    if problems:
        drop = {rid for rid, _ in problems}
        p_orders = p_orders[~p_orders["record_idx"].astype("int64").isin(drop)].reset_index(drop=True)
        p_lines = p_lines[~p_lines["record_idx"].astype("int64").isin(drop)].reset_index(drop=True)

    hashes = content_hashes(p_orders, p_lines)

    # Lines: kind from the catalog when the code is known; totals computed when the channel gave none.
    lines = p_lines.copy()
    if catalog_kinds:
        known = lines["item_code"].map(catalog_kinds)
        lines["item_kind"] = known.where(known.notna(), lines["item_kind"])
    lines["item_kind"] = lines["item_kind"].fillna("product").astype("str")
    gross = (lines["quantity"].astype("Float64") * lines["unit_price_fen"].astype("Float64")).round().astype("Int64")
    lines["discount_fen"] = lines["discount_fen"].fillna(0).astype("Int64")
    lines["line_total_fen"] = lines["line_total_fen"].fillna(gross - lines["discount_fen"]).astype("Int64")
    lines["quantity"] = lines["quantity"].astype("float64")

    # Totals.
    goods = lines.groupby(lines["record_idx"].astype("int64"))["line_total_fen"].sum()
    out = p_orders.copy()
    computed_goods = out["record_idx"].astype("int64").map(goods).astype("Int64")
    out["goods_total_fen"] = out["goods_total_fen"].fillna(computed_goods).astype("Int64")
    out["discount_fen"] = out["discount_fen"].fillna(0).astype("Int64")
    out["freight_fen"] = out["freight_fen"].fillna(0).astype("Int64")
    computed_total = out["goods_total_fen"] - out["discount_fen"] + out["freight_fen"]
    out["order_total_fen"] = out["order_total_fen"].fillna(computed_total).astype("Int64")
    out["installments"] = out["installments"].fillna(1).astype("Int64")
    out["currency"] = out["currency"].fillna("CNY").astype("str")
    out["content_hash"] = hashes.array

    # Contact phone and address.
    out["customer_phone"], out["phone_kind"] = normalise_phone_column(out["customer_phone"], out["ship_country"])
    out["ship_country"] = country_codes(out["ship_country"])
    if len(out):
        # Arrow-backed arrays, by position: no round trip through Python strings per row.
        where = classify(out)
        out["ship_province"] = where["province"].array
        out["ship_city"] = where["city"].array
        out["ship_district"] = where["district"].array
        out["ship_detail"] = where["detail"].array
        out["ship_admin_code"] = where["admin_code"].array
        out["region"] = where["region"].fillna("unknown").array
        out["region_note"] = where["region_note"].array
    else:
        for column in ("ship_admin_code", "region", "region_note"):
            out[column] = pd.Series(dtype="str")
    for column in ("ship_province", "ship_city", "ship_district", "ship_detail", "ship_admin_code", "region",
                   "region_note"):
        out[column] = out[column].astype("str")
    # The classifier's note can be long (candidate lists); the column keeps 200 characters.
    out["region_note"] = out["region_note"].str.slice(0, 200)

    keep = [*ORDER_STORE_COLUMNS, "record_idx", "source_cancelled", "source_extra", "phone_kind"]
    return Normalised(
        out[keep].reset_index(drop=True),
        lines[[*LINE_STORE_COLUMNS, "record_idx"]].reset_index(drop=True),
        pd.DataFrame(problems, columns=["record_idx", "reason"]).astype({"record_idx": "int64", "reason": "str"})
        if problems else empty_problems(),
    )
