"""Order review (V1–V6): the automated first pass in chunks, reviewer decisions, review deadlines.

Automated review of a chunk (one Prefect task; plain functions underneath):

1. load the chunk's orders and lines, the catalog, the customers, the purchase history of limited items and the
   customers' credit exposure from the store;
2. compute the store-dependent rules as columns (``tasks/review_columns.py``), validate them with the four Great
   Expectations suites (``expectations/``), map failures back to orders by id;
3. decide: any reject-severity finding → ``auto_rejected`` with every reason recorded and the customer told why
   (outbox); otherwise → ``pending_review`` with its findings attached and a deadline of X working days;
4. write checks, findings, state changes, deadlines and notices in one transaction per chunk.

An order's content is checked once (``review_checks`` is unique by order and content hash): re-running the review
changes nothing, while an order whose content changed at the source is checked again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Connection, Engine, String, and_, cast, func, inspect, literal, or_, select, update
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table

from tasks.review.columns import (
    CATALOG_COLUMNS,
    CREDIT_COLUMNS,
    HISTORY_COLUMNS,
    LINE_INPUT_COLUMNS,
    ORDER_INPUT_COLUMNS,
    SHANGHAI,
    ReviewColumns,
    ReviewInputs,
    compute_review_columns,
    line_details,
)
from yidi.bulk import frame_records, insert_rows, read_frame, result_frame, stage_frame, utc_now
from yidi.lifecycle import OrderState, current_actor, record_events, transition_orders
from yidi.masking import mask_name
from yidi.outbox import enqueue
from yidi.schema import catalog_items, customers, order_lines, orders
from yidi.schema_review import (
    review_checks,
    review_deadline_alerts,
    review_decisions,
    review_findings,
    review_runs,
)
from yidi.settings import Settings, get_settings
from yidi.workdays import add_working_days

IN_CHUNK = 900  # ids per IN (...) list: within every database's bind-parameter limit
REVIEWABLE_STATES = (OrderState.RECEIVED, OrderState.PENDING_REVIEW, OrderState.AUTO_REJECTED)
NOT_COUNTED_STATES = ("auto_rejected", "rejected", "cancelled")


def _chunks(values: Sequence, size: int = IN_CHUNK):
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


_temp_counter = itertools.count()


def _read_in(conn: Connection, make_stmt, ids: Sequence) -> pd.DataFrame:
    """``make_stmt(ids)`` where the statement filters with ``column.in_(ids)``: a short list inline, a long one
    through a temporary table (one query, any size, no bind-parameter limits)."""
    values = list(dict.fromkeys(ids))
    if len(values) <= IN_CHUNK:
        return result_frame(conn.execute(make_stmt(values)))
    name = f"yidi_review_ids_{next(_temp_counter)}"
    numeric = all(isinstance(v, int | np.integer) for v in values)
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} (value {'BIGINT' if numeric else 'TEXT'} PRIMARY KEY)")
    try:
        mark = "?" if conn.dialect.name == "sqlite" else "%s"
        rows = [(int(v) if numeric else str(v),) for v in values]
        conn.connection.driver_connection.cursor().executemany(f"INSERT INTO {name} (value) VALUES ({mark})", rows)
        temp = sa_table(name, sa_column("value"))
        return result_frame(conn.execute(make_stmt(select(temp.c.value))))
    finally:
        conn.exec_driver_sql(f"DROP TABLE {name}")


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def content_key(order_id: int, content_hash) -> str:
    return str(content_hash) if isinstance(content_hash, str) and content_hash else f"order:{int(order_id)}"


# --- candidates and inputs --------------------------------------------------------------------------------------


def select_candidates(conn: Connection, order_ids: Sequence[int] | None = None) -> list[int]:
    """Orders the automated review should look at: every ``received`` order, and pending / auto-rejected orders
    whose content changed since their last check (I3: an order changed at the source is reviewed again)."""
    latest = (
        select(review_checks.c.order_id, func.max(review_checks.c.id).label("check_id"))
        .group_by(review_checks.c.order_id)
        .subquery()
    )
    last_key = (
        select(review_checks.c.order_id, review_checks.c.content_key)
        .join(latest, review_checks.c.id == latest.c.check_id)
        .subquery()
    )
    current_key = func.coalesce(orders.c.content_hash, literal("order:", String) + cast(orders.c.id, String))
    stmt = (
        select(orders.c.id)
        .outerjoin(last_key, last_key.c.order_id == orders.c.id)
        .where(or_(
            orders.c.state == OrderState.RECEIVED.value,
            and_(orders.c.state.in_([OrderState.PENDING_REVIEW.value, OrderState.AUTO_REJECTED.value]),
                 or_(last_key.c.content_key.is_(None), last_key.c.content_key != current_key)),
        ))
        .order_by(orders.c.id)
    )  # fmt: skip
    if order_ids is not None:
        found = []
        for chunk in _chunks(sorted({int(i) for i in order_ids})):
            found.extend(conn.execute(stmt.where(orders.c.id.in_(chunk))).scalars().all())
        return sorted(found)
    return list(conn.execute(stmt).scalars().all())


def load_inputs(conn: Connection, order_ids: Sequence[int], settings: Settings, as_of: datetime) -> ReviewInputs:
    order_cols = [orders.c[c] for c in ORDER_INPUT_COLUMNS]
    chunk_orders = _read_in(conn, lambda ids: select(*order_cols, orders.c.content_hash).where(orders.c.id.in_(ids)),
                            order_ids)
    lines = _read_in(conn, lambda ids: select(*[order_lines.c[c] for c in LINE_INPUT_COLUMNS])
                     .where(order_lines.c.order_id.in_(ids)).order_by(order_lines.c.order_id, order_lines.c.line_no),
                     order_ids)  # fmt: skip
    codes = sorted(set(lines["item_code"].dropna().astype(str))) if not lines.empty else []
    catalog = _read_in(conn, lambda c: select(*[catalog_items.c[x] for x in CATALOG_COLUMNS])
                       .where(catalog_items.c.code.in_(c)), codes)  # fmt: skip
    customer_ids = sorted({int(c) for c in chunk_orders["customer_id"].dropna()}) if not chunk_orders.empty else []
    customer_frame = _read_in(conn, lambda c: select(customers.c.id, customers.c.is_important,
                                                     customers.c.credit_limit_fen, customers.c.blocked,
                                                     customers.c.prepayment_ratio, customers.c.net_days)
                              .where(customers.c.id.in_(c)), customer_ids)  # fmt: skip
    return ReviewInputs(
        orders=chunk_orders,
        lines=lines,
        catalog=catalog,
        customers=customer_frame,
        history=load_history(conn, chunk_orders, settings),
        credit=load_credit(conn, chunk_orders, customer_frame, settings, as_of),
        as_of=as_of,
    )


def load_history(conn: Connection, chunk_orders: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Lines of limited items in other counted orders within the largest window before the chunk's orders."""
    limits = settings.limits.purchase_limits
    if not limits or chunk_orders.empty:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    times = pd.to_datetime(chunk_orders["order_time"], utc=True).dropna()
    if times.empty:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    since = (times.min() - timedelta(days=max(lim.window_days for lim in limits))).to_pydatetime()
    until = times.max().to_pydatetime()
    stmt = (
        select(orders.c.id.label("order_id"), orders.c.customer_id, orders.c.customer_phone, order_lines.c.item_code,
               orders.c.order_time, order_lines.c.quantity)
        .join(orders, orders.c.id == order_lines.c.order_id)
        .where(order_lines.c.item_code.in_([lim.item_code for lim in limits]), orders.c.order_time >= since,
               orders.c.order_time <= until, orders.c.state.not_in(NOT_COUNTED_STATES))
    )  # fmt: skip
    return read_frame(conn, stmt)


def receivables_by_customer(conn: Connection, customer_ids: Sequence[int], customer_frame: pd.DataFrame,
                            settings: Settings, as_of: datetime) -> pd.DataFrame:
    """Unpaid receivables and the overdue part per customer (``customer_id``, ``receivable_fen``, ``overdue_fen``).

    Hook for the settlement area (issue 7): open items of its ``receivables`` ledger count with their due dates;
    unpaid orders in ``orders.receivable_states`` the ledger does not know yet count too, due ``net_days`` after the
    order time. Returns also ``ledger_order_ids`` (orders the ledger covers), which the open-order sum leaves out.
    """
    today = as_of.astimezone(SHANGHAI).date()
    parts = []
    ledger_orders: set[int] = set()
    if inspect(conn).has_table("receivables"):
        from sqlalchemy import Table

        ledger = Table("receivables", orders.metadata, autoload_with=conn, extend_existing=True)
        rows = _read_in(conn, lambda c: select(
            ledger.c.customer_id, ledger.c.order_id, ledger.c.outstanding_fen, ledger.c.due_date
        ).where(ledger.c.status == "open", ledger.c.customer_id.in_(c)), customer_ids)  # fmt: skip
        if not rows.empty:
            ledger_orders = {int(i) for i in rows["order_id"]}
            due = pd.to_datetime(rows["due_date"], errors="coerce")
            overdue = rows["outstanding_fen"].where(due.notna() & (due.dt.date < today), 0)
            parts.append(pd.DataFrame({"customer_id": rows["customer_id"], "receivable_fen": rows["outstanding_fen"],
                                       "overdue_fen": overdue}))  # fmt: skip
    unpaid = _read_in(conn, lambda c: select(
        orders.c.id, orders.c.customer_id, orders.c.order_total_fen, orders.c.order_time
    ).where(orders.c.customer_id.in_(c), orders.c.state.in_(settings.orders.receivable_states),
            orders.c.payment_state != "paid"), customer_ids)  # fmt: skip
    if not unpaid.empty:
        unpaid = unpaid[~unpaid["id"].isin(ledger_orders)]
        net_days = unpaid["customer_id"].map(customer_frame.set_index("id")["net_days"]).fillna(0)
        due = pd.to_datetime(unpaid["order_time"], utc=True) + pd.to_timedelta(net_days, unit="D")
        overdue = unpaid["order_total_fen"].where(due < pd.Timestamp(as_of), 0)
        parts.append(pd.DataFrame({"customer_id": unpaid["customer_id"], "receivable_fen": unpaid["order_total_fen"],
                                   "overdue_fen": overdue}))  # fmt: skip
    if not parts:
        frame = pd.DataFrame(columns=["customer_id", "receivable_fen", "overdue_fen"])
    else:
        frame = pd.concat(parts, ignore_index=True).groupby("customer_id", as_index=False).sum()
    frame.attrs["ledger_order_ids"] = ledger_orders
    return frame


def load_credit(conn: Connection, chunk_orders: pd.DataFrame, customer_frame: pd.DataFrame, settings: Settings,
                as_of: datetime) -> pd.DataFrame:
    """Store exposure per customer of the chunk: unpaid open orders (other than the chunk's) + receivables."""
    if customer_frame.empty:
        return pd.DataFrame(columns=CREDIT_COLUMNS)
    ids = customer_frame["id"].astype(int).tolist()
    receivables = receivables_by_customer(conn, ids, customer_frame, settings, as_of)
    open_orders = _read_in(conn, lambda c: select(orders.c.id, orders.c.customer_id, orders.c.order_total_fen)
                           .where(orders.c.customer_id.in_(c), orders.c.state.in_(settings.orders.credit_open_states),
                                  orders.c.payment_state != "paid"), ids)  # fmt: skip
    excluded = set(chunk_orders["id"].astype(int)) | receivables.attrs.get("ledger_order_ids", set())
    open_orders = open_orders[~open_orders["id"].isin(excluded)]
    open_sum = open_orders.groupby("customer_id")["order_total_fen"].sum()
    frame = pd.DataFrame({"customer_id": ids})
    frame["open_unpaid_fen"] = frame["customer_id"].map(open_sum).fillna(0).astype("int64")
    indexed = receivables.set_index("customer_id") if not receivables.empty else None
    for column in ("receivable_fen", "overdue_fen"):
        frame[column] = (frame["customer_id"].map(indexed[column]).fillna(0).astype("int64")
                         if indexed is not None else 0)  # fmt: skip
    return frame


# --- evaluation ---------------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    columns: ReviewColumns
    failures: pd.DataFrame  # order_id, suite, rule, reason_code, severity, area
    decisions: pd.DataFrame  # order_id, outcome, reject_count, review_count, note_count
    stats: pd.DataFrame
    outcome: object = None  # expectations.engine.ValidationOutcome (results kept for Data Docs)


def decide(order_ids: pd.Index, failures: pd.DataFrame) -> pd.DataFrame:
    """Any reject-severity finding → auto_rejected; else pending_review (V5)."""
    positions = order_ids.get_indexer(failures["order_id"])
    counts = {}
    for severity in ("reject", "needs_review", "note"):
        hit = positions[(failures["severity"] == severity).to_numpy()]
        counts[severity] = np.bincount(hit[hit >= 0], minlength=len(order_ids))
    return pd.DataFrame({
        "order_id": order_ids.to_numpy(),
        "outcome": np.where(counts["reject"] > 0, OrderState.AUTO_REJECTED.value, OrderState.PENDING_REVIEW.value),
        "reject_count": counts["reject"],
        "review_count": counts["needs_review"],
        "note_count": counts["note"],
    })  # fmt: skip


def evaluate(inputs: ReviewInputs, settings: Settings) -> Evaluation:
    """Columns, Great Expectations, decisions: the whole automated review of a chunk, in memory."""
    from expectations.engine import validator_for

    columns = compute_review_columns(inputs, settings)
    outcome = validator_for(settings).validate(columns.frame)
    decisions = decide(columns.frame.index, outcome.failures)
    return Evaluation(columns, outcome.failures, decisions, outcome.stats, outcome)


# --- writing a chunk ---------------------------------------------------------------------------------------------


@dataclass
class ChunkSummary:
    checked: int = 0
    auto_rejected: int = 0
    pending_review: int = 0
    unchanged: int = 0  # already checked with this content (a rerun) or moved concurrently
    notices: int = 0
    by_reason: Counter = field(default_factory=Counter)

    def add(self, other: ChunkSummary) -> None:
        self.checked += other.checked
        self.auto_rejected += other.auto_rejected
        self.pending_review += other.pending_review
        self.unchanged += other.unchanged
        self.notices += other.notices
        self.by_reason.update(other.by_reason)

    def as_dict(self) -> dict:
        return {"checked": self.checked, "auto_rejected": self.auto_rejected, "pending_review": self.pending_review,
                "unchanged": self.unchanged, "notices": self.notices, "by_reason": dict(self.by_reason)}  # fmt: skip


def review_deadline(became_pending: datetime, settings: Settings) -> datetime:
    """X working days (official calendar, make-up days included) after the order became pending."""
    return add_working_days(became_pending, settings.review.deadline_working_days)


def _rule_messages(settings: Settings) -> dict[str, tuple[str, str]]:
    from expectations.engine import validator_for

    messages = {}
    for suite in validator_for(settings).suites.values():
        for expectation in suite.expectations:
            meta = expectation.meta or {}
            messages[meta["rule"]] = (meta["message_zh"], meta["message_en"])
    return messages


def write_chunk(conn: Connection, run_id: int, inputs: ReviewInputs, evaluation: Evaluation, settings: Settings,
                now: datetime) -> ChunkSummary:
    summary = ChunkSummary()
    orders_frame = inputs.orders.set_index("id", drop=False)
    decisions = evaluation.decisions.copy()
    decisions["content_key"] = [content_key(i, h) for i, h in
                                zip(decisions["order_id"], orders_frame.loc[decisions["order_id"], "content_hash"],
                                    strict=True)]  # fmt: skip
    credit = evaluation.columns.credit
    decisions["credit"] = [
        _json({k: (bool(v) if k == "important" else int(v)) for k, v in credit.loc[oid].items()})
        if oid in credit.index else None
        for oid in decisions["order_id"]
    ]
    checks = decisions.rename(columns={})[["order_id", "content_key", "outcome", "reject_count", "review_count",
                                           "note_count", "credit"]].assign(run_id=run_id, checked_at=now)  # fmt: skip
    insert_rows(conn, review_checks, checks, on_conflict=["order_id", "content_key"])
    mine = _checks_of_run(conn, run_id, decisions)  # only checks this run created are acted on
    check_of = dict(zip(mine["order_id"].astype(int), mine["id"].astype(int), strict=True))
    summary.unchanged = len(decisions) - len(check_of)
    decisions = decisions[decisions["order_id"].isin(check_of)]
    if decisions.empty:
        return summary
    summary.checked = len(decisions)

    # Findings, with the lines (or credit figures) behind them.
    failures = evaluation.failures[evaluation.failures["order_id"].isin(check_of)]
    messages = _rule_messages(settings)
    if not failures.empty:
        details = {}
        for rec in line_details(evaluation.columns, failures).itertuples(index=False):
            details[(int(rec.order_id), rec.reason_code)] = {"lines": rec.lines}
        for code in ("CREDIT_LIMIT_EXCEEDED", "CREDIT_OVERDUE"):
            for oid in failures.loc[failures["reason_code"] == code, "order_id"]:
                details[(int(oid), code)] = json.loads(decisions.set_index("order_id").at[oid, "credit"] or "{}")
        rows = pd.DataFrame({
            "check_id": failures["order_id"].map(check_of).to_numpy(),
            "order_id": failures["order_id"].to_numpy(),
            "rule": failures["rule"].to_numpy(),
            "reason_code": failures["reason_code"].to_numpy(),
            "severity": failures["severity"].to_numpy(),
            "area": failures["area"].to_numpy(),
            "message_zh": failures["rule"].map(lambda r: messages[r][0]).to_numpy(),
            "message_en": failures["rule"].map(lambda r: messages[r][1]).to_numpy(),
            "details": [(_json(details[(int(o), c)]) if (int(o), c) in details else None)
                        for o, c in zip(failures["order_id"], failures["reason_code"], strict=True)],
        })  # fmt: skip
        insert_rows(conn, review_findings, rows, on_conflict=["check_id", "rule"])
        summary.by_reason.update(failures["reason_code"].value_counts().to_dict())

    # State changes (concurrency-safe: an order moved meanwhile is skipped, its check stays as a record).
    states = orders_frame["state"].astype(str)
    reasons_by_order = (
        failures.groupby("order_id")["reason_code"].agg(lambda s: sorted(set(s))) if not failures.empty
        else pd.Series(dtype=object)
    )  # fmt: skip
    rejected = decisions[decisions["outcome"] == OrderState.AUTO_REJECTED.value]
    pending = decisions[decisions["outcome"] == OrderState.PENDING_REVIEW.value]
    actor = current_actor()

    def details_for(ids):
        return [{"check_id": check_of[int(i)], "reasons": reasons_by_order.get(i, [])} for i in ids]

    to_reject = rejected[states.loc[rejected["order_id"]].to_numpy() != OrderState.AUTO_REJECTED.value]
    moved_rejected = transition_orders(
        conn, to_reject["order_id"].tolist(), OrderState.AUTO_REJECTED, actor=actor, skip_illegal=True,
        reason="自动审核未通过 / automated review failed", details=details_for(to_reject["order_id"]),
    ).moved if not to_reject.empty else []  # fmt: skip
    to_pend = pending[states.loc[pending["order_id"]].to_numpy() != OrderState.PENDING_REVIEW.value]
    moved_pending = transition_orders(
        conn, to_pend["order_id"].tolist(), OrderState.PENDING_REVIEW, actor=actor, skip_illegal=True,
        reason="自动审核通过，待人工审核 / passed automated review, pending manual review",
        details=details_for(to_pend["order_id"]),
    ).moved if not to_pend.empty else []  # fmt: skip
    if moved_pending:
        due = review_deadline(now, settings)
        for chunk in _chunks(moved_pending):
            conn.execute(update(orders).where(orders.c.id.in_(chunk)).values(review_due_at=due))
    # Re-checks that keep the state (changed content, same verdict) still leave an event with the new reasons.
    stayed = decisions[(states.loc[decisions["order_id"]].to_numpy() == decisions["outcome"].to_numpy())]
    if not stayed.empty:
        record_events(conn, pd.DataFrame({
            "order_id": stayed["order_id"].to_numpy(), "kind": "review",
            "reason": "订单内容变更后重新自动审核 / re-checked after a change at the source",
            "details": details_for(stayed["order_id"]),
        }), actor=actor)  # fmt: skip
    summary.auto_rejected = len(moved_rejected) + int((stayed["outcome"] == OrderState.AUTO_REJECTED.value).sum())
    summary.pending_review = len(moved_pending) + int((stayed["outcome"] == OrderState.PENDING_REVIEW.value).sum())
    summary.unchanged += len(decisions) - summary.auto_rejected - summary.pending_review

    # Customers of (newly) auto-rejected orders hear why: every reject reason (P2, V5).
    notify_ids = list(moved_rejected) + stayed.loc[stayed["outcome"] == OrderState.AUTO_REJECTED.value,
                                                   "order_id"].astype(int).tolist()  # fmt: skip
    if notify_ids:
        summary.notices = queue_rejection_notices(conn, orders_frame.loc[notify_ids], failures, check_of, messages,
                                                  settings)  # fmt: skip
    return summary


def _checks_of_run(conn: Connection, run_id: int, keys: pd.DataFrame) -> pd.DataFrame:
    """Ids of the checks this run created for ``keys`` (order_id, content_key): a join on the unique key's index."""
    stage = stage_frame(conn, review_checks, keys[["order_id", "content_key"]])
    try:
        rows = conn.exec_driver_sql(
            f"SELECT c.id, c.order_id FROM review_checks c JOIN {stage} s "
            "ON c.order_id = s.order_id AND c.content_key = s.content_key WHERE c.run_id = ?"
            if conn.dialect.name == "sqlite" else
            f"SELECT c.id, c.order_id FROM review_checks c JOIN {stage} s "
            "ON c.order_id = s.order_id AND c.content_key = s.content_key WHERE c.run_id = %(run)s",
            (run_id,) if conn.dialect.name == "sqlite" else {"run": run_id},
        ).fetchall()
    finally:
        conn.exec_driver_sql(f"DROP TABLE {stage}")
    return pd.DataFrame(rows, columns=["id", "order_id"])


def customer_contacts(frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """One row per (order, medium) the customer can be reached on: SMS to mobiles, email to addresses."""
    from tasks.notifications import sms_number

    rows = []
    media = settings.notifications.customer_media
    for oid, phone, email in zip(frame["id"], frame["customer_phone"], frame["customer_email"], strict=True):
        if "sms" in media and isinstance(phone, str) and sms_number(phone):
            rows.append((int(oid), "sms", sms_number(phone)))
        if "email" in media and isinstance(email, str) and "@" in email:
            rows.append((int(oid), "email", email.strip()))
    return pd.DataFrame(rows, columns=["order_id", "medium", "recipient"])


def _order_context(row) -> dict:
    when = pd.Timestamp(row["order_time"]) if row["order_time"] is not None else None
    local = when.tz_convert(SHANGHAI).strftime("%Y-%m-%d %H:%M") if when is not None and not pd.isna(when) else "—"
    return {"order_no": row["order_no"], "customer_name": row["customer_name"] or "客户", "order_time": local,
            "order_total": f"{int(row['order_total_fen']) / 100:.2f}"}  # fmt: skip


def queue_rejection_notices(conn, rejected_orders: pd.DataFrame, failures: pd.DataFrame, check_of: dict,
                            messages: dict, settings: Settings) -> int:
    reject = failures[failures["severity"] == "reject"]
    reasons = reject.groupby("order_id")["rule"].agg(
        lambda rules: list(dict.fromkeys(messages[r][0] for r in sorted(rules)))
    )
    contacts = customer_contacts(rejected_orders, settings)
    records = rejected_orders.set_index("id", drop=False)
    contexts = {int(oid): {**_order_context(row), "reasons": reasons.get(oid, [])}
                for oid, row in zip(records["id"], frame_records(records), strict=True)}  # fmt: skip
    notices = [{
        "order_id": oid, "medium": medium, "recipient": recipient, "template": "order_auto_rejected",
        "context": contexts[oid], "dedupe_key": f"review:auto_rejected:{oid}:{check_of[oid]}:{medium}",
    } for oid, medium, recipient in zip(contacts["order_id"].astype(int), contacts["medium"], contacts["recipient"],
                                        strict=True)]  # fmt: skip
    unreachable = sorted(set(rejected_orders["id"].astype(int)) - set(contacts["order_id"]))
    if unreachable:
        record_events(conn, pd.DataFrame({
            "order_id": unreachable, "kind": "notification",
            "reason": "客户无可用的手机号码或邮箱，未能自动通知，请人工联系 / no customer contact: follow up by hand",
        }))  # fmt: skip
    return enqueue(conn, pd.DataFrame(notices)) if notices else 0


# --- runs ----------------------------------------------------------------------------------------------------------


def start_run(engine: Engine, kind: str = "auto", flow_run_id: str | None = None) -> tuple[int, str]:
    run_key = f"{utc_now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        insert_rows(conn, review_runs, pd.DataFrame([{
            "run_key": run_key, "kind": kind, "flow_run_id": flow_run_id, "actor": current_actor(),
            "started_at": utc_now(), "status": "running",
        }]))  # fmt: skip
        run_id = conn.execute(select(review_runs.c.id).where(review_runs.c.run_key == run_key)).scalar_one()
    return run_id, run_key


def finish_run(engine: Engine, run_id: int, summary: ChunkSummary, stats: pd.DataFrame, status: str = "completed",
               data_docs: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(update(review_runs).where(review_runs.c.id == run_id).values(
            finished_at=utc_now(), status=status, orders_checked=summary.checked,
            auto_rejected=summary.auto_rejected, pending_review=summary.pending_review,
            findings=int(sum(summary.by_reason.values())),
            stats=_json(stats.to_dict("records")) if not stats.empty else None, data_docs=data_docs,
        ))  # fmt: skip


def review_chunk(engine: Engine, order_ids: Sequence[int], run_id: int, run_key: str, index: int = 0, *,
                 settings: Settings | None = None, now: datetime | None = None,
                 keep_results: bool = True) -> tuple[ChunkSummary, pd.DataFrame]:
    """Load, evaluate and write one chunk in one transaction. Returns the summary and per-expectation stats."""
    settings = settings or get_settings()
    now = now or utc_now()
    with engine.begin() as conn:
        inputs = load_inputs(conn, order_ids, settings, now)
        if inputs.orders.empty:
            return ChunkSummary(), pd.DataFrame()
        evaluation = evaluate(inputs, settings)
        summary = write_chunk(conn, run_id, inputs, evaluation, settings, now)
    if keep_results and summary.checked:
        from expectations.engine import keep_results as keep

        keep(evaluation.outcome, run_key, f"chunk{index:04d}")
    return summary, evaluation.stats


def merge_stats(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=["suite", "rule", "reason_code", "severity", "unexpected_count", "element_count"])
    both = pd.concat(frames, ignore_index=True)
    return both.groupby(["suite", "rule", "reason_code", "severity"], as_index=False)[
        ["unexpected_count", "element_count"]].sum()


def auto_review(engine: Engine, order_ids: Sequence[int] | None = None, *, settings: Settings | None = None,
                now: datetime | None = None, flow_run_id: str | None = None,
                build_docs: bool | None = None, keep_results: bool = True) -> dict:
    """The whole automated review without Prefect (CLI, tests): candidates in chunks, one run record."""
    settings = settings or get_settings()
    with engine.connect() as conn:
        candidates = select_candidates(conn, order_ids)
    run_id, run_key = start_run(engine, "auto", flow_run_id)
    total, stats = ChunkSummary(), []
    try:
        for index, chunk in enumerate(_chunks(candidates, settings.review.chunk_size)):
            summary, chunk_stats = review_chunk(engine, chunk, run_id, run_key, index, settings=settings, now=now,
                                                keep_results=keep_results)
            total.add(summary)
            stats.append(chunk_stats)
    except Exception:
        finish_run(engine, run_id, total, merge_stats(stats), status="failed")
        raise
    docs = None
    if (settings.review.build_data_docs if build_docs is None else build_docs) and total.checked and keep_results:
        from expectations.engine import build_data_docs

        docs = str(build_data_docs(run_key, settings=settings))
    finish_run(engine, run_id, total, merge_stats(stats), data_docs=docs)
    return {"run_id": run_id, "run_key": run_key, "candidates": len(candidates), **total.as_dict(),
            "data_docs": docs}  # fmt: skip


@task(name="review-chunk", retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def review_chunk_task(order_ids: list[int], run_id: int, run_key: str, index: int) -> dict:
    """One chunk of the automated review (a failed chunk rolls back whole and is retried)."""
    from yidi.db import get_engine

    summary, stats = review_chunk(get_engine(), order_ids, run_id, run_key, index)
    return {"summary": summary.as_dict(), "stats": stats.to_dict("records")}


# --- manual decisions (V6) ---------------------------------------------------------------------------------------


class InvalidDecision(ValueError):
    """The reviewer's input cannot be applied as given (the order stays pending)."""


@dataclass
class DecisionResult:
    order_no: str
    applied: bool
    state: str
    message: str


def _order_by_ref(conn: Connection, ref: str | int):
    text = str(ref).strip()
    where = orders.c.id == int(text) if text.isdigit() else orders.c.order_no == text
    return conn.execute(select(orders).where(where)).mappings().first()


def validate_decision(decision: str, reviewer: str, reason: str | None, proposed_solution: str | None) -> None:
    if decision not in ("approve", "reject"):
        raise InvalidDecision(f"decision must be approve or reject, not {decision!r}")
    if not reviewer or not reviewer.strip():
        raise InvalidDecision("a reviewer name is required")
    if decision == "reject":
        if not reason or len(reason.strip()) < 2:
            raise InvalidDecision("a rejection needs a reason the customer can understand")
        if not proposed_solution or len(proposed_solution.strip()) < 2:
            raise InvalidDecision("a rejection needs a proposed solution for the customer (V6)")


def latest_decision(conn: Connection, order_id: int):
    return conn.execute(select(review_decisions).where(review_decisions.c.order_id == order_id)
                        .order_by(review_decisions.c.id.desc()).limit(1)).mappings().first()  # fmt: skip


def _already(order, decision) -> str:
    if decision is not None:
        when = pd.Timestamp(decision["decided_at"]).tz_convert(SHANGHAI).strftime("%Y-%m-%d %H:%M")
        verb = "approved" if decision["decision"] == "approve" else "rejected"
        return (f"order {order['order_no']} was already {verb} by {decision['reviewer']} at {when} "
                f"({decision['source']}); your decision was not applied")  # fmt: skip
    return f"order {order['order_no']} is {order['state']}, not pending review; your decision was not applied"


def apply_decision(engine: Engine, ref: str | int, decision: str, reviewer: str, *, reason: str | None = None,
                   proposed_solution: str | None = None, source: str = "cli", seen_version: int | None = None,
                   flow_run_id: str | None = None, settings: Settings | None = None) -> DecisionResult:
    """Approve or reject a pending order. Raises ``InvalidDecision`` for bad input; a decision that loses to
    another reviewer (or meets a changed order) comes back with ``applied=False`` and a clear message."""
    settings = settings or get_settings()
    validate_decision(decision, reviewer, reason, proposed_solution)
    reviewer = reviewer.strip()
    try:
        return _apply_decision(engine, ref, decision, reviewer, reason, proposed_solution, source, seen_version,
                               flow_run_id, settings)  # fmt: skip
    except _LostRace as lost:
        # Another writer moved the order between our read and our update: report what happened to it.
        with engine.connect() as conn:
            current = _order_by_ref(conn, lost.order_id)
            return DecisionResult(current["order_no"], False, current["state"],
                                  _already(current, latest_decision(conn, lost.order_id)))


class _LostRace(Exception):
    def __init__(self, order_id: int):
        super().__init__(order_id)
        self.order_id = order_id


def _apply_decision(engine, ref, decision, reviewer, reason, proposed_solution, source, seen_version, flow_run_id,
                    settings) -> DecisionResult:
    with engine.begin() as conn:
        order = _order_by_ref(conn, ref)
        if order is None:
            raise InvalidDecision(f"no order {ref!r}")
        if order["state"] != OrderState.PENDING_REVIEW.value:
            return DecisionResult(order["order_no"], False, order["state"],
                                  _already(order, latest_decision(conn, order["id"])))
        if seen_version is not None and int(seen_version) != int(order["version"]):
            return DecisionResult(order["order_no"], False, order["state"],
                                  f"order {order['order_no']} changed since it was shown to you (version "
                                  f"{seen_version} → {order['version']}); look at it again")  # fmt: skip
        now = utc_now()
        inserted = insert_rows(conn, review_decisions, pd.DataFrame([{
            "order_id": order["id"], "order_version": int(order["version"]), "decision": decision,
            "reviewer": reviewer[:100], "reason": (reason or "").strip() or None,
            "proposed_solution": (proposed_solution or "").strip() or None, "source": source,
            "flow_run_id": flow_run_id, "decided_at": now,
        }]), on_conflict=["order_id", "order_version"])  # fmt: skip
        if not inserted:
            winner = latest_decision(conn, order["id"])
            return DecisionResult(order["order_no"], False, order["state"], _already(order, winner))
        target = OrderState.APPROVED if decision == "approve" else OrderState.REJECTED
        moved = transition_orders(
            conn, [order["id"]], target, actor=f"reviewer:{reviewer}", skip_illegal=True,
            reason=("人工审核通过 / approved by reviewer" if decision == "approve"
                    else f"人工审核驳回 / rejected by reviewer: {reason.strip()}"),
            details={"reviewer": reviewer, "source": source, "reason": reason, "proposed_solution": proposed_solution,
                     "order_version": int(order["version"]), "flow_run_id": flow_run_id},
        ).moved  # fmt: skip
        if not moved:
            raise _LostRace(order["id"])  # rolls the decision row back with the transaction
        contacts = customer_contacts(pd.DataFrame([dict(order)]), settings)
        template = "order_review_rejected" if decision == "reject" else "order_approved"
        if decision == "reject" or settings.notifications.notify_on_approval:
            context = {**_order_context(order), "reason": (reason or "").strip(),
                       "proposed_solution": (proposed_solution or "").strip()}  # fmt: skip
            enqueue(conn, pd.DataFrame([{
                "order_id": int(order["id"]), "medium": c.medium, "recipient": c.recipient, "template": template,
                "context": context, "dedupe_key": f"review:{decision}:{order['id']}:{order['version']}:{c.medium}",
            } for c in contacts.itertuples(index=False)], columns=["order_id", "medium", "recipient", "template",
                                                                   "context", "dedupe_key"]))  # fmt: skip
        if decision == "reject" and contacts.empty:
            record_events(conn, pd.DataFrame({"order_id": [int(order["id"])], "kind": ["notification"],
                                              "reason": ["客户无可用联系方式，请人工告知驳回原因和解决方案"]}))  # fmt: skip
    verb = "approved" if decision == "approve" else "rejected"
    return DecisionResult(order["order_no"], True, target.value, f"order {order['order_no']} {verb} by {reviewer}")


# --- reading the backlog -------------------------------------------------------------------------------------------


def pending_orders(conn: Connection, *, limit: int | None = None, order_refs: Sequence[str] | None = None,
                   overdue_at: datetime | None = None) -> pd.DataFrame:
    """Pending orders, earliest deadline first (full values; callers mask for display)."""
    stmt = (
        select(orders.c.id, orders.c.order_no, orders.c.channel, orders.c.customer_name, orders.c.customer_phone,
               orders.c.ship_province, orders.c.ship_city, orders.c.ship_district, orders.c.ship_detail,
               orders.c.region, orders.c.payment_method, orders.c.installments, orders.c.order_total_fen,
               orders.c.order_time, orders.c.review_due_at, orders.c.version)
        .where(orders.c.state == OrderState.PENDING_REVIEW.value)
        .order_by(orders.c.review_due_at.is_(None), orders.c.review_due_at, orders.c.id)
    )  # fmt: skip
    if order_refs:
        refs = [str(r) for r in order_refs]
        ids = [int(r) for r in refs if r.isdigit()]
        stmt = stmt.where(or_(orders.c.order_no.in_(refs), orders.c.id.in_(ids)))
    if overdue_at is not None:
        stmt = stmt.where(orders.c.review_due_at < overdue_at)
    if limit:
        stmt = stmt.limit(limit)
    return read_frame(conn, stmt)


def current_findings(conn: Connection, order_ids: Sequence[int]) -> pd.DataFrame:
    """The findings of each order's latest check."""
    if not len(order_ids):
        return pd.DataFrame(columns=["order_id", "rule", "reason_code", "severity", "area", "message_zh",
                                     "message_en", "details"])  # fmt: skip
    latest = (select(func.max(review_checks.c.id)).where(review_checks.c.order_id == review_findings.c.order_id)
              .scalar_subquery())  # fmt: skip
    return _read_in(conn, lambda ids: select(
        review_findings.c.order_id, review_findings.c.rule, review_findings.c.reason_code, review_findings.c.severity,
        review_findings.c.area, review_findings.c.message_zh, review_findings.c.message_en, review_findings.c.details,
    ).where(review_findings.c.order_id.in_(ids), review_findings.c.check_id == latest)
     .order_by(review_findings.c.order_id, review_findings.c.id), list(order_ids))  # fmt: skip


def latest_checks(conn: Connection, order_ids: Sequence[int]) -> pd.DataFrame:
    """Each order's latest automated check: outcome, counts, and the credit check result (JSON) when one was made."""
    if not len(order_ids):
        return pd.DataFrame(columns=["order_id", "outcome", "credit", "checked_at"])

    def stmt(ids):
        latest = (select(func.max(review_checks.c.id).label("id")).where(review_checks.c.order_id.in_(ids))
                  .group_by(review_checks.c.order_id).subquery())  # fmt: skip
        return select(review_checks.c.order_id, review_checks.c.outcome, review_checks.c.credit,
                      review_checks.c.checked_at).join(latest, latest.c.id == review_checks.c.id)  # fmt: skip

    return _read_in(conn, stmt, list(order_ids))


def credit_summary(credit_json: str | None) -> str | None:
    """``exposure ¥x of limit ¥y, overdue ¥z`` for a credit-checked order (V1), else None."""
    if not isinstance(credit_json, str) or not credit_json:  # NULL comes back from pandas as NaN
        return None
    credit = json.loads(credit_json)
    ok = credit["exposure_fen"] <= credit["limit_fen"] and credit["overdue_fen"] <= 0
    why = "important customer" if credit.get("important") else "large order"
    return (f"credit check ({why}): {'ok' if ok else 'NOT OK'}: exposure ¥{credit['exposure_fen'] / 100:,.2f} of "
            f"limit ¥{credit['limit_fen'] / 100:,.2f}, overdue ¥{credit['overdue_fen'] / 100:,.2f}")


def masked_pending(frame: pd.DataFrame) -> pd.DataFrame:
    from yidi.masking import mask_frame

    return mask_frame(frame, {"customer_name": "name", "customer_phone": "phone", "ship_detail": "address"})


def describe_customer(row) -> str:
    return mask_name(row["customer_name"])


# --- deadlines (V6) ----------------------------------------------------------------------------------------------


def ensure_review_deadlines(conn: Connection, settings: Settings) -> int:
    """Pending orders without a deadline (moved back to review by another area) get one, counted from the moment
    they last became pending."""
    from yidi.schema import order_events

    missing = read_frame(conn, select(orders.c.id).where(orders.c.state == OrderState.PENDING_REVIEW.value,
                                                         orders.c.review_due_at.is_(None)))  # fmt: skip
    if missing.empty:
        return 0
    became = _read_in(conn, lambda ids: select(order_events.c.order_id, func.max(order_events.c.occurred_at)
                                               .label("since"))
                      .where(order_events.c.order_id.in_(ids), order_events.c.kind == "state",
                             order_events.c.to_state == OrderState.PENDING_REVIEW.value)
                      .group_by(order_events.c.order_id), missing["id"].tolist())  # fmt: skip
    since = dict(zip(became["order_id"].astype(int), became["since"], strict=True))
    now = utc_now()
    params = [{"oid": int(oid), "due": review_deadline(since.get(int(oid), now), settings)} for oid in missing["id"]]
    from sqlalchemy import bindparam

    conn.execute(update(orders).where(orders.c.id == bindparam("oid"), orders.c.review_due_at.is_(None))
                 .values(review_due_at=bindparam("due")), params)  # fmt: skip
    return len(params)


@dataclass
class DeadlineReport:
    reminded: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    backlog: pd.DataFrame | None = None


def check_deadlines(engine: Engine, *, now: datetime | None = None, settings: Settings | None = None) -> DeadlineReport:
    """Remind reviewers before the deadline, escalate after it; each order once per deadline (alerts table)."""
    settings = settings or get_settings()
    now = now or utc_now()
    policy = settings.review
    report = DeadlineReport()
    with engine.begin() as conn:
        ensure_review_deadlines(conn, settings)
        pending = pending_orders(conn)
        if pending.empty:
            report.backlog = backlog_by_age(pending, now)
            return report
        due = pd.to_datetime(pending["review_due_at"], utc=True)
        soon = pending[(due > now) & (due <= now + timedelta(hours=policy.reminder_hours_before))]
        late = pending[due <= now]
        sent = read_frame(conn, select(review_deadline_alerts.c.order_id, review_deadline_alerts.c.kind,
                                       review_deadline_alerts.c.due_at))  # fmt: skip
        done = {(int(o), k, pd.Timestamp(d).tz_convert("UTC")) for o, k, d in
                zip(sent["order_id"], sent["kind"], sent["due_at"], strict=True)} if not sent.empty else set()  # fmt: skip
        for kind, frame, recipients, template in (
            ("reminder", soon, policy.reviewer_contacts, "review_reminder"),
            ("escalation", late, [policy.escalation_contact], "review_escalation"),
        ):
            fresh = frame[[(int(o), kind, pd.Timestamp(d).tz_convert("UTC")) not in done
                           for o, d in zip(frame["id"], frame["review_due_at"], strict=True)]]  # fmt: skip
            if fresh.empty:
                continue
            insert_rows(conn, review_deadline_alerts, pd.DataFrame({
                "order_id": fresh["id"].astype(int).to_numpy(), "kind": kind, "due_at": fresh["review_due_at"].to_numpy(),
                "created_at": now,
            }), on_conflict=["order_id", "kind", "due_at"])  # fmt: skip
            listing = [
                f"{r.order_no}（{mask_name(r.customer_name)}，¥{int(r.order_total_fen) / 100:.2f}，期限 "
                f"{pd.Timestamp(r.review_due_at).tz_convert(SHANGHAI):%Y-%m-%d %H:%M}）"
                for r in fresh.itertuples(index=False)
            ]
            digest = hashlib.sha256("-".join(str(int(i)) for i in sorted(fresh["id"])).encode()).hexdigest()[:20]
            notices = []
            for recipient in recipients:
                medium = "email" if "@" in recipient else "sms"
                notices.append({"order_id": None, "medium": medium, "recipient": recipient, "template": template,
                                "context": {"count": len(fresh), "orders": listing},
                                "dedupe_key": f"review:{kind}:{digest}:{recipient}"})  # fmt: skip
            enqueue(conn, pd.DataFrame(notices))
            if kind == "escalation":
                record_events(conn, pd.DataFrame({
                    "order_id": fresh["id"].astype(int).to_numpy(), "kind": "review",
                    "reason": "人工审核超期，已上报 / review deadline passed: escalated",
                    "details": [{"due_at": str(d), "escalated_to": policy.escalation_contact}
                                for d in fresh["review_due_at"]],
                }), actor="review-deadlines")  # fmt: skip
                report.escalated = fresh["order_no"].tolist()
            else:
                report.reminded = fresh["order_no"].tolist()
        report.backlog = backlog_by_age(pending, now)
    return report


BACKLOG_BUCKETS = ["within deadline", "due within reminder window", "overdue < 1 day", "overdue 1-3 days",
                   "overdue > 3 days"]  # fmt: skip


def backlog_by_age(pending: pd.DataFrame, now: datetime, reminder_hours: float = 4) -> pd.DataFrame:
    if pending.empty:
        return pd.DataFrame({"bucket": BACKLOG_BUCKETS, "orders": 0})
    due = pd.to_datetime(pending["review_due_at"], utc=True)
    late_hours = (pd.Timestamp(now) - due).dt.total_seconds() / 3600
    bucket = np.select(
        [late_hours < -reminder_hours, late_hours < 0, late_hours < 24, late_hours < 72],
        BACKLOG_BUCKETS[:4], BACKLOG_BUCKETS[4],
    )
    counts = pd.Series(bucket).value_counts()
    return pd.DataFrame({"bucket": BACKLOG_BUCKETS, "orders": [int(counts.get(b, 0)) for b in BACKLOG_BUCKETS]})
