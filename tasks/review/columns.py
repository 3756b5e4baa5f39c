"""The automated review's store-dependent rules, computed as columns with vectorised pandas (no Prefect, no GX).

Great Expectations then checks these columns (``expectations/``). Everything here works on whole frames: a catalog
join for V2, promotion and price arithmetic for V3/V4, a rolling window over the customer's purchase history for
purchase limits, and the customer's open orders and receivables for the credit check. The output is one row per
order (index: order id) with every column the suites name, plus which lines caused each line-level finding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from yidi.workdays import BUSINESS_TZ

ORDER_INPUT_COLUMNS = [
    "id", "order_no", "customer_id", "customer_name", "customer_phone", "customer_email", "ship_province",
    "ship_city", "ship_district", "ship_detail", "region", "payment_method", "installments", "currency",
    "goods_total_fen", "discount_fen", "freight_fen", "order_total_fen", "payment_state", "order_time", "state",
]  # fmt: skip
LINE_INPUT_COLUMNS = ["order_id", "line_no", "item_code", "item_kind", "item_name", "spec", "model", "quantity",
                      "unit_price_fen", "discount_fen", "line_total_fen"]  # fmt: skip
CATALOG_COLUMNS = ["code", "kind", "name", "spec", "model", "unit", "list_price_fen", "active", "min_order_qty",
                   "max_order_qty"]  # fmt: skip
CUSTOMER_COLUMNS = ["id", "is_important", "credit_limit_fen", "blocked", "prepayment_ratio"]
# The customer's effective credit grade and its measures (K1, from yidi.credit.effective_credit); optional: a
# customer without these columns, or with an empty grade, has no grade measures.
GRADE_COLUMNS = ["grade", "grade_limit_fen", "grade_prepayment_ratio", "guarantee_required", "cod_allowed",
                 "installments_allowed", "manual_review"]  # fmt: skip
HISTORY_COLUMNS = ["order_id", "customer_id", "customer_phone", "item_code", "order_time", "quantity"]
CREDIT_COLUMNS = ["customer_id", "open_unpaid_fen", "receivable_fen", "overdue_fen"]

# Line-level rules: reason code -> the per-line flag column (summed per order into the suite's count column).
LINE_RULES = {
    "ITEM_UNKNOWN": ("unknown_item", "unknown_item_lines"),
    "ITEM_INACTIVE": ("inactive_item", "inactive_item_lines"),
    "ITEM_KIND_MISMATCH": ("kind_mismatch", "kind_mismatch_lines"),
    "ITEM_NAME_MISMATCH": ("name_mismatch", "name_mismatch_lines"),
    "ITEM_SPEC_MISMATCH": ("spec_mismatch", "spec_mismatch_lines"),
    "ITEM_MODEL_MISMATCH": ("model_mismatch", "model_mismatch_lines"),
    "QUANTITY_INVALID": ("bad_quantity", "bad_quantity_lines"),
    "QUANTITY_OUT_OF_LIMITS": ("quantity_limit", "quantity_limit_lines"),
    "LINE_TOTAL_MISMATCH": ("line_total_mismatch", "line_total_mismatch_lines"),
    "PRICE_OUT_OF_TOLERANCE": ("price_off", None),
    "PURCHASE_LIMIT_EXCEEDED": ("limit_exceeded", "limit_exceeded_lines"),
    "PROMOTION_OUTSIDE_WINDOW": ("promo_window", "promo_window_lines"),
    "PROMOTION_ITEM_INELIGIBLE": ("promo_ineligible", "promo_ineligible_lines"),
}


@dataclass
class ReviewInputs:
    orders: pd.DataFrame  # ORDER_INPUT_COLUMNS
    lines: pd.DataFrame  # LINE_INPUT_COLUMNS
    catalog: pd.DataFrame  # CATALOG_COLUMNS
    customers: pd.DataFrame  # CUSTOMER_COLUMNS (those referenced)
    history: pd.DataFrame  # HISTORY_COLUMNS: limited items bought in other (open) orders within the windows
    credit: pd.DataFrame  # CREDIT_COLUMNS: store exposure per customer, excluding the orders under review
    as_of: datetime


@dataclass
class ReviewColumns:
    frame: pd.DataFrame  # index: order id; every column the suites check
    line_flags: pd.DataFrame  # order_id, line_no and one boolean column per line-level rule
    credit: pd.DataFrame  # index: order id; exposure_fen, limit_fen, overdue_fen for credit-checked orders


def _text(series: pd.Series) -> pd.Series:
    """Stripped text with blanks as missing (Arrow strings)."""
    text = series.astype("str").str.strip()
    return text.mask(text == "")


def _norm(series: pd.Series, drop: str = r"\s+") -> pd.Series:
    return series.astype("str").str.normalize("NFKC").str.lower().str.replace(drop, "", regex=True)


_PHONE_NOISE = re.compile(r"[\s\-()（）]")


def _fallback_phone_kinds(phones: pd.Series) -> pd.Series:  # pragma: no cover - until yidi.phone lands
    digits = (
        phones.astype("str")
        .str.replace(r"[\s\-()（）]", "", regex=True)
        .str.replace(r"^(\+86|0086)", "", regex=True)
    )
    kind = pd.Series("invalid", index=phones.index, dtype="str")
    kind = kind.mask(digits.str.fullmatch(r"0\d{9,11}(?:(?:转|ext|#|,)\d{1,6})?").fillna(False), "landline")
    kind = kind.mask(digits.str.fullmatch(r"[48]00\d{7}").fillna(False), "service")
    return kind.mask(digits.str.fullmatch(r"1[3-9]\d{9}").fillna(False), "mobile")


def phone_kinds(phones: pd.Series) -> pd.Series:
    """mobile / landline / service / invalid per phone (missing stays missing); distinct values once."""
    codes, uniques = pd.factorize(phones, use_na_sentinel=True)
    if len(uniques) == 0:
        return pd.Series(pd.NA, index=phones.index, dtype="str")
    distinct = pd.Series(uniques, dtype="str")
    try:
        from yidi.phone import normalise_phones

        kinds = normalise_phones(distinct)["phone_kind"].astype("str").to_numpy()
    except ImportError:  # pragma: no cover
        kinds = _fallback_phone_kinds(distinct).to_numpy()
    out = pd.Series(kinds[np.where(codes < 0, 0, codes)], index=phones.index, dtype="str")
    return out.mask(codes < 0)


def _name_mismatch(line_names: pd.Series, catalog_names: pd.Series, threshold: float) -> pd.Series:
    """Line name vs catalog name: equal after normalising, or similar enough (partial ratio: a platform title
    that contains the catalog name matches)."""
    differ = _differ(line_names, catalog_names)
    result = pd.Series(False, index=line_names.index)
    if differ.any():
        from rapidfuzz import fuzz
        from rapidfuzz.process import cpdist

        a, b = _norm(line_names[differ]), _norm(catalog_names[differ])
        result[differ] = cpdist(a.tolist(), b.tolist(), scorer=fuzz.partial_ratio, workers=1) < threshold
    return result


def _differ(mine: pd.Series, theirs: pd.Series, drop: str = r"\s+") -> pd.Series:
    """Both given and different even after normalising (NFKC, case, ``drop``). Normalising is per value in
    Python, so only the rows that differ as typed are normalised."""
    raw = (mine.notna() & theirs.notna() & (mine != theirs)).fillna(False)
    result = pd.Series(False, index=mine.index)
    if raw.any():
        result[raw] = (_norm(mine[raw], drop) != _norm(theirs[raw], drop)).to_numpy()
    return result


def _lookup(table: pd.DataFrame, column: str, positions: np.ndarray, index: pd.Index) -> pd.Series:
    """``table[column]`` at row ``positions`` (from ``get_indexer``; -1 gives missing), one vectorised take."""
    return pd.Series(table[column].array.take(positions, allow_fill=True), index=index)


def _business_dates(times: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(times, utc=True)
    return stamps.dt.tz_convert(BUSINESS_TZ).dt.tz_localize(None).dt.normalize()


def _promotion_columns(
    lines: pd.DataFrame, effective: pd.Series, promotions, tol: float
) -> dict[str, pd.Series]:
    """Best applicable discount per line, and whether the price matches a promotion that does not apply (outside
    its dates, or not for this item)."""
    zero = pd.Series(0.0, index=lines.index)
    best = zero.copy()
    window = pd.Series(False, index=lines.index)
    ineligible = pd.Series(False, index=lines.index)
    day = lines["order_day"]
    for promo in promotions:
        starts, ends = pd.Timestamp(promo.starts), pd.Timestamp(promo.ends)
        running = (day >= starts) & (day <= ends)
        eligible = lines["item_code"].isin(promo.item_codes)
        applies = running & eligible
        best = best.mask(applies & (best < promo.discount_pct), promo.discount_pct)
        promo_price = lines["list_price_fen"] * (1 - promo.discount_pct / 100)
        matches = ((effective - promo_price).abs() <= promo_price * tol / 100).fillna(False)
        window |= matches & eligible & ~running
        ineligible |= matches & running & ~eligible
    return {"best_discount_pct": best, "promo_window_match": window, "promo_ineligible_match": ineligible}


def _purchase_limits(lines: pd.DataFrame, orders: pd.DataFrame, history: pd.DataFrame, limits) -> pd.Series:
    """Per line: does the customer's quantity of this item within the window, this order included, exceed the
    limit? Counts every open order already in the store (``history``) and the earlier orders of this batch."""
    exceeded = pd.Series(False, index=lines.index)
    if not limits or lines.empty:
        return exceeded
    limited = lines[lines["item_code"].isin([lim.item_code for lim in limits])]
    if limited.empty:
        return exceeded
    keys = _customer_keys(orders["customer_id"], orders["customer_phone"])
    current = pd.DataFrame({
        "line_index": limited.index, "order_id": limited["order_id"].to_numpy(),
        "item_code": limited["item_code"].to_numpy(), "quantity": limited["quantity"].to_numpy(),
        "key": keys.reindex(limited["order_id"]).to_numpy(),
        "order_time": pd.to_datetime(orders["order_time"], utc=True).reindex(limited["order_id"]).to_numpy(),
    })  # fmt: skip
    past = pd.DataFrame({
        "line_index": -1, "order_id": history["order_id"].to_numpy(), "item_code": history["item_code"].to_numpy(),
        "quantity": history["quantity"].to_numpy(),
        "key": _customer_keys(history["customer_id"], history["customer_phone"]).to_numpy(),
        "order_time": pd.to_datetime(history["order_time"], utc=True).to_numpy(),
    })  # fmt: skip
    both = pd.concat([past[~past["order_id"].isin(current["order_id"])], current], ignore_index=True)
    both = both[both["key"].notna() & both["order_time"].notna()]
    for limit in limits:
        item = both[both["item_code"] == limit.item_code].sort_values(["key", "order_time", "order_id"])
        if item.empty:
            continue
        # Rolling window per customer, vectorised: rows sorted by (customer, time) get a composite position
        # customer * span + seconds, so one searchsorted finds each window's first row and one cumulative sum
        # gives every window's total.
        seconds = pd.to_datetime(item["order_time"], utc=True).astype("int64").to_numpy() // 1_000_000
        seconds = (seconds - seconds.min()) // 1000 if len(seconds) else seconds
        window = limit.window_days * 86_400
        span = int(seconds.max()) + window + 1
        codes = pd.factorize(item["key"], sort=True)[0].astype("int64")
        position = codes * span + seconds
        first = np.searchsorted(position, position - window, side="left")
        totals = np.cumsum(item["quantity"].to_numpy(dtype="float64"))
        in_window = totals - np.where(first > 0, totals[np.maximum(first - 1, 0)], 0.0)
        over = (in_window > limit.max_quantity) & (item["line_index"].to_numpy() >= 0)
        exceeded[item["line_index"].to_numpy()[over]] = True
    return exceeded


def _customer_keys(customer_ids: pd.Series, phones: pd.Series) -> pd.Series:
    """Who a purchase limit counts for: the customer record, else the contact phone."""
    ids = pd.to_numeric(customer_ids, errors="coerce")
    by_id = "c:" + ids.astype("Int64").astype("str")
    by_phone = "p:" + _text(phones)
    return by_id.where(ids.notna(), by_phone)


def _grade_measures(customers: pd.DataFrame, customer_value, index: pd.Index):
    """(graded, measure): which orders' customers have a credit grade, and a lookup of the grade's measures."""
    if "grade" not in customers.columns:
        return pd.Series(False, index=index), lambda column, default: pd.Series(default, index=index)
    graded = customer_value("grade", None).notna()

    def measure(column, default):
        return customer_value(column, default).where(graded, default).infer_objects()

    return graded, measure


def compute_review_columns(inputs: ReviewInputs, settings) -> ReviewColumns:
    orders = inputs.orders.set_index("id", drop=False)
    orders.index.name = "order_id"
    tol = float(settings.pricing.tolerance_pct)
    frame = pd.DataFrame(index=orders.index)

    # V1 customer
    for column in (
        "customer_name",
        "customer_phone",
        "ship_province",
        "ship_city",
        "ship_district",
        "ship_detail",
    ):
        frame[column] = _text(orders[column])
    frame["phone_kind"] = phone_kinds(frame["customer_phone"])
    frame["region"] = orders["region"].astype("str").fillna("unknown")

    customers = inputs.customers.drop_duplicates("id").set_index("id")
    customer_ids = pd.to_numeric(orders["customer_id"], errors="coerce")
    customer_at = customers.index.get_indexer(customer_ids)
    known_customer = pd.Series(customer_at >= 0, index=orders.index)

    def customer_value(column, default):
        return _lookup(customers, column, customer_at, orders.index).where(known_customer, default)

    total = orders["order_total_fen"].astype("int64")
    unpaid = total.where(orders["payment_state"].astype("str") != "paid", 0)
    threshold_fen = float(settings.orders.large_order_threshold_yuan) * 100
    important = customer_value("is_important", False).astype(bool)
    checked = important | (total >= threshold_fen)
    credit = inputs.credit.drop_duplicates("customer_id").set_index("customer_id") if len(inputs.credit) else None
    credit_at = credit.index.get_indexer(customer_ids) if credit is not None else None

    def store_value(column):
        if credit is None:
            return pd.Series(0.0, index=orders.index)
        values = pd.to_numeric(_lookup(credit, column, credit_at, orders.index), errors="coerce")
        return values.fillna(0).astype("float64")

    # Orders of one customer in this batch add up, earliest first (several orders can breach a limit together).
    order_key = customer_ids.fillna(-orders["id"].astype("float64"))
    by_time = pd.DataFrame({"key": order_key, "t": pd.to_datetime(orders["order_time"], utc=True),
                            "unpaid": unpaid}).sort_values(["t"], kind="stable")  # fmt: skip
    batch_cumulative = by_time.groupby("key", sort=False)["unpaid"].cumsum().reindex(orders.index)
    exposure = store_value("open_unpaid_fen") + store_value("receivable_fen") + batch_cumulative
    own_limit = customer_value("credit_limit_fen", 0).astype("float64")
    graded, measure = _grade_measures(customers, customer_value, orders.index)
    # K1: the grade's limit applies, unless the customer's own (positive) limit is lower.
    grade_limit = measure("grade_limit_fen", np.nan).astype("float64")
    limit = own_limit.where(~graded, np.fmin(own_limit.where(own_limit > 0), grade_limit))
    overdue = store_value("overdue_fen")
    frame["credit_headroom_fen"] = (limit - exposure).where(checked)
    frame["credit_overdue_fen"] = overdue.where(checked)
    credit_details = pd.DataFrame({"exposure_fen": exposure, "limit_fen": limit, "overdue_fen": overdue,
                                   "important": important})[checked]  # fmt: skip

    # V2 / V3 / V4 line rules against the catalog
    lines = inputs.lines.reset_index(drop=True)
    catalog = inputs.catalog.drop_duplicates("code").set_index("code")
    code = _text(lines["item_code"])
    known = code.isin(catalog.index)
    lines = lines.assign(item_code=code)
    catalog_at = catalog.index.get_indexer(code)
    for column in ("kind", "name", "spec", "model", "unit", "list_price_fen", "active", "min_order_qty",
                   "max_order_qty"):  # fmt: skip
        lines[f"cat_{column}"] = _lookup(catalog, column, catalog_at, lines.index)
    lines["list_price_fen"] = pd.to_numeric(lines["cat_list_price_fen"], errors="coerce").astype("float64")
    lines["order_day"] = _business_dates(orders["order_time"]).reindex(lines["order_id"]).to_numpy()
    quantity = pd.to_numeric(lines["quantity"], errors="coerce").astype("float64")
    price = pd.to_numeric(lines["unit_price_fen"], errors="coerce").astype("float64")
    line_discount = pd.to_numeric(lines["discount_fen"], errors="coerce").fillna(0).astype("float64")
    fractional = (
        lines["cat_unit"]
        .astype("str")
        .str.lower()
        .isin([u.lower() for u in settings.orders.fractional_units])
    )
    flags = pd.DataFrame({"order_id": lines["order_id"].to_numpy(), "line_no": lines["line_no"].to_numpy()})
    flags["unknown_item"] = ~known
    flags["inactive_item"] = known & ~lines["cat_active"].fillna(True).astype(bool)
    item_kind = _text(lines["item_kind"])
    flags["kind_mismatch"] = (
        known & item_kind.notna() & (item_kind != lines["cat_kind"].astype("str"))
    ).fillna(False)
    flags["name_mismatch"] = known & _name_mismatch(
        _text(lines["item_name"]), _text(lines["cat_name"].astype("str")), settings.review.name_similarity_min
    )
    for column, drop in (("spec", r"\s+"), ("model", r"[\s\-_/]+")):
        mine, theirs = _text(lines[column]), _text(lines[f"cat_{column}"].astype("str"))
        flags[f"{column}_mismatch"] = known & _differ(mine, theirs, drop)
    bad_quantity = quantity.isna() | (quantity <= 0) | ((quantity % 1 != 0) & known & ~fractional)
    flags["bad_quantity"] = bad_quantity.fillna(True)
    min_qty = pd.to_numeric(lines["cat_min_order_qty"], errors="coerce").astype("float64")
    max_qty = pd.to_numeric(lines["cat_max_order_qty"], errors="coerce").astype("float64")
    flags["quantity_limit"] = (known & ~bad_quantity & ((quantity < min_qty) | (quantity > max_qty))).fillna(
        False
    )
    gross = (quantity * price).round()
    line_total = pd.to_numeric(lines["line_total_fen"], errors="coerce").astype("float64")
    flags["line_total_mismatch"] = ((gross - line_discount - line_total).abs()
                                    > settings.pricing.rounding_tolerance_fen).fillna(True)  # fmt: skip

    comparable = known & (lines["list_price_fen"] > 0) & (quantity > 0)
    effective = (price - line_discount / quantity).where(comparable)
    promo = _promotion_columns(lines, effective, settings.promotions.active, tol)
    expected = lines["list_price_fen"] * (1 - promo["best_discount_pct"] / 100)
    deviation = ((effective - expected) / expected * 100).abs()
    off = (deviation > tol).fillna(False)
    flags["promo_window"] = off & promo["promo_window_match"]
    flags["promo_ineligible"] = off & promo["promo_ineligible_match"] & ~flags["promo_window"]
    explained = flags["promo_window"] | flags["promo_ineligible"]
    flags["price_off"] = off & ~explained
    price_deviation = deviation.where(comparable & ~explained)
    flags["limit_exceeded"] = _purchase_limits(
        lines.assign(quantity=quantity),
        orders.set_index("id"),
        inputs.history,
        settings.limits.purchase_limits,
    ).to_numpy()

    flag_columns = [flag for flag, _ in LINE_RULES.values()]
    per_order = flags.groupby("order_id")[flag_columns].sum()
    per_order = per_order.reindex(orders.index, fill_value=0).astype("int64")
    for flag, count_column in LINE_RULES.values():
        if count_column:
            frame[count_column] = per_order[flag]
    frame["line_count"] = flags.groupby("order_id").size().reindex(orders.index, fill_value=0).astype("int64")
    frame["max_price_deviation_pct"] = (
        price_deviation.groupby(flags["order_id"].to_numpy()).max().reindex(orders.index).astype("float64")
    )

    # V3 order totals and payment
    goods_from_lines = (
        line_total.groupby(flags["order_id"].to_numpy()).sum().reindex(orders.index, fill_value=0)
    )
    goods = orders["goods_total_fen"].astype("float64")
    recomputed_total = (
        goods - orders["discount_fen"].astype("float64") + orders["freight_fen"].astype("float64")
    )
    frame["total_diff_fen"] = np.maximum(
        (goods_from_lines - goods).abs(), (recomputed_total - total).abs()
    ).astype("int64")
    frame["currency"] = _text(orders["currency"]).fillna("未提供")
    method = _text(orders["payment_method"]).fillna("未提供")
    frame["payment_method"] = method
    frame["cod_amount_fen"] = total.astype("float64").where(method == "cod")
    installments = pd.to_numeric(orders["installments"], errors="coerce").astype("float64")
    is_plan = method == "installment"
    frame["installment_count"] = installments.where(is_plan)
    prepayment = np.maximum(customer_value("prepayment_ratio", 0.0).astype("float64").fillna(0.0),
                            measure("grade_prepayment_ratio", 0.0).astype("float64").fillna(0.0))
    frame["first_installment_ratio"] = np.maximum(1 / installments.clip(lower=1), prepayment).where(is_plan)

    # V4
    frame["customer_blocked"] = customer_value("blocked", False).astype(bool).astype("int64")
    frame["formula_text_fields"] = formula_text_fields(orders, inputs.lines)

    # K1 the grade's measures, for every order of a graded customer (empty otherwise, which GX skips)
    flag = lambda column, default: measure(column, default).astype(bool).astype("int64").where(graded)  # noqa: E731
    frame["credit_grade_review"] = flag("manual_review", False)
    frame["credit_guarantee_required"] = flag("guarantee_required", False)
    frame["credit_cod_refused"] = ((method == "cod") & ~measure("cod_allowed", True).astype(bool)).astype(
        "int64").where(graded)  # fmt: skip
    frame["credit_installments_refused"] = (is_plan & ~measure("installments_allowed", True).astype(bool)).astype(
        "int64").where(graded)  # fmt: skip
    grade_ratio = measure("grade_prepayment_ratio", 0.0).astype("float64").fillna(0.0)
    unpaid_now = orders["payment_state"].astype("str") != "paid"
    frame["credit_prepayment_due_fen"] = (total * grade_ratio).round().where(unpaid_now & ~is_plan, 0).where(
        graded).astype("float64")  # fmt: skip
    return ReviewColumns(frame, flags, credit_details)


def formula_text_fields(orders: pd.DataFrame, lines: pd.DataFrame) -> pd.Series:
    """Per order (index as ``orders``), how many of its name, address and item texts begin with '=': a formula
    cell of an incoming spreadsheet, read as its text. ('+', '-', '@' begin real addresses and names: not here.)"""

    def starts_formula(series: pd.Series) -> pd.Series:
        return series.astype("str").str.lstrip().str.startswith("=").fillna(False).astype("int64")

    count = sum(starts_formula(orders[c]) for c in ("customer_name", "ship_detail"))
    if len(lines):
        per_line = sum(starts_formula(lines[c]) for c in ("item_name", "spec", "model"))
        count = count + per_line.groupby(lines["order_id"].to_numpy()).sum().reindex(orders.index, fill_value=0)
    return pd.Series(count, index=orders.index).astype("int64")


def line_details(columns: ReviewColumns, failures: pd.DataFrame) -> pd.DataFrame:
    """For line-level findings: which lines (``order_id``, ``reason_code``, ``lines``)."""
    codes = [code for code in LINE_RULES if code in set(failures["reason_code"])]
    pieces = []
    for code in codes:
        flag = LINE_RULES[code][0]
        hit = columns.line_flags.loc[columns.line_flags[flag], ["order_id", "line_no"]]
        if hit.empty:
            continue
        grouped = hit.groupby("order_id")["line_no"].agg(lambda s: sorted(int(x) for x in s))
        pieces.append(
            pd.DataFrame({"order_id": grouped.index, "reason_code": code, "lines": grouped.to_numpy()})
        )
    if not pieces:
        return pd.DataFrame(columns=["order_id", "reason_code", "lines"])
    return pd.concat(pieces, ignore_index=True)
