"""Discrepancy conditions (A1, A2) as pure functions over DataFrames: each returns the cases that hold now, one
row per subject with a stable ``case_key`` (``<class>:<subject kind>:<id>``), so ``tasks.settlement.cases`` can
open, update, clear and reopen them idempotently. Classes: unpaid past terms, short-paid, overpaid, duplicate
payment, refund without return, payment without order, fee off contract, COD not remitted.

Money is integer fen; summaries are the Chinese text finance reads, amounts as ``1,234.50``.
"""

from __future__ import annotations

import json
from datetime import date, datetime

import numpy as np
import pandas as pd

from tasks.settlement.rules import NOTHING_DUE_STATES
from yidi.money import decimal_to_fen, yuan_text
from yidi.settlement_policy import SettlementPolicy

CASE_COLUMNS = [
    "case_key", "case_class", "order_id", "payment_line_id", "shipment_id", "customer_id", "amount_fen",
    "summary", "details",
]  # fmt: skip


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
    paid outside a receivable), first_due_date, has_return (bool), optionally awaiting_bills (bool: a prepaid
    online order whose provider bills for its payment window are not all in yet is not unpaid, see
    ``awaiting_bills``).
    ``duplicates``: order_id, duplicate_lines, duplicate_fen (positive lines each ≈ the order total).
    """
    parts = []
    s = summary.copy()
    paid, refunded, net = s["paid_fen"], s["refunded_fen"], s["net_fen"]
    tol, due, due_now = s["tolerance_fen"], s["due_fen"], s["due_so_far_fen"].fillna(0)
    first_due = pd.to_datetime(s["first_due_date"])
    late = first_due + pd.Timedelta(days=policy.unpaid_grace_days) < pd.Timestamp(today)

    waiting = s["awaiting_bills"].fillna(False).astype(bool) if "awaiting_bills" in s else False
    unpaid = s[(paid == 0) & (refunded == 0) & (due_now > 0) & late.fillna(False) & ~waiting]
    parts.append(
        _case_frame(
            {
                "case_key": ("unpaid_past_terms:order:" + unpaid["order_id"].astype(str)).tolist(),
                "case_class": ["unpaid_past_terms"] * len(unpaid),
                "order_id": unpaid["order_id"].tolist(),
                "customer_id": unpaid["customer_id"].tolist(),
                "amount_fen": unpaid["due_so_far_fen"].astype("int64").tolist(),
                "summary": [
                    f"订单 {o} 应付 {yuan_text(a, grouping=True)} 元，{d} 到期，未收到任何付款"
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
                        f"订单 {o} 退款 {yuan_text(r, grouping=True)} 元超过已收 {yuan_text(p, grouping=True)} 元，差 {yuan_text(a, grouping=True)} 元"
                        if ov
                        else f"订单 {o} 应收 {yuan_text(d, grouping=True)} 元，实收 {yuan_text(n, grouping=True)} 元，少付 {yuan_text(a, grouping=True)} 元"
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
                    f"订单 {o} 应收 {yuan_text(d, grouping=True)} 元，实收 {yuan_text(n, grouping=True)} 元，多付 {yuan_text(n - d, grouping=True)} 元（应退还客户）"
                    if st not in NOTHING_DUE_STATES
                    else f"订单 {o} 已{'取消' if st == 'cancelled' else '退货'}，仍留有客户付款 {yuan_text(n, grouping=True)} 元（应退还）"
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
                        f"订单 {o} 被重复支付 {k} 次（每次约 {yuan_text(a, grouping=True)} 元），多收 {yuan_text(n - d, grouping=True)} 元"
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
                    f"订单 {o} 退款 {yuan_text(r, grouping=True)} 元，但无退货、售后或取消记录（状态 {st}）"
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


# Payment methods whose payments arrive in a provider's bill (its source in the settlement inbox).
BILLED_METHODS = {"alipay": "alipay", "wechatpay": "wechatpay"}


def awaiting_bills(orders: pd.DataFrame, bill_days: pd.DataFrame, policy: SettlementPolicy) -> pd.Series:
    """Per order: True while a prepaid online order's provider bills do not yet cover every day it could have been
    paid on (order date to due date + grace), so "unpaid past terms" waits for the bills instead of opening a
    case the next bill closes again.

    ``orders``: payment_method, payment_terms, order_date, first_due_date. ``bill_days``: source, account,
    bill_day received. A day is covered when every account of the provider has sent its bill for it: the
    accounts in ``[settlement.accounts]``, else every account a bill was ever received from. A provider none of
    whose bills was ever received is not waited for (the company does not reconcile it in yidi: its orders would
    otherwise never be found unpaid). Other orders (bank transfer, net terms, COD, instalments) never wait: their
    payments have no daily bill.
    """
    result = pd.Series(False, index=orders.index)
    source = orders["payment_method"].map(BILLED_METHODS)
    source = source.where(source.isin(set(bill_days["source"])))
    candidates = orders[source.notna() & (orders["payment_terms"] == "prepaid") & orders["first_due_date"].notna()
                        & orders["order_date"].notna()]  # fmt: skip
    if candidates.empty:
        return result
    days = bill_days.assign(bill_day=pd.to_datetime(bill_days["bill_day"]).dt.date)
    covered: dict[str, set] = {}
    for name in set(source[candidates.index]):
        mine = days[days["source"] == name]
        accounts = policy.accounts.for_source(name) or sorted(set(mine["account"]))
        per_account = [set(mine.loc[mine["account"] == a, "bill_day"]) for a in accounts]
        covered[name] = set.intersection(*per_account) if per_account else set()
    start = pd.to_datetime(candidates["order_date"])
    end = np.maximum(pd.to_datetime(candidates["first_due_date"]) + pd.Timedelta(days=policy.unpaid_grace_days),
                     start)  # fmt: skip
    n = ((end - start).dt.days + 1).to_numpy()
    window = pd.DataFrame({"order": candidates.index.repeat(n), "source": source[candidates.index].repeat(n).to_numpy(),
                           "day": start.repeat(n).to_numpy()})  # fmt: skip
    window["day"] = (window["day"] + pd.to_timedelta(window.groupby("order").cumcount(), unit="D")).dt.date
    have = pd.DataFrame([(name, day) for name, days_in in covered.items() for day in days_in],
                        columns=["source", "day"]).assign(have=True)  # fmt: skip
    window = window.merge(have, on=["source", "day"], how="left")
    complete = window["have"].fillna(False).astype(bool).groupby(window["order"]).all()
    result.loc[complete.index] = ~complete
    return result


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
                f"{src} {'退款' if a < 0 else '收款'} {yuan_text(abs(a), grouping=True)} 元（{p or '付款人不详'}，{m or '无附言'}）找不到对应订单"
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
            rate, minimum = contract.rate, decimal_to_fen(contract.min_yuan)
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
                f"{s} 交易 {t} 金额 {yuan_text(a, grouping=True)} 元，手续费 {yuan_text(f, grouping=True)} 元，按合同应为 {yuan_text(e, grouping=True)} 元"
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
                f"{c} 运单 {w}（订单 {o}）{d} 签收，代收货款 {yuan_text(a, grouping=True)} 元应于 {r} 前回款，未收到"
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
