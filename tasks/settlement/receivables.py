"""The receivables ledger (K2) and the dunning ladder (A2): every accepted order's instalments with terms, due date,
paid (FIFO) and outstanding amounts, rewritten only where the plan changed; and each overdue party's due dunning
step, taken once per overdue episode, with its customer notices and internal escalation queued in the outbox.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
from sqlalchemy import Connection, select

from tasks.settlement.rules import (
    RECEIVABLE_STATES,
    cod_due_dates,
    dunning_notices,
    payment_states,
    plan_dunning,
    plan_receivables,
)
from tasks.settlement.store import in_list, order_payments, overdue_receivables
from yidi.bulk import insert_rows, read_frame
from yidi.outbox import enqueue
from yidi.schema_settlement import dunning_actions, receivables
from yidi.settings import Settings
from yidi.settlement_policy import SettlementPolicy
from yidi.workdays import BUSINESS_TZ


def ledger_plan(conn: Connection, policy: SettlementPolicy, *, at: datetime | None = None) -> pd.DataFrame:
    """The receivables ledger as it should be (``plan_receivables`` over every accepted order), as of ``at`` when
    given: orders placed later are left out, shipments and deliveries after it have not happened, payments dated
    after it are not counted. Imported orders bring the terms and due date their old system agreed."""
    states = in_list(sorted(RECEIVABLE_STATES))
    frame = read_frame(
        conn,
        f"""SELECT o.id, o.customer_id, o.state, o.order_total_fen, o.payment_method, o.installments, o.order_time,
                   c.payment_terms AS customer_terms, c.net_days AS customer_net_days,
                   s.shipped_at, s.delivered_at, i.payment_terms AS import_terms, i.net_days AS import_net_days,
                   i.due_date AS import_due_date
            FROM orders o
            LEFT JOIN customers c ON c.id = o.customer_id
            LEFT JOIN order_imports i ON i.order_id = o.id
            LEFT JOIN (SELECT order_id, MIN(shipped_at) AS shipped_at, MAX(delivered_at) AS delivered_at
                       FROM shipments GROUP BY order_id) s ON s.order_id = o.id
            WHERE o.state IN ({states}) OR o.id IN (SELECT order_id FROM receivables)""",
    )
    if at is not None and len(frame):
        frame = frame[~(pd.to_datetime(frame["order_time"], utc=True) > at)].reset_index(drop=True)
        for column in ("shipped_at", "delivered_at"):
            stamps = pd.to_datetime(frame[column], utc=True)
            frame[column] = stamps.where(~(stamps > at))
    if frame.empty:
        return plan_receivables(frame, policy)
    sums = order_payments(conn, at=at)
    frame = frame.merge(sums, left_on="id", right_on="order_id", how="left").drop(columns="order_id")
    frame[["paid_fen", "refunded_fen"]] = frame[["paid_fen", "refunded_fen"]].fillna(0).astype("int64")
    frame = payment_states(frame, policy)
    for column, source in (
        ("order_date", "order_time"),
        ("shipped_date", "shipped_at"),
        ("delivered_date", "delivered_at"),
    ):
        stamps = pd.to_datetime(frame[source], utc=True)
        frame[column] = stamps.dt.tz_convert(BUSINESS_TZ).dt.date.astype(object).where(stamps.notna(), None)
    cod = frame.loc[frame["payment_method"] == "cod"].set_index("id")["delivered_date"]
    return plan_receivables(
        frame, policy, cod_due_dates=cod_due_dates(cod, policy.cod_remittance_working_days)
    )


def refresh_receivables(
    conn: Connection, policy: SettlementPolicy, *, now: datetime, at: datetime | None = None
) -> dict:
    """Rebuild the ledger plan for accepted orders (as of ``at``) and write the rows that changed."""
    plan = ledger_plan(conn, policy, at=at)
    if plan.empty and not conn.execute(select(receivables.c.id).limit(1)).first():
        return {"receivables": 0, "written": 0}
    existing = read_frame(
        conn,
        select(
            receivables.c.order_id,
            receivables.c.installment_no,
            receivables.c.customer_id,
            receivables.c.payment_terms,
            receivables.c.due_date,
            receivables.c.amount_fen,
            receivables.c.paid_fen,
            receivables.c.outstanding_fen,
            receivables.c.status,
        ),
    )
    compare = [
        "customer_id",
        "payment_terms",
        "due_date",
        "amount_fen",
        "paid_fen",
        "outstanding_fen",
        "status",
    ]
    keys = ["order_id", "installment_no"]
    if len(existing):
        stale = existing.merge(plan[keys], on=keys, how="left", indicator=True)
        stale = stale[(stale["_merge"] == "left_only") & (stale["status"] != "void")].drop(columns="_merge")
        stale = stale.assign(status="void", outstanding_fen=0)
        plan = pd.concat([plan, stale[plan.columns]], ignore_index=True)
        merged = plan.merge(existing, on=keys, how="left", suffixes=("", "_old"), indicator=True)
        differs = merged["_merge"] == "left_only"
        for column in compare:
            new, old = merged[column].astype(object), merged[column + "_old"].astype(object)
            differs |= ~((new == old) | (pd.isna(new) & pd.isna(old)))
        plan = plan[differs.to_numpy()]
    if len(plan):
        plan = plan.assign(updated_at=now)
        plan["customer_id"] = plan["customer_id"].astype("Int64")
        insert_rows(conn, receivables, plan, on_conflict=keys, update_columns=[*compare, "updated_at"])
    return {"receivables": int(len(existing)) if len(existing) else len(plan), "written": len(plan)}


def take_dunning_steps(
    conn: Connection, settings: Settings, *, today: date, now: datetime, actor: str
) -> dict:
    """Take each overdue party's due step once: record it and queue its notices (customer and internal)."""
    policy = settings.settlement
    overdue = overdue_receivables(conn, today, policy)
    if overdue.empty:
        return {"overdue_parties": 0, "actions": 0, "notices": 0}
    taken = set(read_frame(conn, select(dunning_actions.c.dedupe_key))["dedupe_key"])
    actions = plan_dunning(overdue, policy, today, taken)
    if actions.empty:
        return {"overdue_parties": int(overdue["party_key"].nunique()), "actions": 0, "notices": 0}
    notices = dunning_notices(actions, policy, settings.general.company_name, today)
    queued = enqueue(conn, notices) if len(notices) else 0
    per_action = notices.assign(key=notices["dedupe_key"].str.rsplit(":", n=1).str[0]).groupby("key").size()
    rows = actions.assign(
        notices=actions["dedupe_key"].map(per_action).fillna(0).astype("int64"), taken_at=now, actor=actor,
        customer_id=actions["customer_id"].astype("Int64"),
    )[["dedupe_key", "party_key", "customer_id", "order_id", "step_no", "step_name", "overdue_fen", "days_overdue",
       "oldest_due_date", "notices", "taken_at", "actor"]]  # fmt: skip
    insert_rows(conn, dunning_actions, rows, on_conflict=["dedupe_key"])
    return {
        "overdue_parties": int(overdue["party_key"].nunique()),
        "actions": len(actions),
        "notices": int(queued),
    }
