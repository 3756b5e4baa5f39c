"""Settlement rules as pure functions over DataFrames (A1, A2, K2): order payment state, the receivables plan
(terms, due dates, instalments), ageing, the dunning ladder and report periods. The discrepancy conditions are in
``tasks.settlement.discrepancies``, the matching rules in ``tasks.settlement.match``; the step modules
(``files``, ``payments``, ``receivables``, ``cases``) feed them from the store and write their results back.

Money is integer fen throughout; dates are Asia/Shanghai calendar dates (``datetime.date``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from yidi.bulk import utc_now
from yidi.money import yuan_text
from yidi.settlement_policy import SettlementPolicy
from yidi.workdays import BUSINESS_TZ, add_working_days

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


def business_today(now: datetime | None = None) -> date:
    """The Asia/Shanghai calendar date of ``now`` (default: the clock)."""
    return (now or utc_now()).astimezone(BUSINESS_TZ).date()


def end_of_business_day(day: date) -> datetime:
    """The last instant of ``day`` in Asia/Shanghai, as UTC: the moment a reconciliation "as of" ``day`` is computed
    for (a month-end close of 30 November counts everything up to 23:59:59.999999 that day, nothing after)."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=BUSINESS_TZ) + timedelta(days=1)
    return (midnight - timedelta(microseconds=1)).astimezone(UTC)


def parse_as_of(text: str | date | None) -> date | None:
    """An as-of date from a parameter or option: YYYY-MM-DD (or a date); None stays None."""
    if text is None or isinstance(text, date):
        return text
    try:
        return date.fromisoformat(str(text).strip())
    except ValueError:
        raise ValueError(f"as-of date {text!r} is not YYYY-MM-DD") from None


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
    customer_net_days, order_date, shipped_date, delivered_date, due_fen, net_fen (from ``payment_states``);
    for imported orders optionally import_terms, import_net_days, import_due_date (the old system's agreement,
    which wins over what would be computed).
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
    if "import_net_days" in frame:  # what an imported order's old system agreed comes first
        frame["customer_net_days"] = frame["import_net_days"].astype("Float64").fillna(
            frame["customer_net_days"].astype("Float64"))  # fmt: skip
    frame["terms"] = order_terms(frame)
    if "import_terms" in frame:
        frame["terms"] = frame["import_terms"].where(frame["import_terms"].notna(), frame["terms"]).astype(str)
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
    if "import_due_date" in rows:
        agreed = pd.to_datetime(rows["import_due_date"]) + pd.to_timedelta(
            (rows["installment_no"] - 1) * policy.installment_interval_days, unit="D"
        )
        due_date = agreed.where(agreed.notna(), due_date)
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


def cod_due_dates(delivered: pd.Series, working_days: int) -> dict:
    """order (or shipment) id -> delivery date + N official working days (each distinct date computed once)."""
    cache: dict[date, date] = {}
    result = {}
    for order_id, day in delivered.dropna().items():
        if day not in cache:
            cache[day] = add_working_days(day, working_days)
        result[order_id] = cache[day]
    return result


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
    grouped["outstanding_yuan"] = grouped["outstanding_fen"].map(lambda fen: yuan_text(fen, grouping=True))
    return grouped


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
            "overdue_total": yuan_text(action.overdue_fen, grouping=True),
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
