"""Benchmark `review`: the automated first review (V1–V5) of N orders, ours vs hand-written pandas checks.

Ours is what production runs per chunk (``tasks.review.rules.evaluate``): the store-dependent columns (catalog join,
phones, promotions, purchase limits, credit), the four Great Expectations suites on them with the lean result format,
failures mapped back to order ids, decisions. The baseline computes the same columns with the same code and then
checks every rule with a hand-written pandas mask instead of Great Expectations, producing the same failures and
decisions (``tests/test_review_bench.py`` proves the two agree). So the ratio is the price of running the rules
through GX. Two cases: 1% and 10% of orders carry a fault (one of a dozen kinds); data is generated in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

NAME = "review"
DEFAULT_N = 1_000_000
TARGET = 2.0
CASES = ["1pct", "10pct"]
BASELINE = "same columns, every rule as a hand-written pandas mask (no Great Expectations)"
FAIL_RATES = {"1pct": 0.01, "10pct": 0.10}

POLICY = """
[review]
build_data_docs = false
[limits]
purchase_limits = [{ item_code = "SKU-00007", max_quantity = 1000, window_days = 30 }]
[promotions]
active = [{ code = "BENCH", item_codes = ["SKU-00011", "SKU-00012"], discount_pct = 10, starts = "2026-10-01", ends = "2026-12-31" }]
"""

SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢")
GIVEN = ["伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超"]
PLACES = [("四川省", "成都市", "武侯区"), ("广东省", "广州市", "天河区"), ("北京市", "北京市", "朝阳区"),
          ("浙江省", "杭州市", "西湖区"), ("湖北省", "武汉市", "江汉区"), ("陕西省", "西安市", "雁塔区")]  # fmt: skip
FAULTS = ["name_missing", "phone_invalid", "detail_missing", "item_unknown", "quantity_fraction", "price_low",
          "line_total", "order_total", "method_paypal", "customer_blocked", "spec_mismatch", "installments"]  # fmt: skip


@dataclass
class Ctx:
    inputs: object
    settings: object
    n: int
    failing: int


def make_inputs(n: int, fail_rate: float, seed: int = 7):
    """N orders (1–3 lines), a catalog, customers; ``fail_rate`` of the orders carry exactly one fault."""
    from tasks.review.columns import ReviewInputs

    rng = np.random.default_rng(seed)
    items = 2000
    codes = np.array([f"SKU-{i:05d}" for i in range(items)])
    prices = rng.integers(50, 5000, items) * 100
    catalog = pd.DataFrame({
        "code": codes, "kind": "product", "name": [f"工业配件{i}" for i in range(items)],
        "spec": [f"{i % 50}W" for i in range(items)], "model": [f"M-{i}" for i in range(items)], "unit": "台",
        "list_price_fen": prices, "active": True, "min_order_qty": 1.0, "max_order_qty": np.nan,
    })  # fmt: skip
    n_customers = 20_000
    customers = pd.DataFrame({
        "id": np.arange(1, n_customers + 1), "is_important": False, "credit_limit_fen": 0,
        "blocked": np.arange(1, n_customers + 1) == 1, "prepayment_ratio": 0.0,
    })  # fmt: skip
    ids = np.arange(1, n + 1)
    lines_per = rng.choice([1, 2, 3], size=n, p=[0.6, 0.3, 0.1])
    order_of_line = np.repeat(ids, lines_per)
    line_no = pd.Series(order_of_line).groupby(order_of_line).cumcount().to_numpy() + 1
    item = rng.integers(0, items, len(order_of_line))
    quantity = rng.integers(1, 5, len(order_of_line)).astype("float64")
    base_time = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
    order_time = pd.Series(pd.to_datetime(base_time) + pd.to_timedelta(rng.integers(0, 86_400 * 20, n), unit="s"))
    promo_day = (order_time.dt.tz_convert("Asia/Shanghai").dt.date >= datetime(2026, 10, 1).date())
    unit_price = prices[item].astype("float64")
    promo_item = np.isin(codes[item], ["SKU-00011", "SKU-00012"]) & promo_day.to_numpy()[order_of_line - 1]
    unit_price = np.where(promo_item, np.round(unit_price * 0.9), unit_price)
    lines = pd.DataFrame({
        "order_id": order_of_line, "line_no": line_no, "item_code": pd.array(codes[item], dtype="str"),
        "item_kind": "product", "item_name": pd.array([f"工业配件{i}" for i in item], dtype="str"),
        "spec": pd.array([f"{i % 50}W" for i in item], dtype="str"), "model": pd.array([f"M-{i}" for i in item], dtype="str"),
        "quantity": quantity, "unit_price_fen": unit_price.astype("int64"), "discount_fen": 0,
    })  # fmt: skip
    lines["line_total_fen"] = (lines["quantity"] * lines["unit_price_fen"]).round().astype("int64")
    place = rng.integers(0, len(PLACES), n)
    names = [SURNAMES[a] + GIVEN[b] for a, b in zip(rng.integers(0, len(SURNAMES), n), rng.integers(0, len(GIVEN), n),
                                                    strict=True)]  # fmt: skip
    goods = lines.groupby("order_id")["line_total_fen"].sum().reindex(ids).to_numpy()
    freight = rng.integers(0, 30, n) * 100
    orders = pd.DataFrame({
        "id": ids, "order_no": pd.array([f"YD{i:09d}" for i in ids], dtype="str"),
        "customer_id": np.where(rng.random(n) < 0.3, rng.integers(2, n_customers + 1, n), np.nan),
        "customer_name": pd.array(names, dtype="str"),
        "customer_phone": pd.array([f"1{'38'[i % 2]}{i:09d}" for i in rng.permutation(n) + 10**8], dtype="str"),
        "customer_email": None,
        "ship_province": pd.array([PLACES[p][0] for p in place], dtype="str"),
        "ship_city": pd.array([PLACES[p][1] for p in place], dtype="str"),
        "ship_district": pd.array([PLACES[p][2] for p in place], dtype="str"),
        "ship_detail": pd.array([f"建设路{i % 997 + 1}号{i % 31 + 1}栋" for i in ids], dtype="str"),
        "region": "remote", "payment_method": pd.array(rng.choice(["alipay", "wechatpay", "bank_transfer"], n),
                                                        dtype="str"),
        "installments": 1, "currency": "CNY", "goods_total_fen": goods, "discount_fen": 0, "freight_fen": freight,
        "order_total_fen": goods + freight, "payment_state": "paid", "order_time": order_time, "state": "received",
    })  # fmt: skip

    # Faults: one per failing order, spread over the kinds.
    failing = rng.choice(ids, size=int(n * fail_rate), replace=False)
    kinds = np.array(FAULTS)[rng.integers(0, len(FAULTS), len(failing))]
    at = pd.Index(ids)
    first_line = lines.drop_duplicates("order_id").set_index("order_id")

    def rows(kind):
        return at.get_indexer(failing[kinds == kind])

    def line_rows(kind):
        return first_line.loc[failing[kinds == kind], "line_index"].to_numpy()

    first_line["line_index"] = lines.drop_duplicates("order_id").index
    orders.loc[rows("name_missing"), "customer_name"] = None
    orders.loc[rows("phone_invalid"), "customer_phone"] = "12345"
    orders.loc[rows("detail_missing"), "ship_detail"] = None
    orders.loc[rows("method_paypal"), "payment_method"] = "paypal"
    orders.loc[rows("customer_blocked"), "customer_id"] = 1
    plan = rows("installments")
    orders.loc[plan, "payment_method"] = "installment"
    orders.loc[plan, "installments"] = 24
    orders.loc[rows("order_total"), "order_total_fen"] += 100
    lines.loc[line_rows("item_unknown"), "item_code"] = "SKU-NOPE"
    lines.loc[line_rows("spec_mismatch"), "spec"] = "9999W"
    fraction = line_rows("quantity_fraction")
    lines.loc[fraction, "quantity"] = 1.5
    lines.loc[line_rows("price_low"), "unit_price_fen"] = (lines.loc[line_rows("price_low"), "unit_price_fen"]
                                                           * 0.6).round().astype("int64")  # fmt: skip
    lines.loc[line_rows("line_total"), "line_total_fen"] += 100
    # Keep the other totals consistent, so each failing order has exactly the fault it was given.
    for kind in ("quantity_fraction", "price_low"):
        touched = line_rows(kind)
        lines.loc[touched, "line_total_fen"] = (lines.loc[touched, "quantity"]
                                                * lines.loc[touched, "unit_price_fen"]).round().astype("int64")
    goods = lines.groupby("order_id")["line_total_fen"].sum().reindex(ids).to_numpy()
    fixed = ~np.isin(ids, failing[np.isin(kinds, ["order_total"])])
    orders.loc[fixed, "goods_total_fen"] = goods[fixed]
    orders.loc[fixed, "order_total_fen"] = goods[fixed] + orders.loc[fixed, "freight_fen"]
    line_fault = np.isin(ids, failing[kinds == "line_total"])
    orders.loc[line_fault, "goods_total_fen"] = goods[line_fault]
    orders.loc[line_fault, "order_total_fen"] = goods[line_fault] + orders.loc[line_fault, "freight_fen"]
    history = pd.DataFrame(columns=["order_id", "customer_id", "customer_phone", "item_code", "order_time", "quantity"])
    credit = pd.DataFrame(columns=["customer_id", "open_unpaid_fen", "receivable_fen", "overdue_fen"])
    inputs = ReviewInputs(orders, lines, catalog, customers, history, credit, base_time + timedelta(days=30))
    return inputs, len(failing)


def bench_settings(workdir: Path):
    from yidi.settings import load_settings

    path = workdir / "yidi.toml"
    path.write_text(POLICY, encoding="utf-8")
    return load_settings(path)


def prepare(n: int, workdir: Path, case: str | None = None) -> Ctx:
    from expectations.engine import validator_for
    from tasks.review.rules import evaluate

    settings = bench_settings(workdir)
    inputs, failing = make_inputs(n, FAIL_RATES[case or "10pct"])
    # Per-process costs paid once before the fork, as in a long-running worker: GX imported, suites built, its
    # metric machinery warmed on a small sample.
    validator_for(settings)
    warm = make_inputs(2000, 0.1, seed=1)[0]
    evaluate(warm, settings)
    return Ctx(inputs, settings, n, failing)


def ours(ctx: Ctx):
    from tasks.review.rules import evaluate

    return evaluate(ctx.inputs, ctx.settings)


# --- the baseline: the same rules as hand-written pandas masks ------------------------------------------------------


def pandas_failures(frame: pd.DataFrame, settings) -> pd.DataFrame:
    """Every rule of the four suites as a pandas mask (map-expectation semantics: missing values are not checked,
    except by the not-null rules)."""
    from expectations.customer import NAME_SHAPE, placeholder_regex
    from expectations.reasons import severity_of

    review, payment, pricing = settings.review, settings.payment, settings.pricing

    def present(column):
        return frame[column].isna()

    def not_in(column, values):
        return frame[column].isin(values).fillna(False)

    def outside(column, low=None, high=None):
        values = frame[column]
        bad = pd.Series(False, index=frame.index)
        if low is not None:
            bad |= values < low
        if high is not None:
            bad |= values > high
        return bad & values.notna()

    name = frame["customer_name"]
    detail = frame["ship_detail"]
    rules = [
        ("V1.name.present", "CUSTOMER_NAME_MISSING", "V1", present("customer_name")),
        ("V1.name.shape", "CUSTOMER_NAME_IMPLAUSIBLE", "V1", name.notna() & ~name.str.contains(NAME_SHAPE).fillna(False)),
        ("V1.name.length", "CUSTOMER_NAME_IMPLAUSIBLE", "V1", name.notna() & ~name.str.len().between(2, 60)),
        ("V1.name.placeholder", "CUSTOMER_NAME_IMPLAUSIBLE", "V1",
         name.str.contains(placeholder_regex(review.name_placeholders)).fillna(False)),
        ("V1.phone.present", "PHONE_MISSING", "V1", present("customer_phone")),
        ("V1.phone.valid", "PHONE_INVALID", "V1", not_in("phone_kind", ["invalid"])),
        ("V1.phone.personal", "PHONE_SERVICE_NUMBER", "V1", not_in("phone_kind", ["service"])),
        ("V1.address.province", "ADDRESS_INCOMPLETE", "V1", present("ship_province")),
        ("V1.address.city", "ADDRESS_INCOMPLETE", "V1", present("ship_city")),
        ("V1.address.district", "ADDRESS_INCOMPLETE", "V1", present("ship_district")),
        ("V1.address.detail", "ADDRESS_INCOMPLETE", "V1", present("ship_detail")),
        ("V1.address.detail_length", "ADDRESS_INCOMPLETE", "V1",
         detail.notna() & (detail.str.len() < review.min_address_detail_chars)),
        ("V1.region.known", "REGION_UNKNOWN", "V1", not_in("region", ["unknown"])),
        ("V1.region.remote", "REGION_LOCAL", "V1", not_in("region", ["local"])),
        ("V1.credit.limit", "CREDIT_LIMIT_EXCEEDED", "V1", outside("credit_headroom_fen", low=0)),
        ("V1.credit.overdue", "CREDIT_OVERDUE", "V1", outside("credit_overdue_fen", high=0)),
        ("V1.credit.grade_review", "CREDIT_GRADE_REVIEW", "V1", outside("credit_grade_review", high=0)),
        ("V1.credit.guarantee", "CREDIT_GUARANTEE_REQUIRED", "V1", outside("credit_guarantee_required", high=0)),
        ("V1.credit.cod", "CREDIT_GRADE_COD_REFUSED", "V1", outside("credit_cod_refused", high=0)),
        ("V1.credit.installments", "CREDIT_GRADE_INSTALLMENTS_REFUSED", "V1",
         outside("credit_installments_refused", high=0)),
        ("V1.credit.prepayment", "CREDIT_PREPAYMENT_REQUIRED", "V1", outside("credit_prepayment_due_fen", high=0)),
        ("V2.lines.present", "ORDER_NO_LINES", "V2", outside("line_count", low=1)),
    ]  # fmt: skip
    from expectations.product import COUNT_RULES as V2_COUNTS
    from expectations.validity import COUNT_RULES as V4_COUNTS

    rules += [(rule, code, "V2", outside(column, high=0)) for rule, code, column in V2_COUNTS]
    rules += [
        ("V3.price.tolerance", "PRICE_OUT_OF_TOLERANCE", "V3",
         outside("max_price_deviation_pct", high=float(pricing.tolerance_pct))),
        ("V3.total.lines", "LINE_TOTAL_MISMATCH", "V3", outside("line_total_mismatch_lines", high=0)),
        ("V3.total.order", "ORDER_TOTAL_MISMATCH", "V3", outside("total_diff_fen", high=pricing.rounding_tolerance_fen)),
        ("V3.currency", "CURRENCY_UNSUPPORTED", "V3",
         frame["currency"].notna() & ~frame["currency"].isin([settings.general.currency])),
        ("V3.payment.allowed", "PAYMENT_METHOD_NOT_ALLOWED", "V3",
         frame["payment_method"].notna() & ~frame["payment_method"].isin(payment.allowed_methods)),
        ("V3.payment.special", "PAYMENT_SPECIAL_REVIEW", "V3", not_in("payment_method", payment.special_methods)),
        ("V3.cod.limit", "COD_OVER_LIMIT", "V3", outside("cod_amount_fen", high=float(payment.cod_limit_yuan * 100))),
        ("V3.installments.count", "INSTALLMENTS_OVER_MAX", "V3",
         outside("installment_count", low=1.0, high=float(payment.max_installments))),
        ("V3.installments.first_payment", "INSTALLMENT_FIRST_PAYMENT_LOW", "V3",
         outside("first_installment_ratio", low=float(payment.min_first_installment_ratio))),
    ]  # fmt: skip
    rules += [(rule, code, "V4", outside(column, high=0)) for rule, code, column in V4_COUNTS]
    pieces = []
    for rule, code, area, mask in rules:
        ids = frame.index.to_numpy()[mask.to_numpy(dtype=bool)]
        pieces.append(pd.DataFrame({"order_id": ids, "rule": rule, "reason_code": code,
                                    "severity": severity_of(code, review.severity), "area": area}))  # fmt: skip
    return pd.concat(pieces, ignore_index=True)


def baseline(ctx: Ctx):
    from tasks.review.columns import compute_review_columns
    from tasks.review.rules import decide

    columns = compute_review_columns(ctx.inputs, ctx.settings)
    failures = pandas_failures(columns.frame, ctx.settings)
    return failures, decide(columns.frame.index, failures)


def parity(ctx: Ctx) -> None:
    """Both sides find the same (order, rule) failures and make the same decision for every order."""
    evaluation = ours(ctx)
    failures, decisions = baseline(ctx)
    mine = set(zip(evaluation.failures["order_id"], evaluation.failures["rule"], strict=True))
    theirs = set(zip(failures["order_id"], failures["rule"], strict=True))
    assert mine == theirs, f"failures differ: {len(mine - theirs)} only ours, {len(theirs - mine)} only baseline"
    assert evaluation.failures["order_id"].nunique() == ctx.failing, "not every seeded fault was found"
    assert evaluation.decisions["outcome"].tolist() == decisions["outcome"].tolist(), "decisions differ"


def extra(ctx: Ctx) -> dict:
    """Where ours spends its time, measured once in-process: the shared column step, Great Expectations, decisions
    (so a regression shows which part moved)."""
    import time

    from expectations.engine import validator_for
    from tasks.review.columns import compute_review_columns
    from tasks.review.rules import decide

    started = time.perf_counter()
    columns = compute_review_columns(ctx.inputs, ctx.settings)
    after_columns = time.perf_counter()
    outcome = validator_for(ctx.settings).validate(columns.frame)
    after_gx = time.perf_counter()
    decide(columns.frame.index, outcome.failures)
    after_decisions = time.perf_counter()
    pandas_failures(columns.frame, ctx.settings)
    after_masks = time.perf_counter()
    return {"failing_orders": ctx.failing, "orders": ctx.n, "lines": len(ctx.inputs.lines),
            "expectations": 38, "suites": 4,
            "parts_s": {"columns": round(after_columns - started, 3),
                        "great_expectations": round(after_gx - after_columns, 3),
                        "decisions": round(after_decisions - after_gx, 3),
                        "baseline_masks": round(after_masks - after_decisions, 3)}}  # fmt: skip
