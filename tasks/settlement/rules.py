"""Settlement rules as pure functions over DataFrames: order payment state, the receivables plan (terms, due
dates, instalments), ageing, discrepancy conditions and the dunning ladder. ``tasks.settlement.steps`` feeds them from the
store and writes their results back.

Money is integer fen throughout; dates are Asia/Shanghai calendar dates (``datetime.date``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from yidi.settlement_policy import SettlementPolicy

BUSINESS_TZ = "Asia/Shanghai"
PAYMENT_STATES = ("unpaid", "partly_paid", "paid", "overpaid", "refunded")
# Orders in these states owe nothing any more (what was paid must go back).
NOTHING_DUE_STATES = frozenset({"cancelled", "returned"})
# Orders the company has accepted: from here on the customer owes the amount (K2 receivables).
RECEIVABLE_STATES = frozenset(
    {"approved", "allocated", "backordered", "in_production", "in_procurement", "shipped", "in_transit",
     "delivered", "exception", "settled", "after_sales", "closed"}
)  # fmt: skip
SHIPPED_STATES = frozenset(
    {"shipped", "in_transit", "delivered", "exception", "settled", "after_sales", "closed"}
)
# A refund is explained by one of these in the order's history (return, after-sales case, cancellation).
REFUND_REASON_STATES = frozenset({"returned", "after_sales", "cancelled"})
CASE_COLUMNS = [
    "case_key", "case_class", "order_id", "payment_line_id", "shipment_id", "customer_id", "amount_fen",
    "summary", "details",
]  # fmt: skip


def local_date(values) -> pd.Series:
    """Aware timestamps (any zone) as Asia/Shanghai calendar dates (``datetime.date``, None when missing)."""
    stamps = pd.to_datetime(pd.Series(values), utc=True)
    return stamps.dt.tz_convert(BUSINESS_TZ).dt.date.astype(object).where(stamps.notna(), None)


def yuan(fen) -> str:
    fen = int(fen)
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


# ----------------------------------------------------------------------------------------- payment state


def payment_states(frame: pd.DataFrame, policy: SettlementPolicy) -> pd.DataFrame:
    """Adds ``due_fen``, ``net_fen`` and ``new_payment_state`` to ``frame`` (order_id, order_total_fen, state,
    paid_fen, refunded_fen).

    What is due: nothing for cancelled/returned orders; otherwise the total less refunds made (an after-sales
    refund lowers what the customer owes; an unexplained one is a case of its own). States: refunded (money went
    back and nothing net remains), unpaid, partly paid, paid (within tolerance), overpaid.
    """
    total = frame["order_total_fen"].to_numpy(dtype="int64")
    paid = frame["paid_fen"].fillna(0).to_numpy(dtype="int64")
    refunded = frame["refunded_fen"].fillna(0).to_numpy(dtype="int64")
    nothing_due = frame["state"].isin(NOTHING_DUE_STATES).to_numpy()
    due = np.where(nothing_due, 0, np.maximum(total - refunded, 0))
    net = paid - refunded
    tol = policy.tolerance_fen(total)
    state = np.select(
        [
            (refunded > 0) & (net <= tol),
            paid == 0,
            net < due - tol,
            net > due + tol,
        ],
        ["refunded", "unpaid", "partly_paid", "overpaid"],
        default="paid",
    )
    return frame.assign(due_fen=due, net_fen=net, tolerance_fen=tol, new_payment_state=state)


# ----------------------------------------------------------------------------------------- receivables


def order_terms(orders: pd.DataFrame) -> pd.Series:
    """prepaid | cod | net | installment from the order's payment method and the customer's agreed terms."""
    method = orders["payment_method"].fillna("").astype(str)
    customer_terms = orders["customer_terms"].fillna("prepaid").astype(str)
    installments = orders["installments"].fillna(1).astype(int)
    return pd.Series(
        np.select(
            [
                (method == "installment") | (installments > 1),
                method == "cod",
                (customer_terms == "net") & method.isin(["bank_transfer", ""]),
            ],
            ["installment", "cod", "net"],
            default="prepaid",
        ),
        index=orders.index,
    )


def plan_receivables(
    orders: pd.DataFrame, policy: SettlementPolicy, *, cod_due_dates: dict | None = None
) -> pd.DataFrame:
    """One row per (order, instalment): terms, due date, amount, paid (FIFO), outstanding, status.

    ``orders``: id, customer_id, state, order_total_fen, payment_method, installments, customer_terms,
    customer_net_days, order_date, shipped_date, delivered_date, due_fen, net_fen (from ``payment_states``).
    ``cod_due_dates``: order id -> due date for delivered COD orders (delivery + N working days, computed by the
    caller with the official calendar).
    Due dates: prepaid = order date + ``prepaid_due_days``; COD = delivery + remittance working days (none before
    delivery); net N = shipment date + N days (none before shipment); instalments = order date + k × interval.
    """
    if orders.empty:
        return pd.DataFrame(
            columns=["order_id", "installment_no", "customer_id", "payment_terms", "due_date", "amount_fen",
                     "paid_fen", "outstanding_fen", "status"]
        )  # fmt: skip
    frame = orders.reset_index(drop=True).copy()
    frame["terms"] = order_terms(frame)
    n = np.where(frame["terms"] == "installment", frame["installments"].fillna(1).clip(lower=1), 1).astype(
        int
    )
    n = np.where((frame["terms"] == "installment") & (n < 2), 1, n)
    rows = frame.loc[frame.index.repeat(n)].reset_index(drop=True)
    rows["installment_no"] = rows.groupby("id").cumcount() + 1
    rows["n"] = np.repeat(n, n)
    due = rows["due_fen"].to_numpy(dtype="int64")
    base = due // rows["n"].to_numpy()
    remainder = due - base * rows["n"].to_numpy()
    rows["amount_fen"] = np.where(rows["installment_no"] == 1, base + remainder, base)

    order_date = pd.to_datetime(rows["order_date"])
    prepaid_due = order_date + pd.Timedelta(days=policy.prepaid_due_days)
    installment_due = order_date + pd.to_timedelta(
        policy.prepaid_due_days + (rows["installment_no"] - 1) * policy.installment_interval_days, unit="D"
    )
    net_days = rows["customer_net_days"].fillna(0).astype(int)
    # net terms run from shipment; an order known to have left without a shipment record counts from its date
    net_base = pd.to_datetime(rows["shipped_date"]).fillna(pd.to_datetime(rows["delivered_date"]))
    net_base = net_base.where(net_base.notna() | ~rows["state"].isin(SHIPPED_STATES), order_date)
    net_due = net_base + pd.to_timedelta(net_days, unit="D")
    cod_due = pd.to_datetime(rows["id"].map(cod_due_dates or {}))
    terms = rows["terms"]
    due_date = prepaid_due.where(terms == "prepaid")
    due_date = due_date.where(terms != "installment", installment_due)
    due_date = due_date.where(terms != "net", net_due)
    due_date = due_date.where(terms != "cod", cod_due)
    rows["due_date"] = due_date.dt.date.astype(object).where(due_date.notna(), None)

    # payments allocated to instalments in due order (FIFO)
    net = np.maximum(rows["net_fen"].fillna(0).to_numpy(dtype="int64"), 0)
    before = rows.groupby("id")["amount_fen"].cumsum().to_numpy() - rows["amount_fen"].to_numpy()
    paid = np.clip(net - before, 0, rows["amount_fen"].to_numpy())
    rows["paid_fen"] = paid
    rows["outstanding_fen"] = rows["amount_fen"] - rows["paid_fen"]
    nothing_due = rows["state"].isin(NOTHING_DUE_STATES) | (rows["due_fen"] <= 0)
    rows["status"] = np.where(nothing_due, "void", np.where(rows["outstanding_fen"] <= 0, "paid", "open"))
    rows.loc[nothing_due, "outstanding_fen"] = 0
    return pd.DataFrame(
        {
            "order_id": rows["id"].astype("int64"),
            "installment_no": rows["installment_no"].astype("int64"),
            "customer_id": rows["customer_id"],
            "payment_terms": rows["terms"].astype(str),
            "due_date": rows["due_date"],
            "amount_fen": rows["amount_fen"].astype("int64"),
            "paid_fen": rows["paid_fen"].astype("int64"),
            "outstanding_fen": rows["outstanding_fen"].astype("int64"),
            "status": rows["status"],
        }
    )


def bucket_labels(policy: SettlementPolicy) -> list[str]:
    bounds = policy.ageing_bucket_days
    labels = ["current", f"1-{bounds[0]}"]
    labels += [f"{a + 1}-{b}" for a, b in zip(bounds, bounds[1:], strict=False)]
    return [*labels, f"over {bounds[-1]}"]


def ageing(receivables: pd.DataFrame, policy: SettlementPolicy, today: date) -> pd.DataFrame:
    """Open receivables with ``days_overdue`` and their ``bucket`` (current, 1–30, 31–60, 61–90, over 90)."""
    open_rows = receivables[(receivables["status"] == "open") & (receivables["outstanding_fen"] > 0)].copy()
    due = pd.to_datetime(open_rows["due_date"])
    days = (pd.Timestamp(today) - due).dt.days
    open_rows["days_overdue"] = days.fillna(0).clip(lower=0).astype(int)
    bins = [-np.inf, 0, *policy.ageing_bucket_days, np.inf]
    open_rows["bucket"] = pd.cut(open_rows["days_overdue"], bins=bins, labels=bucket_labels(policy)).astype(
        str
    )
    return open_rows


def ageing_table(aged: pd.DataFrame, policy: SettlementPolicy) -> pd.DataFrame:
    """Receivables per bucket: count and outstanding (every bucket listed, even when empty)."""
    labels = bucket_labels(policy)
    grouped = aged.groupby("bucket", observed=False).agg(
        receivables=("outstanding_fen", "size"), outstanding_fen=("outstanding_fen", "sum")
    )
    grouped = grouped.reindex(labels, fill_value=0).reset_index()
    grouped["outstanding_yuan"] = grouped["outstanding_fen"].map(yuan)
    return grouped


# ----------------------------------------------------------------------------------------- discrepancies


def _case_frame(rows: dict, n: int) -> pd.DataFrame:
    frame = pd.DataFrame({c: rows.get(c, [None] * n) for c in CASE_COLUMNS})
    for column in ("order_id", "payment_line_id", "shipment_id", "customer_id"):
        frame[column] = pd.array(frame[column], dtype="Int64")
    frame["amount_fen"] = frame["amount_fen"].astype("int64")
    return frame


def order_cases(
    summary: pd.DataFrame, duplicates: pd.DataFrame, policy: SettlementPolicy, today: date
) -> pd.DataFrame:
    """Order-level conditions: unpaid past terms, short-paid, overpaid, duplicate payment, refund without return.

    ``summary``: order_id, order_no, customer_id, state, installments, order_total_fen, paid_fen, refunded_fen,
    due_fen, net_fen, tolerance_fen, due_so_far_fen (instalments due by today; the whole amount for orders
    paid outside a receivable), first_due_date, has_return (bool).
    ``duplicates``: order_id, duplicate_lines, duplicate_fen (positive lines each ≈ the order total).
    """
    parts = []
    s = summary.copy()
    paid, refunded, net = s["paid_fen"], s["refunded_fen"], s["net_fen"]
    tol, due, due_now = s["tolerance_fen"], s["due_fen"], s["due_so_far_fen"].fillna(0)
    first_due = pd.to_datetime(s["first_due_date"])
    late = first_due + pd.Timedelta(days=policy.unpaid_grace_days) < pd.Timestamp(today)

    unpaid = s[(paid == 0) & (refunded == 0) & (due_now > 0) & late.fillna(False)]
    parts.append(
        _case_frame(
            {
                "case_key": ("unpaid_past_terms:order:" + unpaid["order_id"].astype(str)).tolist(),
                "case_class": ["unpaid_past_terms"] * len(unpaid),
                "order_id": unpaid["order_id"].tolist(),
                "customer_id": unpaid["customer_id"].tolist(),
                "amount_fen": unpaid["due_so_far_fen"].astype("int64").tolist(),
                "summary": [
                    f"订单 {o} 应付 {yuan(a)} 元，{d} 到期，未收到任何付款"
                    for o, a, d in zip(
                        unpaid["order_no"], unpaid["due_so_far_fen"], unpaid["first_due_date"], strict=True
                    )
                ],
                "details": [json.dumps({"due_date": str(d)}) for d in unpaid["first_due_date"]],
            },
            len(unpaid),
        )
    )

    dup_ids = set(duplicates["order_id"]) if len(duplicates) else set()
    has_refund_case = (refunded > 0) & ~s["has_return"].astype(bool)
    short = s[((paid > 0) | (refunded > 0)) & (net < due_now.clip(upper=due) - tol)]
    short_amount = (short["due_so_far_fen"].clip(upper=short["due_fen"]) - short["net_fen"]).astype("int64")
    over_refund = short["refunded_fen"] > short["paid_fen"]
    parts.append(
        _case_frame(
            {
                "case_key": ("short_paid:order:" + short["order_id"].astype(str)).tolist(),
                "case_class": ["short_paid"] * len(short),
                "order_id": short["order_id"].tolist(),
                "customer_id": short["customer_id"].tolist(),
                "amount_fen": short_amount.tolist(),
                "summary": [
                    (
                        f"订单 {o} 退款 {yuan(r)} 元超过已收 {yuan(p)} 元，差 {yuan(a)} 元"
                        if ov
                        else f"订单 {o} 应收 {yuan(d)} 元，实收 {yuan(n)} 元，少付 {yuan(a)} 元"
                    )
                    for o, r, p, a, ov, d, n in zip(
                        short["order_no"],
                        short["refunded_fen"],
                        short["paid_fen"],
                        short_amount,
                        over_refund,
                        short["due_so_far_fen"].clip(upper=short["due_fen"]),
                        short["net_fen"],
                        strict=True,
                    )
                ],  # fmt: skip
                "details": [
                    json.dumps(
                        {"paid_fen": int(p), "refunded_fen": int(r), "refund_exceeds_payments": bool(ov)}
                    )
                    for p, r, ov in zip(short["paid_fen"], short["refunded_fen"], over_refund, strict=True)
                ],
            },
            len(short),
        )
    )

    over = s[(net > due + tol) & ~s["order_id"].isin(dup_ids)]
    parts.append(
        _case_frame(
            {
                "case_key": ("overpaid:order:" + over["order_id"].astype(str)).tolist(),
                "case_class": ["overpaid"] * len(over),
                "order_id": over["order_id"].tolist(),
                "customer_id": over["customer_id"].tolist(),
                "amount_fen": (over["net_fen"] - over["due_fen"]).astype("int64").tolist(),
                "summary": [
                    f"订单 {o} 应收 {yuan(d)} 元，实收 {yuan(n)} 元，多付 {yuan(n - d)} 元（应退还客户）"
                    if st not in NOTHING_DUE_STATES
                    else f"订单 {o} 已{'取消' if st == 'cancelled' else '退货'}，仍留有客户付款 {yuan(n)} 元（应退还）"
                    for o, d, n, st in zip(
                        over["order_no"], over["due_fen"], over["net_fen"], over["state"], strict=True
                    )
                ],
                "details": [json.dumps({"state": st}) for st in over["state"]],
            },
            len(over),
        )
    )

    if len(duplicates):
        dup = duplicates.merge(
            s[["order_id", "order_no", "customer_id", "due_fen", "net_fen"]], on="order_id"
        )
        dup = dup[dup["net_fen"] > dup["due_fen"]]
        parts.append(
            _case_frame(
                {
                    "case_key": ("duplicate_payment:order:" + dup["order_id"].astype(str)).tolist(),
                    "case_class": ["duplicate_payment"] * len(dup),
                    "order_id": dup["order_id"].tolist(),
                    "customer_id": dup["customer_id"].tolist(),
                    "amount_fen": (dup["net_fen"] - dup["due_fen"]).astype("int64").tolist(),
                    "summary": [
                        f"订单 {o} 被重复支付 {k} 次（每次约 {yuan(a)} 元），多收 {yuan(n - d)} 元"
                        for o, k, a, n, d in zip(
                            dup["order_no"],
                            dup["duplicate_lines"],
                            dup["duplicate_fen"],
                            dup["net_fen"],
                            dup["due_fen"],
                            strict=True,
                        )
                    ],  # fmt: skip
                    "details": [json.dumps({"payment_lines": ids}) for ids in dup["line_ids"]],
                },
                len(dup),
            )
        )

    refund = s[has_refund_case]
    parts.append(
        _case_frame(
            {
                "case_key": ("refund_without_return:order:" + refund["order_id"].astype(str)).tolist(),
                "case_class": ["refund_without_return"] * len(refund),
                "order_id": refund["order_id"].tolist(),
                "customer_id": refund["customer_id"].tolist(),
                "amount_fen": refund["refunded_fen"].astype("int64").tolist(),
                "summary": [
                    f"订单 {o} 退款 {yuan(r)} 元，但无退货、售后或取消记录（状态 {st}）"
                    for o, r, st in zip(
                        refund["order_no"], refund["refunded_fen"], refund["state"], strict=True
                    )
                ],
                "details": [json.dumps({"state": st}) for st in refund["state"]],
            },
            len(refund),
        )
    )
    return (
        pd.concat([p for p in parts if len(p)], ignore_index=True)
        if any(len(p) for p in parts)
        else _case_frame({}, 0)
    )


def duplicate_payments(matched: pd.DataFrame, totals: pd.DataFrame, policy: SettlementPolicy) -> pd.DataFrame:
    """Orders paid in full more than once: ≥ 2 positive lines each within tolerance of the order total
    (instalment orders excepted: equal instalments are not duplicates).

    ``matched``: order_id, payment_line_id, amount_fen (positive allocations). ``totals``: order_id,
    order_total_fen, installments.
    """
    frame = matched.merge(totals, on="order_id")
    frame = frame[(frame["installments"].fillna(1) <= 1) & (frame["amount_fen"] > 0)]
    near = (frame["amount_fen"] - frame["order_total_fen"]).abs() <= policy.tolerance_fen(
        frame["order_total_fen"].to_numpy()
    )
    frame = frame[near.to_numpy()]
    grouped = frame.groupby("order_id").agg(
        duplicate_lines=("payment_line_id", "nunique"),
        duplicate_fen=("amount_fen", "max"),
        line_ids=("payment_line_id", lambda s: sorted(int(x) for x in s)),
    )
    return grouped[grouped["duplicate_lines"] >= 2].reset_index()


def line_cases(unmatched: pd.DataFrame, now: datetime, policy: SettlementPolicy) -> pd.DataFrame:
    """Payments (and refunds) no order could be found for, once the grace period is over."""
    cutoff = pd.Timestamp(now) - pd.Timedelta(hours=policy.unmatched_grace_hours)
    late = unmatched[pd.to_datetime(unmatched["txn_time"], utc=True) <= cutoff]
    return _case_frame(
        {
            "case_key": ("payment_without_order:line:" + late["id"].astype(str)).tolist(),
            "case_class": ["payment_without_order"] * len(late),
            "payment_line_id": late["id"].tolist(),
            "amount_fen": late["amount_fen"].astype("int64").tolist(),
            "summary": [
                f"{src} {'退款' if a < 0 else '收款'} {yuan(abs(a))} 元（{p or '付款人不详'}，{m or '无附言'}）找不到对应订单"
                for src, a, p, m in zip(
                    late["source"], late["amount_fen"], late["payer_name"], late["memo"], strict=True
                )
            ],
            "details": [
                json.dumps(
                    {"source": s, "line_key": k, "merchant_order_no": o}, ensure_ascii=False, default=str
                )
                for s, k, o in zip(late["source"], late["line_key"], late["merchant_order_no"], strict=True)
            ],
        },
        len(late),
    )


def contract_fees(
    lines: pd.DataFrame, policy: SettlementPolicy, cod_contracts: dict[str, tuple[float, int]]
) -> pd.Series:
    """Expected fee per line under the contracts (NA where no contract applies)."""
    expected = pd.Series(pd.NA, index=lines.index, dtype="Int64")
    amount = lines["amount_fen"].to_numpy(dtype="int64")
    for source in lines["source"].unique():
        contract = policy.fees.get(source)
        if contract is not None:
            rate, minimum = contract.rate, int(contract.min_yuan * 100)
        elif source.startswith("cod:") and source[4:] in cod_contracts:
            rate, minimum = cod_contracts[source[4:]]
        else:
            continue
        mask = (lines["source"] == source).to_numpy()
        fee = np.maximum(np.floor(np.abs(amount[mask]) * rate + 0.5).astype("int64"), minimum)
        expected[mask] = np.where(amount[mask] < 0, -fee, fee)
    return expected


def fee_cases(
    lines: pd.DataFrame, policy: SettlementPolicy, cod_contracts: dict[str, tuple[float, int]]
) -> pd.DataFrame:
    """Lines whose provider fee differs from the contract fee by more than ``fee_tolerance_fen``."""
    expected = contract_fees(lines, policy, cod_contracts)
    has = expected.notna().to_numpy()
    diff = lines["fee_fen"].to_numpy(dtype="int64") - expected.fillna(0).to_numpy(dtype="int64")
    bad = lines[has & (np.abs(diff) > policy.fee_tolerance_fen)]
    exp = expected[has & (np.abs(diff) > policy.fee_tolerance_fen)]
    return _case_frame(
        {
            "case_key": ("fee_mismatch:line:" + bad["id"].astype(str)).tolist(),
            "case_class": ["fee_mismatch"] * len(bad),
            "payment_line_id": bad["id"].tolist(),
            "amount_fen": (bad["fee_fen"].to_numpy() - exp.to_numpy(dtype="int64")).astype("int64").tolist(),
            "summary": [
                f"{s} 交易 {t} 金额 {yuan(a)} 元，手续费 {yuan(f)} 元，按合同应为 {yuan(e)} 元"
                for s, t, a, f, e in zip(
                    bad["source"], bad["provider_txn_id"], bad["amount_fen"], bad["fee_fen"], exp, strict=True
                )
            ],
            "details": [
                json.dumps({"charged_fen": int(f), "contract_fen": int(e)})
                for f, e in zip(bad["fee_fen"], exp, strict=True)
            ],
        },
        len(bad),
    )


def cod_cases(unremitted: pd.DataFrame) -> pd.DataFrame:
    """Delivered COD shipments whose money the carrier has not remitted by the due date.

    ``unremitted``: shipment_id, order_id, order_no, customer_id, carrier, waybill_no, cod_amount_fen,
    delivered_date, remit_due_date (already filtered to those past due with no remittance line)."""
    u = unremitted
    return _case_frame(
        {
            "case_key": ("cod_not_remitted:shipment:" + u["shipment_id"].astype(str)).tolist(),
            "case_class": ["cod_not_remitted"] * len(u),
            "order_id": u["order_id"].tolist(),
            "shipment_id": u["shipment_id"].tolist(),
            "customer_id": u["customer_id"].tolist(),
            "amount_fen": u["cod_amount_fen"].astype("int64").tolist(),
            "summary": [
                f"{c} 运单 {w}（订单 {o}）{d} 签收，代收货款 {yuan(a)} 元应于 {r} 前回款，未收到"
                for c, w, o, d, a, r in zip(
                    u["carrier"],
                    u["waybill_no"],
                    u["order_no"],
                    u["delivered_date"],
                    u["cod_amount_fen"],
                    u["remit_due_date"],
                    strict=True,
                )
            ],  # fmt: skip
            "details": [
                json.dumps({"carrier": c, "waybill_no": w})
                for c, w in zip(u["carrier"], u["waybill_no"], strict=True)
            ],
        },
        len(u),
    )


# ----------------------------------------------------------------------------------------- dunning


def plan_dunning(
    overdue: pd.DataFrame, policy: SettlementPolicy, today: date, taken: Iterable[str]
) -> pd.DataFrame:
    """The step each overdue party is due for, unless already taken for this overdue episode.

    ``overdue``: open receivable rows past due with party_key, customer_id, order_id, order_no, customer_name,
    email, phone, outstanding_fen, due_date. One action per party: the highest step its oldest overdue amount
    has reached (a party first seen at 70 days gets the 60-day step, not four notices at once). The episode is
    the oldest due date: once paid, a later overdue amount starts the ladder again.
    """
    steps = policy.dunning_steps
    if overdue.empty or not steps:
        return pd.DataFrame()
    frame = overdue.sort_values(["party_key", "due_date", "order_id"], kind="stable")
    grouped = frame.groupby("party_key", sort=True).agg(
        customer_id=("customer_id", "first"),
        order_id=("order_id", "first"),
        order_no=("order_no", "first"),
        customer_name=("customer_name", "first"),
        email=("email", "first"),
        phone=("phone", "first"),
        overdue_fen=("outstanding_fen", "sum"),
        oldest_due_date=("due_date", "min"),
        order_nos=("order_no", lambda s: "、".join(dict.fromkeys(s.astype(str)))),
    )
    grouped["days_overdue"] = (pd.Timestamp(today) - pd.to_datetime(grouped["oldest_due_date"])).dt.days
    thresholds = np.array([s.days_overdue for s in steps])
    index = np.searchsorted(thresholds, grouped["days_overdue"].to_numpy(), side="right") - 1
    grouped = grouped[index >= 0].copy()
    grouped["step_no"] = index[index >= 0] + 1
    grouped["step_name"] = [steps[i - 1].name for i in grouped["step_no"]]
    grouped = grouped.reset_index()
    grouped["dedupe_key"] = (
        "dunning:"
        + grouped["party_key"]
        + ":"
        + grouped["oldest_due_date"].astype(str)
        + ":"
        + grouped["step_no"].astype(str)
    )
    return grouped[~grouped["dedupe_key"].isin(set(taken))].reset_index(drop=True)


def dunning_notices(
    actions: pd.DataFrame, policy: SettlementPolicy, company_name: str, today: date
) -> pd.DataFrame:
    """Outbox rows (customer notices and internal escalations) for the planned dunning actions."""
    rows = []
    for action in actions.itertuples(index=False):
        step = policy.dunning_steps[int(action.step_no) - 1]
        context = {
            "customer_name": action.customer_name or "客户",
            "order_no": action.order_no,
            "order_nos": action.order_nos,
            "overdue_total": yuan(action.overdue_fen),
            "oldest_due_date": str(action.oldest_due_date),
            "days_overdue": int(action.days_overdue),
            "as_of": today.isoformat(),
            "finance_contact": policy.finance_contact,
            "company_name": company_name,
            "step_name": step.name,
            "party_key": action.party_key,
        }
        recipients = {"email": action.email, "sms": action.phone}
        if step.customer_template:
            for medium in step.customer_media:
                rows.append(
                    {"order_id": int(action.order_id), "medium": medium, "recipient": recipients.get(medium),
                     "template": step.customer_template, "context": context,
                     "dedupe_key": f"{action.dedupe_key}:{medium}"}
                )  # fmt: skip
        if step.escalate_to:
            rows.append(
                {"order_id": int(action.order_id), "medium": "email", "recipient": step.escalate_to,
                 "template": step.escalation_template, "context": context,
                 "dedupe_key": f"{action.dedupe_key}:escalation"}
            )  # fmt: skip
    return pd.DataFrame(
        rows, columns=["order_id", "medium", "recipient", "template", "context", "dedupe_key"]
    )


def period_bounds(period: str | None, today: date) -> tuple[date, date, str]:
    """``period`` as [start, end) local dates and a label: 'YYYY-MM-DD', 'YYYY-MM', 'YYYY-Www', 'A..B';
    None = yesterday (the bills published this morning)."""
    if not period:
        day = today - timedelta(days=1)
        return day, today, day.isoformat()
    text = period.strip()
    try:
        if ".." in text:
            a, b = (date.fromisoformat(x.strip()) for x in text.split("..", 1))
            return a, b + timedelta(days=1), text
        if "-W" in text.upper():
            year, week = text.upper().split("-W")
            start = date.fromisocalendar(int(year), int(week), 1)
            return start, start + timedelta(days=7), text.upper()
        if len(text) == 7:
            start = date.fromisoformat(text + "-01")
            end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
            return start, end, text
        day = date.fromisoformat(text)
        return day, day + timedelta(days=1), text
    except ValueError:
        raise ValueError(
            f"period {period!r}: use YYYY-MM-DD, YYYY-MM, YYYY-Www or YYYY-MM-DD..YYYY-MM-DD"
        ) from None
