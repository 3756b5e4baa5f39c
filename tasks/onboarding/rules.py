"""Existing orders from a company's old system (issue 12), as pure functions over DataFrames: the file's rows (one
per order line; order columns repeated) become order, line, shipment and import rows, or a quarantine row per
order with the reason a person can act on. An order is taken whole or quarantined whole.

Columns are recognised by Chinese or English names (``HEADERS``); cells are the text the old system exported.
What the old system knew and yidi would otherwise compute is kept, not recomputed: the order number (the one
staff and customers know, and the key payments and COD remittances are matched by), the state, the payment terms
and due date, what was paid there, the shipment with carrier and waybill, the after-sales reference.

No database and no clock here: ``tasks.onboarding.orders`` gives the lookups (customers, order numbers already
used, orders imported before) and writes the result.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from yidi.lifecycle import OrderState
from yidi.money import yuan_series_to_fen
from yidi.workdays import BUSINESS_TZ

IMPORT_CHANNEL = "import"

# canonical column -> header names (compared lower-cased without spaces, punctuation or a bracketed unit)
HEADERS: dict[str, list[str]] = {
    "order_no": ["订单号", "订单编号", "单号", "order_no", "order number", "order"],
    "order_time": ["下单时间", "下单日期", "订单日期", "订单时间", "order_time", "order_date", "date"],
    "state": ["订单状态", "状态", "state", "status", "order_status"],
    "customer_code": ["客户编码", "客户编号", "customer_code"],
    "customer_name": ["客户名称", "客户", "客户姓名", "收货人", "customer_name", "customer"],
    "phone": ["联系电话", "电话", "手机", "phone", "mobile"],
    "email": ["邮箱", "电子邮箱", "email"],
    "province": ["省", "省份", "province"],
    "city": ["市", "城市", "city"],
    "district": ["区县", "区", "县", "district"],
    "address": ["收货地址", "详细地址", "地址", "address"],
    "item_code": ["商品编码", "物料编码", "编码", "sku", "item_code"],
    "item_name": ["商品名称", "品名", "商品", "item_name", "item", "product"],
    "quantity": ["数量", "quantity", "qty"],
    "unit_price": ["单价", "unit_price", "price"],
    "line_total": ["金额", "行金额", "小计", "商品金额", "line_total", "amount"],
    "freight": ["运费", "freight", "shipping"],
    "discount": ["优惠", "订单优惠", "整单优惠", "discount"],
    "order_total": ["订单金额", "订单总额", "应收金额", "合计", "order_total", "total"],
    "payment_method": ["付款方式", "支付方式", "payment_method", "payment"],
    "payment_terms": ["付款条件", "结算方式", "账期类型", "payment_terms", "terms"],
    "net_days": ["账期天数", "账期", "net_days"],
    "installments": ["分期数", "分期期数", "installments"],
    "due_date": ["到期日", "应付日期", "付款到期日", "due_date", "due"],
    "paid": ["已付金额", "已收金额", "已付款", "paid_amount", "paid"],
    "paid_date": ["付款日期", "收款日期", "paid_date", "paid_on"],
    "carrier": ["承运商", "快递公司", "物流公司", "快递", "carrier"],
    "waybill_no": ["运单号", "快递单号", "物流单号", "waybill_no", "waybill", "tracking_no"],
    "shipped_at": ["发货时间", "发货日期", "shipped_at", "shipped_date"],
    "delivered_at": ["签收时间", "签收日期", "delivered_at", "delivered_date"],
    "cod_amount": ["代收金额", "代收货款", "cod_amount"],
    "after_sales_ref": ["售后单号", "售后编号", "售后单", "after_sales_ref", "after_sales"],
    "note": ["备注", "note", "remark"],
}
# Columns an order must agree on across its rows (the per-line ones are left out).
ORDER_FIELDS = [c for c in HEADERS if c not in ("item_code", "item_name", "quantity", "unit_price", "line_total")]

STATE_WORDS = {
    **{s.value: s.value for s in OrderState},
    "新订单": "received", "待审核": "pending_review", "已审核": "approved", "已确认": "approved",
    "备货中": "allocated", "已配货": "allocated", "缺货": "backordered", "生产中": "in_production",
    "采购中": "in_procurement", "已发货": "shipped", "运输中": "in_transit", "配送中": "in_transit",
    "已签收": "delivered", "已送达": "delivered", "异常": "exception", "已结清": "settled", "已完成": "settled",
    "售后中": "after_sales", "售后": "after_sales", "已退货": "returned", "已取消": "cancelled",
    "已关闭": "closed", "已驳回": "rejected",
}  # fmt: skip
PAYMENT_WORDS = {
    "alipay": "alipay", "支付宝": "alipay", "wechatpay": "wechatpay", "wechat": "wechatpay", "微信": "wechatpay",
    "微信支付": "wechatpay", "bank_transfer": "bank_transfer", "banktransfer": "bank_transfer",
    "银行转账": "bank_transfer", "转账": "bank_transfer", "对公转账": "bank_transfer", "月结": "bank_transfer",
    "cod": "cod", "货到付款": "cod", "代收货款": "cod", "installment": "installment", "分期": "installment",
    "分期付款": "installment",
}  # fmt: skip
TERMS_WORDS = {
    "prepaid": "prepaid", "款到发货": "prepaid", "预付": "prepaid", "先款后货": "prepaid", "现结": "prepaid",
    "cod": "cod", "货到付款": "cod", "net": "net", "月结": "net", "账期": "net", "赊销": "net",
    "installment": "installment", "分期": "installment",
}  # fmt: skip
# States in which the goods have left: a shipment may be given; before them it may not.
SHIPPED_STATES = frozenset(
    {"shipped", "in_transit", "delivered", "exception", "settled", "after_sales", "returned", "closed"}
)


class ImportFileError(ValueError):
    """A file that cannot be imported at all (unreadable, or a required column missing); nothing is imported."""


@dataclass
class ImportPlan:
    orders: pd.DataFrame  # one row per order to insert (order columns + content_hash)
    lines: pd.DataFrame  # order_no + order_lines columns
    shipments: pd.DataFrame  # order_no + shipments columns
    imports: pd.DataFrame  # order_no + order_imports columns
    rejects: pd.DataFrame  # source_key (order no or 'row N'), content, content_hash, reason, row_numbers
    unchanged: int  # orders imported before with the same rows


def header_key(text: str) -> str:
    text = re.sub(r"[（(\[【].*?[)）\]】]", "", str(text).strip().lower())  # "单价（元）" -> "单价"
    return re.sub(r"[\s*_:：\-]", "", text)


def map_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The file's columns renamed to canonical names (the first header naming a column wins; others ignored);
    a file missing a required column is refused, naming what is missing and what was found."""
    lookup = {header_key(a): canonical for canonical, aliases in HEADERS.items() for a in aliases}
    mapping: dict[str, str] = {}
    for header in frame.columns:
        canonical = lookup.get(header_key(header))
        if canonical and canonical not in mapping.values():
            mapping[header] = canonical
    found = set(mapping.values())
    missing = [name for name in ("order_no", "order_time", "state") if name not in found]
    if not {"customer_name", "customer_code"} & found:
        missing.append("customer_name or customer_code")
    if not {"order_total", "unit_price", "line_total"} & found:
        missing.append("order_total or unit_price or line_total")
    if missing:
        raise ImportFileError(
            f"missing column(s): {', '.join(missing)} (Chinese or English names, e.g. 订单号/order_no); "
            f"found: {', '.join(map(str, frame.columns)) or '(none)'}"
        )
    out = frame[list(mapping)].rename(columns=mapping)
    for column in HEADERS:
        if column not in out:
            out[column] = pd.Series(pd.NA, index=out.index, dtype="string")
    return out.astype("string")


def _words(values: pd.Series, table: dict[str, str]) -> pd.Series:
    """Each distinct cell looked up once (lower-cased, without spaces): these columns repeat a few values."""
    codes, distinct = pd.factorize(values)
    found = [table.get(re.sub(r"\s+", "", str(v).lower())) for v in distinct] + [None]
    return pd.Series(np.asarray(found, dtype=object)[codes], index=values.index, dtype="string")


def _local_times(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Naive times in the file are Asia/Shanghai: (UTC timestamps, mask of unreadable non-empty cells)."""
    parsed = pd.to_datetime(values.str.replace("/", "-", regex=False), errors="coerce", format="mixed")
    parsed = parsed.dt.tz_localize(BUSINESS_TZ) if parsed.dt.tz is None else parsed
    return parsed.dt.tz_convert("UTC"), values.notna() & parsed.isna()


def _dates(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    parsed = pd.to_datetime(values.str.replace("/", "-", regex=False), errors="coerce", format="mixed")
    return parsed.dt.date.astype(object).where(parsed.notna(), None), values.notna() & parsed.isna()


def _carrier_codes(values: pd.Series, carriers: dict[str, str]) -> pd.Series:
    """A carrier code (shunfeng) or a name that starts like a rate card's name (顺丰 → 顺丰速运); else NA."""
    by_code = {code.lower(): code for code in carriers}
    found = {}
    for value in values.dropna().unique():
        text = str(value).strip()
        code = by_code.get(text.lower()) or next(
            (c for c, name in carriers.items() if name and (name.startswith(text[:2]) or text.startswith(name))),
            None,
        )
        found[value] = code
    return values.map(found).astype("string")


def _joined(keys: pd.Series, texts: pd.Series) -> dict[str, str]:
    """Per key, its texts joined by commas in file order (one pass; a groupby-apply per order is 100x slower)."""
    parts: dict[str, list[str]] = {}
    for k, text in zip(keys.tolist(), texts.tolist(), strict=True):
        parts.setdefault(k, []).append(text)
    return {k: ",".join(v) for k, v in parts.items()}


def row_json(raw: pd.DataFrame) -> pd.Series:
    """Each row as read, JSON (header: cell); an order's rows joined are the record kept with the order or its
    quarantine."""
    if raw.empty:
        return pd.Series([], dtype=object)
    return pd.Series(raw.to_json(orient="records", lines=True, force_ascii=False).splitlines(), index=raw.index)


def plan_import(
    raw: pd.DataFrame,
    *,
    file_name: str,
    customers: dict[str, int],
    carriers: dict[str, str],
    taken_numbers: dict[str, str],
    imported_hashes: dict[str, str],
    tolerance_fen: int = 1,
) -> ImportPlan:
    """The rows of an order file as what to insert, what to quarantine (with reasons) and how many are unchanged.

    ``raw``: the file as read (every cell text, original headers). ``customers``: customer code -> id.
    ``carriers``: carrier code -> name as printed. ``taken_numbers``: order numbers already used by orders that
    were not imported -> their channel. ``imported_hashes``: order number -> content hash of orders imported
    before (the same rows again change nothing; other rows for them are refused: yidi owns the order now).
    """
    frame = map_columns(raw)
    raw = raw.reset_index(drop=True)
    frame = frame.reset_index(drop=True)
    row_no = pd.Series(np.arange(len(frame)) + 2, index=frame.index)  # spreadsheet rows: header is row 1
    problems: list[tuple[int, str]] = []  # (row position, what is wrong): few, so kept as a list

    def flag(mask: pd.Series, text: str) -> None:
        for i in np.flatnonzero(mask.fillna(False).to_numpy(dtype=bool)):
            problems.append((int(i), text))

    order_no = frame["order_no"].str.strip()
    flag(order_no.isna() | (order_no == ""), "订单号 (order_no) is empty")
    order_time, bad = _local_times(frame["order_time"])
    flag(bad | frame["order_time"].isna(), "下单时间 (order_time) is empty or not a date")
    state = _words(frame["state"], STATE_WORDS)
    flag(state.isna(), f"状态 (state) is empty or unknown; use one of {', '.join(sorted(STATE_WORDS))}")
    method = _words(frame["payment_method"], PAYMENT_WORDS)
    flag(frame["payment_method"].notna() & method.isna(), "付款方式 (payment_method) unknown: alipay, "
         "wechatpay, bank_transfer, cod or installment (支付宝/微信/银行转账/货到付款/分期)")  # fmt: skip
    terms_text = frame["payment_terms"].str.replace(r"\d+\s*天?", "", regex=True)
    terms = _words(terms_text, TERMS_WORDS)
    flag(frame["payment_terms"].notna() & terms.isna(), "付款条件 (payment_terms) unknown: prepaid, cod, net or "
         "installment (款到发货/货到付款/月结/分期)")  # fmt: skip
    days_in_terms = pd.to_numeric(frame["payment_terms"].str.extract(r"(\d+)")[0], errors="coerce")
    net_days = pd.to_numeric(frame["net_days"].str.extract(r"^\s*(\d+)\s*天?\s*$")[0], errors="coerce")
    flag(frame["net_days"].notna() & net_days.isna(), "账期天数 (net_days) is not a number of days")
    net_days = net_days.fillna(days_in_terms)
    installments = pd.to_numeric(frame["installments"], errors="coerce")
    flag(frame["installments"].notna() & (installments.isna() | (installments < 1)), "分期数 (installments) "
         "is not a positive number")  # fmt: skip
    money = {}
    for column in ("unit_price", "line_total", "freight", "discount", "order_total", "paid", "cod_amount"):
        fen, bad = yuan_series_to_fen(frame[column])
        money[column] = fen
        flag(bad | (fen < 0), f"{column} is not an amount in yuan")
    quantity = pd.to_numeric(frame["quantity"], errors="coerce")
    flag(frame["quantity"].notna() & (quantity.isna() | (quantity <= 0)), "数量 (quantity) is not a positive "
         "number")  # fmt: skip
    dates = {}
    for column in ("due_date", "paid_date"):
        dates[column], bad = _dates(frame[column])
        flag(bad, f"{column} is not a date")
    shipped_at, bad = _local_times(frame["shipped_at"])
    flag(bad, "发货时间 (shipped_at) is not a date")
    delivered_at, bad = _local_times(frame["delivered_at"])
    flag(bad, "签收时间 (delivered_at) is not a date")
    carrier = _carrier_codes(frame["carrier"], carriers)
    flag(frame["carrier"].notna() & carrier.isna(), f"承运商 (carrier) unknown; use one of {', '.join(carriers)}")
    flag(frame["waybill_no"].notna() & frame["carrier"].isna(), "运单号 (waybill_no) without 承运商 (carrier)")
    code = frame["customer_code"].str.strip()
    flag(code.notna() & ~code.isin(list(customers)), "客户编码 (customer_code) is not a known customer; load "
         "customers first (`yidi load customers FILE`)")  # fmt: skip
    flag(code.isna() & frame["customer_name"].isna(), "no 客户名称 (customer_name) or 客户编码 (customer_code)")
    has_item = frame[["item_code", "item_name", "quantity", "unit_price", "line_total"]].notna().any(axis=1)
    flag(has_item & money["unit_price"].isna() & money["line_total"].isna(), "a line without 单价 (unit_price) "
         "or 金额 (line_total)")  # fmt: skip

    line_total = money["line_total"].astype("Float64")
    computed = (quantity.fillna(1) * money["unit_price"].astype("Float64")).round()
    flag((line_total - computed).abs() > tolerance_fen, "金额 (line_total) is not 数量 × 单价")
    line_total = line_total.fillna(computed)

    # every row keyed by its order; rows without an order number are quarantined on their own
    key = order_no.where(order_no.notna() & (order_no != ""), "row " + row_no.astype("string"))
    work = pd.DataFrame({"key": key, "row_no": row_no})
    for column in ORDER_FIELDS:
        values = frame[column].fillna("")
        disagree = values.groupby(key).transform("nunique") > 1
        flag(disagree, f"the order's rows disagree on {column}")

    work = work.assign(
        state=state, method=method, terms=terms, net_days=net_days, installments=installments,
        order_time=order_time, shipped_at=shipped_at, delivered_at=delivered_at, carrier=carrier,
        line_total=line_total, quantity=quantity, has_item=has_item, **{f"{c}_fen": money[c] for c in money},
        due_date=dates["due_date"], paid_date=dates["paid_date"],
    )  # fmt: skip
    first = work.groupby("key", sort=False).first()
    first_text = frame.groupby(key, sort=False).first()
    goods = work.groupby("key", sort=False)["line_total"].sum(min_count=1)
    freight = first["freight_fen"].fillna(0).astype("int64")
    discount = first["discount_fen"].fillna(0).astype("int64")
    computed_total = goods.fillna(0).round().astype("int64") + freight - discount
    given_total = first["order_total_fen"]
    no_lines = goods.isna()
    total = given_total.where(given_total.notna(), computed_total).astype("Int64")
    reasons: dict[str, list[str]] = {}
    for i, text in problems:
        reasons.setdefault(key.iat[i], []).append(text)
    order_reasons: dict[str, list[str]] = {}

    def order_flag(mask: pd.Series, text) -> None:
        for k in mask[mask.fillna(False).astype(bool)].index:
            order_reasons.setdefault(k, []).append(text(k) if callable(text) else text)

    order_flag(~no_lines & given_total.notna() & ((given_total - computed_total).abs() > tolerance_fen),
               lambda k: f"订单金额 (order_total) {given_total[k] / 100:.2f} ≠ lines {goods[k] / 100:.2f} + freight "
                         f"{freight[k] / 100:.2f} − discount {discount[k] / 100:.2f}")  # fmt: skip
    order_flag(no_lines & given_total.isna(), "no amount: give 订单金额 (order_total) or line prices")
    shipped = first["state"].isin(SHIPPED_STATES)
    has_shipment = first["carrier"].notna() | first_text["waybill_no"].notna()
    order_flag(has_shipment & first["state"].notna() & ~shipped,
               lambda k: f"a shipment (运单号) but the state is {first['state'][k]}: the goods have not left")
    order_flag(first["delivered_at"].notna() & first["shipped_at"].notna()
               & (first["delivered_at"] < first["shipped_at"]), "签收时间 (delivered_at) before 发货时间 (shipped_at)")
    order_flag(first["paid_fen"].notna() & total.notna() & (first["paid_fen"] > total + tolerance_fen),
               "已付金额 (paid) is more than the order total")  # fmt: skip
    order_flag(first["terms"].eq("net") & first["net_days"].isna() & first["due_date"].isna()
               & first_text["customer_code"].isna(), "月结 (net) terms need 账期天数 (net_days), a 到期日 (due_date) "
               "or a customer with agreed terms")  # fmt: skip
    for k, channel in taken_numbers.items():
        if k in first.index:
            order_reasons.setdefault(k, []).append(f"order number {k} is already used by a {channel} order")

    content = {k: f"[{text}]" for k, text in _joined(key, row_json(raw)).items()}
    hashes = {k: hashlib.sha256(text.encode()).hexdigest() for k, text in content.items()}
    unchanged = [k for k, h in hashes.items() if imported_hashes.get(k) == h]
    for k, h in hashes.items():
        if k in imported_hashes and imported_hashes[k] != h:
            order_reasons.setdefault(k, []).append(
                f"order {k} was imported before with other values; yidi owns it now: change it in yidi, not in the file"
            )
    all_reasons = {k: list(dict.fromkeys(reasons.get(k, []) + order_reasons.get(k, []))) for k in first.index}
    rows_of = _joined(work["key"], work["row_no"].astype(str))
    bad_keys = [k for k, r in all_reasons.items() if r and k not in unchanged]
    good = first.index[~first.index.isin(bad_keys) & ~first.index.isin(unchanged)]

    rejects = pd.DataFrame({
        "source_key": bad_keys,
        "content": [content[k] for k in bad_keys],
        "content_hash": [hashes[k] for k in bad_keys],
        "reason": [f"{file_name} rows {rows_of[k]}: " + "; ".join(all_reasons[k]) for k in bad_keys],
        "row_numbers": [rows_of[k] for k in bad_keys],
    })  # fmt: skip
    g, t = first.loc[good], first_text.loc[good]
    paid = g["paid_fen"].fillna(0).astype("int64")
    tot = total.loc[good].astype("int64")
    method_or_terms = g["method"].fillna(g["terms"].map({"cod": "cod", "installment": "installment"}))
    orders = pd.DataFrame({
        "order_no": good, "channel": IMPORT_CHANNEL, "channel_order_id": good,
        "customer_id": t["customer_code"].map(customers).astype("Int64").to_numpy(),
        "customer_name": t["customer_name"].to_numpy(), "customer_phone": t["phone"].to_numpy(),
        "customer_email": t["email"].to_numpy(), "ship_province": t["province"].to_numpy(),
        "ship_city": t["city"].to_numpy(), "ship_district": t["district"].to_numpy(),
        "ship_detail": t["address"].to_numpy(), "payment_method": method_or_terms.to_numpy(),
        "installments": g["installments"].fillna(1).astype("int64").to_numpy(),
        "goods_total_fen": np.where(no_lines[good], tot, goods[good].fillna(0).round()).astype("int64"),
        "discount_fen": discount[good].to_numpy(), "freight_fen": freight[good].to_numpy(),
        "order_total_fen": tot.to_numpy(), "state": g["state"].to_numpy(),
        "payment_state": np.select([paid == 0, paid + tolerance_fen >= tot], ["unpaid", "paid"], "partly_paid"),
        "source_status": t["state"].str.slice(0, 40).to_numpy(), "order_time": g["order_time"].to_numpy(),
        "buyer_note": t["note"].to_numpy(), "content_hash": [hashes[k] for k in good],
    })  # fmt: skip

    in_good = work["key"].isin(good)
    item_rows = work[in_good & work["has_item"]]
    lines = pd.DataFrame({
        "order_no": item_rows["key"].to_numpy(),
        "line_no": item_rows.groupby("key").cumcount().to_numpy() + 1,
        "item_code": frame.loc[item_rows.index, "item_code"].to_numpy(),
        "item_name": frame.loc[item_rows.index, "item_name"].to_numpy(),
        "quantity": item_rows["quantity"].fillna(1).to_numpy(dtype=float),
        "unit_price_fen": item_rows["unit_price_fen"].astype("Float64")
            .fillna(item_rows["line_total"] / item_rows["quantity"].fillna(1)).round().astype("int64").to_numpy(),
        "line_total_fen": item_rows["line_total"].round().astype("int64").to_numpy(),
    })  # fmt: skip
    headerless = good[no_lines.reindex(good).to_numpy(dtype=bool)].tolist()  # no lines: one line for its amount
    if headerless:
        lines = pd.concat([lines, pd.DataFrame({
            "order_no": headerless, "line_no": 1, "item_code": None, "item_name": "导入订单（原系统未导出明细）",
            "quantity": 1.0, "unit_price_fen": total[headerless].astype("int64").to_numpy(),
            "line_total_fen": total[headerless].astype("int64").to_numpy(),
        })], ignore_index=True)  # fmt: skip

    ships = g[has_shipment[good]]
    ship_text = t.loc[ships.index]
    cod = (ships["method"] == "cod") | (ships["terms"] == "cod")
    cod_default = (tot[ships.index] - paid[ships.index]).clip(lower=0)
    shipments = pd.DataFrame({
        "order_no": ships.index, "shipment_no": "IMP-" + ships.index.to_series().astype(str).to_numpy(),
        "carrier": ships["carrier"].to_numpy(), "waybill_no": ship_text["waybill_no"].to_numpy(),
        "idempotency_key": ("import:" + ships.index.to_series().astype(str)).to_numpy(),
        "status": np.where(ships["delivered_at"].notna(), "delivered", "in_transit"),
        "cod_amount_fen": ships["cod_amount_fen"].where(ships["cod_amount_fen"].notna(),
                                                        cod_default.where(cod, 0)).astype("int64").to_numpy(),
        "shipped_at": ships["shipped_at"].to_numpy(), "delivered_at": ships["delivered_at"].to_numpy(),
    })  # fmt: skip

    imports = pd.DataFrame({
        "order_no": good, "content_hash": [hashes[k] for k in good], "content": [content[k] for k in good],
        "source_file": file_name[:300], "row_numbers": [rows_of[k][:200] for k in good],
        "state_in_file": t["state"].str.slice(0, 40).to_numpy(), "payment_terms": g["terms"].to_numpy(),
        "net_days": g["net_days"].astype("Int64").to_numpy(), "due_date": g["due_date"].to_numpy(),
        "paid_fen": paid.to_numpy(), "paid_on": g["paid_date"].to_numpy(),
        "after_sales_ref": t["after_sales_ref"].str.slice(0, 64).to_numpy(),
    })  # fmt: skip
    return ImportPlan(classify_addresses_of(orders), lines, shipments, imports, rejects, len(unchanged))


def classify_addresses_of(orders: pd.DataFrame) -> pd.DataFrame:
    """The orders with their delivery address split and classified remote / local / unknown (requirement S1) by
    the classifier intake uses (``yidi.address.classify``, one batch call over the columns): province, city,
    district, the rest as detail, admin code, region and its note. No structured fields: the address column is
    read as the whole address, as intake reads a channel that sends one line."""
    from yidi.address.classify import classify_addresses

    if orders.empty:
        return orders.assign(ship_admin_code=pd.Series(dtype="str"), region=pd.Series(dtype="str"),
                             region_note=pd.Series(dtype="str"))  # fmt: skip
    province, city, district = orders["ship_province"], orders["ship_city"], orders["ship_district"]
    no_structure = province.isna() & city.isna() & district.isna()
    inputs = pd.DataFrame({
        "province": province.to_numpy(), "city": city.to_numpy(), "district": district.to_numpy(),
        "detail": orders["ship_detail"].where(~no_structure).to_numpy(),
        "full_address": orders["ship_detail"].where(no_structure).to_numpy(),
    }, dtype="str")  # fmt: skip
    where = classify_addresses(inputs).set_axis(orders.index)
    return orders.assign(
        # what the classifier could not place is kept as written (the raw rows are kept too)
        ship_province=where["province"].fillna(province), ship_city=where["city"].fillna(city),
        ship_district=where["district"].fillna(district), ship_detail=where["detail"].fillna(orders["ship_detail"]),
        ship_admin_code=where["admin_code"],
        region=where["region"].fillna("unknown"), region_note=where["region_note"].str.slice(0, 200),
    )  # fmt: skip


def imported_events(orders: pd.DataFrame, imports: pd.DataFrame, file_name: str) -> pd.DataFrame:
    """One ``imported`` event per order: its state as the old system had it, with where it came from."""
    merged = orders[["order_id", "order_no", "state"]].merge(imports, on="order_no")
    return pd.DataFrame({
        "order_id": merged["order_id"].astype("int64").to_numpy(),
        "kind": "imported",
        "to_state": merged["state"].to_numpy(),
        "reason": [f"imported from {file_name} (rows {r}): {s} in the old system"
                   for r, s in zip(merged["row_numbers"], merged["state_in_file"], strict=True)],
        "details": [{"file": file_name, "rows": r, "state_in_file": s, "payment_terms": pt, "due_date": str(d) if d
                     else None, "paid_fen": int(p), "after_sales_ref": a if isinstance(a, str) else None}
                    for r, s, pt, d, p, a in zip(merged["row_numbers"], merged["state_in_file"],
                                                 merged["payment_terms"], merged["due_date"], merged["paid_fen"],
                                                 merged["after_sales_ref"], strict=True)],
    })  # fmt: skip

