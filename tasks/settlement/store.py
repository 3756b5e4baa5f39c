"""Settlement's SQL helpers and shared reads (A1, K2): temporary key tables for joins, what each order has been paid,
the orders with payments, overdue receivables, the moment a reconciliation is computed for. The step modules (``files``, ``payments``, ``receivables``,
``cases``) use them inside the transaction they are given.
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection, bindparam, func, select, text

from tasks.settlement.discrepancies import awaiting_bills
from yidi.bulk import read_frame
from yidi.schema_settlement import payment_lines, provider_bill_days, receivables, settlement_runs
from yidi.settlement_policy import SettlementPolicy
from yidi.workdays import BUSINESS_TZ

TIME = payment_lines.c.txn_time.type


def in_list(values) -> str:
    """Constant SQL text for an IN list of our own state names (never user input)."""
    return ", ".join(f"'{v}'" for v in values)


def order_payments(conn: Connection, id_table: str | None = None, at: datetime | None = None) -> pd.DataFrame:
    """paid_fen / refunded_fen per order (all orders, or those in ``id_table``): the matched payment lines (dated
    up to ``at`` when given: a reconciliation as of a past day counts nothing paid after it) and what was paid in
    the old system before an order was imported (``order_imports.paid_fen``).

    Nothing is counted twice: an imported order's old-system payment and a provider or bank line for it dated up
    to the import (its cut-over, ``order_imports.imported_at``) are the same money seen twice, so of the two the
    larger counts (``max(imported, lines before cut-over)``); lines dated after the import are new money. The
    part not counted again is ``counted_in_import_fen`` (shown in the order's payment event)."""
    only = f"AND m.order_id IN (SELECT k FROM {id_table})" if id_table else ""
    dated = "AND l.txn_time <= :at" if at else ""
    before = "i.order_id IS NOT NULL AND l.txn_time <= i.imported_at"
    stmt = text(
        f"""SELECT m.order_id,
                   SUM(CASE WHEN m.amount_fen > 0 AND {before} THEN m.amount_fen ELSE 0 END) AS before_import_fen,
                   SUM(CASE WHEN m.amount_fen > 0 AND NOT ({before}) THEN m.amount_fen ELSE 0 END) AS lines_fen,
                   SUM(CASE WHEN m.amount_fen < 0 THEN -m.amount_fen ELSE 0 END) AS refunded_fen
            FROM payment_matches m JOIN payment_lines l ON l.id = m.payment_line_id
            LEFT JOIN order_imports i ON i.order_id = m.order_id AND i.paid_fen > 0
            WHERE 1 = 1 {dated} {only} GROUP BY m.order_id"""
    )
    lines = read_frame(conn, stmt.bindparams(bindparam("at", type_=TIME)), {"at": at}) if at else read_frame(conn, stmt)
    imported = read_frame(
        conn,
        "SELECT order_id, paid_fen AS imported_fen FROM order_imports WHERE paid_fen > 0"
        + (f" AND order_id IN (SELECT k FROM {id_table})" if id_table else ""),
    )
    frame = lines.merge(imported, on="order_id", how="outer")
    counts = ["before_import_fen", "lines_fen", "refunded_fen", "imported_fen"]
    frame[counts] = frame[counts].fillna(0).astype("int64")
    frame["order_id"] = frame["order_id"].astype("int64")
    frame["paid_fen"] = np.maximum(frame["imported_fen"], frame["before_import_fen"]) + frame["lines_fen"]
    frame["counted_in_import_fen"] = np.minimum(frame["imported_fen"], frame["before_import_fen"])
    return frame[["order_id", "paid_fen", "refunded_fen", "counted_in_import_fen"]]


def order_payment_frame(conn: Connection, at: datetime | None = None) -> pd.DataFrame:
    """Orders with any payment (or a payment state to undo), with paid/refunded sums (as of ``at``)."""
    sums = order_payments(conn, at=at)
    frame = read_frame(
        conn,
        """SELECT o.id AS order_id, o.order_no, o.customer_id, o.state, o.payment_state, o.order_total_fen,
                  o.installments
           FROM orders o
           WHERE o.id IN (SELECT order_id FROM payment_matches) OR o.payment_state <> 'unpaid'
              OR o.id IN (SELECT order_id FROM order_imports WHERE paid_fen > 0)""",
    )
    frame = frame.merge(sums, on="order_id", how="left")
    counts = ["paid_fen", "refunded_fen", "counted_in_import_fen"]
    frame[counts] = frame[counts].fillna(0).astype("int64")
    return frame


def overdue_receivables(conn: Connection, today: date, policy: SettlementPolicy | None = None) -> pd.DataFrame:
    """Open receivables past due (COD excepted: the carrier owes those), with contacts and a ``party_key`` per
    customer (or per order without a customer): the dunning ladder's input. With ``policy``, prepaid online orders
    whose provider bills are not all in yet are left out (nobody is reminded of a payment the next bill shows)."""
    frame = read_frame(
        conn,
        text(
            """SELECT r.order_id, r.customer_id, r.outstanding_fen, r.due_date, r.payment_terms, o.order_no,
                      o.payment_method, o.order_time,
                      COALESCE(c.name, o.customer_name) AS customer_name,
                      COALESCE(c.email, o.customer_email) AS email, COALESCE(c.phone, o.customer_phone) AS phone
               FROM receivables r JOIN orders o ON o.id = r.order_id LEFT JOIN customers c ON c.id = r.customer_id
               WHERE r.status = 'open' AND r.outstanding_fen > 0 AND r.due_date < :today
                 AND r.payment_terms <> 'cod'"""
        ).bindparams(bindparam("today", type_=receivables.c.due_date.type)),
        {"today": today},
    )
    if frame.empty:
        return frame.assign(party_key=pd.Series(dtype="string"))
    frame["party_key"] = np.where(
        frame["customer_id"].notna(),
        "customer:" + frame["customer_id"].astype("Int64").astype("string"),
        "order:" + frame["order_id"].astype("string"),
    )
    frame["due_date"] = pd.to_datetime(frame["due_date"]).dt.date
    if policy is not None:
        frame = frame[~awaiting_bills(with_order_dates(frame), bill_days(conn), policy).to_numpy()]
    return frame.reset_index(drop=True)


def with_order_dates(frame: pd.DataFrame) -> pd.DataFrame:
    """``awaiting_bills``' input from receivable rows: order_date (Asia/Shanghai) and first_due_date per order."""
    order_date = pd.to_datetime(frame["order_time"], utc=True).dt.tz_convert(BUSINESS_TZ).dt.date
    first_due = frame.groupby("order_id")["due_date"].transform("min")
    return frame.assign(order_date=order_date, first_due_date=first_due)


def bill_days(conn: Connection) -> pd.DataFrame:
    """The provider bill days received (source, account, bill_day)."""
    return read_frame(
        conn, select(provider_bill_days.c.source, provider_bill_days.c.account, provider_bill_days.c.bill_day)
    )


def new_line_ids_since(conn: Connection, since: datetime) -> list[int]:
    """Payment lines stored since ``since`` (this run's new lines: their fees are checked against the contracts)."""
    rows = conn.execute(select(payment_lines.c.id).where(payment_lines.c.ingested_at >= since)).scalars()
    return [int(i) for i in rows]


def latest_as_of(conn: Connection) -> datetime | None:
    """The latest moment a reconciliation has brought the store to (its payment states, ledger and cases)."""
    value = conn.execute(select(func.max(settlement_runs.c.as_of))).scalar()
    return None if value is None else pd.Timestamp(value).tz_convert("UTC").to_pydatetime()


def fee_case_line_ids(conn: Connection, at: datetime) -> list[int]:
    """Payment lines dated up to ``at`` that have a fee case: a report as of a past day checks their fees again
    (fees are checked once, when a line arrives, so only these can hold a fee discrepancy)."""
    frame = read_frame(
        conn,
        text(
            """SELECT l.id FROM payment_lines l JOIN settlement_cases c ON c.payment_line_id = l.id
               WHERE c.case_class = 'fee_mismatch' AND l.txn_time <= :at"""
        ).bindparams(bindparam("at", type_=TIME)),
        {"at": at},
    )
    return [int(i) for i in frame["id"]]
