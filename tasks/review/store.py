"""The review's store: what it reads (candidates, a chunk's inputs, credit exposure, the backlog, findings) and the
run records it keeps. SQL in and out, frames back; the decisions themselves are in ``rules``/``columns``.

Long id lists (a chunk is up to 200k orders) are read with one query through a temporary id table (``read_in``),
never with thousands of bound parameters. Credit exposure (V1) counts the settlement area's ``receivables`` ledger
through its table definition in the core (``yidi.schema_settlement``), not through the settlement tasks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Connection, Engine, String, and_, cast, func, literal, or_, select, update

from tasks.review.columns import (
    CATALOG_COLUMNS,
    CREDIT_COLUMNS,
    GRADE_COLUMNS,
    HISTORY_COLUMNS,
    LINE_INPUT_COLUMNS,
    ORDER_INPUT_COLUMNS,
    ReviewInputs,
)
from tasks.review.rules import ChunkSummary, merge_stats
from yidi.bulk import (
    chunked,
    insert_rows,
    json_text,
    read_frame,
    read_in,
    stage_frame,
    utc_now,
)
from yidi.credit import effective_credit
from yidi.lifecycle import OrderState, current_actor
from yidi.schema import catalog_items, customers, order_lines, orders
from yidi.schema_review import review_checks, review_decisions, review_findings, review_runs
from yidi.schema_settlement import receivables
from yidi.settings import Settings
from yidi.workdays import BUSINESS_TZ

NOT_COUNTED_STATES = ("auto_rejected", "rejected", "cancelled")  # orders whose purchases do not count to limits



# --- candidates and a chunk's inputs ---------------------------------------------------------------------------------


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
        for chunk in chunked(sorted({int(i) for i in order_ids})):
            found.extend(conn.execute(stmt.where(orders.c.id.in_(chunk))).scalars().all())
        return sorted(found)
    return list(conn.execute(stmt).scalars().all())


def load_inputs(conn: Connection, order_ids: Sequence[int], settings: Settings, as_of: datetime) -> ReviewInputs:
    order_cols = [orders.c[c] for c in ORDER_INPUT_COLUMNS]
    chunk_orders = read_in(conn, lambda ids: select(*order_cols, orders.c.content_hash).where(orders.c.id.in_(ids)),
                           order_ids)
    lines = read_in(conn, lambda ids: select(*[order_lines.c[c] for c in LINE_INPUT_COLUMNS])
                    .where(order_lines.c.order_id.in_(ids)).order_by(order_lines.c.order_id, order_lines.c.line_no),
                    order_ids)  # fmt: skip
    codes = sorted(set(lines["item_code"].dropna().astype(str))) if not lines.empty else []
    catalog = read_in(conn, lambda c: select(*[catalog_items.c[x] for x in CATALOG_COLUMNS])
                      .where(catalog_items.c.code.in_(c)), codes)  # fmt: skip
    customer_ids = sorted({int(c) for c in chunk_orders["customer_id"].dropna()}) if not chunk_orders.empty else []
    customer_frame = read_in(conn, lambda c: select(customers.c.id, customers.c.is_important,
                                                    customers.c.credit_limit_fen, customers.c.blocked,
                                                    customers.c.prepayment_ratio, customers.c.net_days)
                             .where(customers.c.id.in_(c)), customer_ids)  # fmt: skip
    customer_frame = with_credit_grades(conn, customer_frame, settings, as_of)
    return ReviewInputs(
        orders=chunk_orders,
        lines=lines,
        catalog=catalog,
        customers=customer_frame,
        history=load_history(conn, chunk_orders, settings),
        credit=load_credit(conn, chunk_orders, customer_frame, settings, as_of),
        as_of=as_of,
    )


def with_credit_grades(conn: Connection, customer_frame: pd.DataFrame, settings: Settings,
                       as_of: datetime) -> pd.DataFrame:
    """The customers with their effective credit grade and its measures at ``as_of`` (K1; empty when ungraded)."""
    grades = effective_credit(conn, customer_frame["id"].tolist(), as_of, settings.credit)
    grades = grades.rename(columns={"customer_id": "id"})[["id", *GRADE_COLUMNS]]
    frame = customer_frame.merge(grades, on="id", how="left") if not customer_frame.empty else customer_frame
    for column in GRADE_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    return frame


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

    Open items of the settlement area's ``receivables`` ledger (issue 7) count with their due dates; unpaid orders
    in ``orders.receivable_states`` the ledger does not know yet count too, due ``net_days`` after the order time.
    Returns also ``ledger_order_ids`` (orders the ledger covers), which the open-order sum leaves out.
    """
    today = as_of.astimezone(BUSINESS_TZ).date()
    parts = []
    ledger_orders: set[int] = set()
    rows = read_in(conn, lambda c: select(
        receivables.c.customer_id, receivables.c.order_id, receivables.c.outstanding_fen, receivables.c.due_date
    ).where(receivables.c.status == "open", receivables.c.customer_id.in_(c)), customer_ids)  # fmt: skip
    if not rows.empty:
        ledger_orders = {int(i) for i in rows["order_id"]}
        due = pd.to_datetime(rows["due_date"], errors="coerce")
        overdue = rows["outstanding_fen"].where(due.notna() & (due.dt.date < today), 0)
        parts.append(pd.DataFrame({"customer_id": rows["customer_id"], "receivable_fen": rows["outstanding_fen"],
                                   "overdue_fen": overdue}))  # fmt: skip
    unpaid = read_in(conn, lambda c: select(
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
    owed = receivables_by_customer(conn, ids, customer_frame, settings, as_of)
    open_orders = read_in(conn, lambda c: select(orders.c.id, orders.c.customer_id, orders.c.order_total_fen)
                          .where(orders.c.customer_id.in_(c), orders.c.state.in_(settings.orders.credit_open_states),
                                 orders.c.payment_state != "paid"), ids)  # fmt: skip
    excluded = set(chunk_orders["id"].astype(int)) | owed.attrs.get("ledger_order_ids", set())
    open_orders = open_orders[~open_orders["id"].isin(excluded)]
    open_sum = open_orders.groupby("customer_id")["order_total_fen"].sum()
    frame = pd.DataFrame({"customer_id": ids})
    frame["open_unpaid_fen"] = frame["customer_id"].map(open_sum).fillna(0).astype("int64")
    indexed = owed.set_index("customer_id") if not owed.empty else None
    for column in ("receivable_fen", "overdue_fen"):
        frame[column] = (frame["customer_id"].map(indexed[column]).fillna(0).astype("int64")
                         if indexed is not None else 0)  # fmt: skip
    return frame


def checks_of_run(conn: Connection, run_id: int, keys: pd.DataFrame) -> pd.DataFrame:
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


# --- run records --------------------------------------------------------------------------------------------------


def start_run(engine: Engine, kind: str = "auto", flow_run_id: str | None = None) -> tuple[int, str]:
    """A ``review_runs`` row for this run (its own short transaction); returns its id and key."""
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
            stats=json_text(stats.to_dict("records")) if not stats.empty else None, data_docs=data_docs,
        ))  # fmt: skip


def run_stats(conn: Connection, run_id: int) -> pd.DataFrame:
    """The per-expectation counts a run recorded (``finish_run``), as a frame like ``rules.merge_stats`` gives."""
    stats = conn.execute(select(review_runs.c.stats).where(review_runs.c.id == run_id)).scalar_one_or_none()
    return merge_stats([pd.DataFrame(json.loads(stats))] if stats else [])


# --- one order, the backlog, findings ---------------------------------------------------------------------------------


def order_by_ref(conn: Connection, ref: str | int):
    """The order row by id (digits) or order number, or None."""
    text = str(ref).strip()
    where = orders.c.id == int(text) if text.isdigit() else orders.c.order_no == text
    return conn.execute(select(orders).where(where)).mappings().first()


def latest_decision(conn: Connection, order_id: int):
    return conn.execute(select(review_decisions).where(review_decisions.c.order_id == order_id)
                        .order_by(review_decisions.c.id.desc()).limit(1)).mappings().first()  # fmt: skip


def decisions_of(conn: Connection, order_id: int) -> pd.DataFrame:
    """Every reviewer decision on an order, oldest first."""
    return read_frame(conn, select(review_decisions).where(review_decisions.c.order_id == order_id)
                      .order_by(review_decisions.c.id))  # fmt: skip


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
    return read_in(conn, lambda ids: select(
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

    return read_in(conn, stmt, list(order_ids))
