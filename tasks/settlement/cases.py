"""Discrepancy cases (A1, A2): the conditions that hold now (``tasks.settlement.discrepancies`` decides from the
store's facts), synced into cases with an owner and a history: new ones opened, changed open ones updated,
cleared ones resolved by the system, ones the system had resolved reopened when the condition is back. A case a
person resolved stays resolved whatever the data says; people explain, resolve, reopen and reassign cases here.
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection, bindparam, select, text, update

from tasks.settlement.discrepancies import (
    CASE_COLUMNS,
    awaiting_bills,
    cod_cases,
    duplicate_payments,
    fee_cases,
    line_cases,
    order_cases,
)
from tasks.settlement.rules import REFUND_REASON_STATES, cod_due_dates, payment_states
from tasks.settlement.store import TIME, bill_days, in_list, order_payment_frame
from yidi.bulk import drop_temp_tables, insert_rows, read_frame, temp_key_table, utc_now
from yidi.lifecycle import current_actor
from yidi.money import decimal_to_fen
from yidi.schema_settlement import payment_lines, settlement_case_events, settlement_cases
from yidi.settings import Settings
from yidi.settlement_policy import SettlementPolicy
from yidi.workdays import BUSINESS_TZ

CASE_STATUSES = ("open", "explained", "resolved")
SYSTEM = "system"  # the actor of automatic changes; a case resolved by anyone else stays resolved


LEDGER_SELECT = """SELECT r.order_id, r.due_date, r.amount_fen, r.status, r.payment_terms, o.order_no, o.customer_id,
                  o.state, o.order_total_fen, o.installments, o.payment_method, o.order_time
           FROM receivables r JOIN orders o ON o.id = r.order_id"""


def _ledger(conn: Connection, plan: pd.DataFrame | None) -> pd.DataFrame:
    """Receivable rows with their orders' columns: the stored ledger, or ``plan`` (a ledger computed as of a past
    day and not written)."""
    # COD money is owed by the carrier once delivered: that is a cod_not_remitted case, not the customer's debt
    if plan is None:
        return read_frame(conn, f"{LEDGER_SELECT} WHERE r.status <> 'void' AND r.payment_terms <> 'cod'")
    rows = plan[(plan["status"] != "void") & (plan["payment_terms"] != "cod")]
    table = temp_key_table(conn, rows["order_id"], "int")
    found = read_frame(
        conn,
        f"""SELECT o.id AS order_id, o.order_no, o.customer_id, o.state, o.order_total_fen, o.installments,
                   o.payment_method, o.order_time FROM orders o WHERE o.id IN (SELECT k FROM {table})""",
    )
    drop_temp_tables(conn, table)
    return rows[["order_id", "due_date", "amount_fen", "status", "payment_terms"]].merge(found, on="order_id")


def current_conditions(
    conn: Connection, settings: Settings, *, today: date, now: datetime, new_line_ids: list[int],
    at: datetime | None = None, plan: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, set | None]]:  # fmt: skip
    """Every discrepancy that holds now, and per class the subjects evaluated (None = all of them).

    ``at``: as of that moment (facts dated later are left out); ``plan``: the ledger as of then, when it was
    computed and not written (a past close re-run after later reconciliations)."""
    policy = settings.settlement
    paid = payment_states(order_payment_frame(conn, at), policy)
    ledger = _ledger(conn, plan)
    if len(ledger):
        due_dates = pd.to_datetime(ledger["due_date"])
        ledger["due_now_fen"] = np.where(
            due_dates.notna() & (due_dates <= pd.Timestamp(today)), ledger["amount_fen"], 0
        )
        per_order = ledger.groupby("order_id").agg(
            order_no=("order_no", "first"), customer_id=("customer_id", "first"), state=("state", "first"),
            order_total_fen=("order_total_fen", "first"), installments=("installments", "first"),
            due_so_far_fen=("due_now_fen", "sum"), first_due_date=("due_date", "min"),
            payment_terms=("payment_terms", "first"), payment_method=("payment_method", "first"),
            order_time=("order_time", "first"),
        ).reset_index()  # fmt: skip
        order_date = pd.to_datetime(per_order["order_time"], utc=True).dt.tz_convert(BUSINESS_TZ).dt.date
        per_order["awaiting_bills"] = awaiting_bills(
            per_order.assign(order_date=order_date), bill_days(conn), policy
        )
    else:
        per_order = pd.DataFrame(columns=["order_id", "order_no", "customer_id", "state", "order_total_fen",
                                          "installments", "due_so_far_fen", "first_due_date",
                                          "awaiting_bills"])  # fmt: skip
    summary = per_order.merge(paid[["order_id", "paid_fen", "refunded_fen"]], on="order_id", how="outer")
    missing = summary["order_no"].isna()
    if missing.any():
        extra = paid.set_index("order_id").loc[summary.loc[missing, "order_id"]]
        for column in ("order_no", "customer_id", "state", "order_total_fen", "installments"):
            summary.loc[missing, column] = extra[column].to_numpy()
    summary[["paid_fen", "refunded_fen"]] = summary[["paid_fen", "refunded_fen"]].fillna(0).astype("int64")
    summary["order_total_fen"] = summary["order_total_fen"].astype("int64")
    summary = payment_states(summary, policy)
    # orders paid outside a receivable (e.g. before review): the whole amount was due when they paid
    summary["due_so_far_fen"] = (
        summary["due_so_far_fen"].where(~missing, summary["due_fen"]).fillna(0).astype("int64")
    )
    refunded_ids = summary.loc[summary["refunded_fen"] > 0, "order_id"].tolist()
    returned = set(summary.loc[summary["state"].isin(REFUND_REASON_STATES), "order_id"])
    if refunded_ids:
        table = temp_key_table(conn, refunded_ids, "int")
        history = read_frame(
            conn,
            f"""SELECT DISTINCT order_id FROM order_events WHERE kind IN ('state', 'imported')
                AND to_state IN ({in_list(sorted(REFUND_REASON_STATES))}) AND order_id IN (SELECT k FROM {table})""",
        )
        # A refund the after-sales area decided (a case with a refund request) is explained too (A3).
        with_case = read_frame(
            conn, f"SELECT DISTINCT order_id FROM refund_requests WHERE order_id IN (SELECT k FROM {table})"
        )
        drop_temp_tables(conn, table)
        returned |= set(history["order_id"]) | set(with_case["order_id"])
    summary["has_return"] = summary["order_id"].isin(returned)
    summary["customer_id"] = summary["customer_id"].astype("Int64")

    suspicious = summary[summary["net_fen"] > summary["due_fen"] + summary["tolerance_fen"]][
        "order_id"
    ].tolist()
    duplicates = pd.DataFrame(columns=["order_id", "duplicate_lines", "duplicate_fen", "line_ids"])
    if suspicious:
        table = temp_key_table(conn, suspicious, "int")
        matched = read_frame(
            conn,
            f"""SELECT m.order_id, m.payment_line_id, m.amount_fen FROM payment_matches m
                WHERE m.amount_fen > 0 AND m.order_id IN (SELECT k FROM {table})""",
        )
        drop_temp_tables(conn, table)
        totals = summary[["order_id", "order_total_fen", "installments"]]
        duplicates = duplicate_payments(matched, totals, policy)
    parts = [order_cases(summary, duplicates, policy, today)]

    unmatched = select(
        payment_lines.c.id,
        payment_lines.c.source,
        payment_lines.c.line_key,
        payment_lines.c.amount_fen,
        payment_lines.c.txn_time,
        payment_lines.c.payer_name,
        payment_lines.c.memo,
        payment_lines.c.merchant_order_no,
    ).where(payment_lines.c.match_status == "unmatched")
    unmatched = read_frame(conn, unmatched if at is None else unmatched.where(payment_lines.c.txn_time <= at))
    if len(unmatched):
        parts.append(line_cases(unmatched, now, policy))

    scopes: dict[str, set | None] = {
        c: None
        for c in ("unpaid_past_terms", "short_paid", "overpaid", "duplicate_payment", "payment_without_order",
                  "refund_without_return", "cod_not_remitted")
    }  # fmt: skip
    scopes["fee_mismatch"] = set()
    if new_line_ids:
        table = temp_key_table(conn, new_line_ids, "int")
        fresh = read_frame(
            conn,
            f"""SELECT id, source, provider_txn_id, amount_fen, fee_fen FROM payment_lines
                WHERE id IN (SELECT k FROM {table})""",
        )
        drop_temp_tables(conn, table)
        cod_contracts = {
            code: (card.cod_fee_pct / 100, decimal_to_fen(card.cod_min_yuan))
            for code, card in settings.fulfilment.rate_cards.items()
            if card.cod
        }
        parts.append(fee_cases(fresh, policy, cod_contracts))
        scopes["fee_mismatch"] = {f"fee_mismatch:line:{i}" for i in fresh["id"]}

    remitted = "AND l.txn_time <= :at" if at is not None else ""
    delivered = "AND s.delivered_at <= :at" if at is not None else ""
    shipments_due = text(
        f"""SELECT s.id AS shipment_id, s.order_id, s.carrier, s.waybill_no, s.cod_amount_fen, s.delivered_at,
                   o.order_no, o.customer_id
            FROM shipments s JOIN orders o ON o.id = s.order_id
            WHERE s.cod_amount_fen > 0 AND s.delivered_at IS NOT NULL {delivered}
              AND NOT EXISTS (SELECT 1 FROM payment_lines l WHERE l.kind = 'cod' AND l.waybill_no = s.waybill_no
                              {remitted})"""
    )
    if at is not None:
        shipments_due = shipments_due.bindparams(bindparam("at", type_=TIME))
    shipments_due = read_frame(conn, shipments_due, {"at": at} if at is not None else None)
    if len(shipments_due):
        shipments_due["delivered_date"] = (
            pd.to_datetime(shipments_due["delivered_at"], utc=True).dt.tz_convert(BUSINESS_TZ).dt.date
        )
        due = cod_due_dates(
            shipments_due.set_index("shipment_id")["delivered_date"], policy.cod_remittance_working_days
        )
        shipments_due["remit_due_date"] = shipments_due["shipment_id"].map(due)
        late = shipments_due[shipments_due["remit_due_date"] < today]
        parts.append(cod_cases(late))
    conditions = (
        pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    )
    return conditions, scopes


def sync_cases(
    conn: Connection,
    conditions: pd.DataFrame,
    scopes: dict[str, set | None],
    policy: SettlementPolicy,
    *,
    now: datetime,
    actor: str,
) -> dict:
    """Open new cases, update changed open ones, auto-resolve cleared ones, reopen cases the system had resolved.
    A case a person resolved stays resolved whatever the data says."""
    existing = read_frame(
        conn,
        select(
            settlement_cases.c.id,
            settlement_cases.c.case_key,
            settlement_cases.c.case_class,
            settlement_cases.c.status,
            settlement_cases.c.resolved_by,
            settlement_cases.c.amount_fen,
            settlement_cases.c.summary,
        ),
    )
    conditions = conditions.drop_duplicates("case_key")
    known = existing.set_index("case_key") if len(existing) else pd.DataFrame(
        columns=["id", "case_class", "status", "resolved_by", "amount_fen", "summary"]
    )  # fmt: skip
    present = conditions["case_key"].isin(known.index)
    new = conditions[~present]
    history: list[dict] = []
    counts = {"opened": 0, "updated": 0, "auto_resolved": 0, "reopened": 0}
    if len(new):
        rows = new[CASE_COLUMNS].assign(
            status="open", owner=new["case_class"].map(policy.owner_for), opened_at=now, updated_at=now
        )
        insert_rows(conn, settlement_cases, rows, on_conflict=["case_key"])
        ids = read_frame(conn, select(settlement_cases.c.id, settlement_cases.c.case_key).where(
            settlement_cases.c.case_key.in_(new["case_key"].tolist())
        )) if len(new) <= 5000 else read_frame(conn, select(settlement_cases.c.id, settlement_cases.c.case_key))  # fmt: skip
        ids = ids[ids["case_key"].isin(set(new["case_key"]))]
        history += [{"case_id": int(i), "action": "opened", "from_status": None, "to_status": "open",
                     "note": s} for i, s in zip(ids["id"], new.set_index("case_key").loc[ids["case_key"], "summary"],
                                                strict=True)]  # fmt: skip
        counts["opened"] = len(new)
    if present.any():
        seen = conditions[present].merge(known.reset_index(), on="case_key", suffixes=("", "_old"))
        active = seen[seen["status"].isin(["open", "explained"])]
        changed = active[
            (active["amount_fen"] != active["amount_fen_old"]) | (active["summary"] != active["summary_old"])
        ]
        for row in changed.itertuples(index=False):
            conn.execute(
                update(settlement_cases)
                .where(settlement_cases.c.id == row.id)
                .values(
                    amount_fen=int(row.amount_fen), summary=row.summary, details=row.details, updated_at=now
                )
            )
            history.append({"case_id": int(row.id), "action": "updated", "from_status": row.status,
                            "to_status": row.status, "note": row.summary})  # fmt: skip
        counts["updated"] = len(changed)
        reopen = seen[(seen["status"] == "resolved") & (seen["resolved_by"] == SYSTEM)]
        for row in reopen.itertuples(index=False):
            conn.execute(
                update(settlement_cases).where(settlement_cases.c.id == row.id).values(
                    status="open", resolved_at=None, resolved_by=None, resolution=None, amount_fen=int(row.amount_fen),
                    summary=row.summary, details=row.details, updated_at=now,
                )
            )  # fmt: skip
            history.append({"case_id": int(row.id), "action": "reopened", "from_status": "resolved",
                            "to_status": "open", "note": f"the condition is back: {row.summary}"})  # fmt: skip
        counts["reopened"] = len(reopen)
    if len(existing):
        active = existing[
            existing["status"].isin(["open", "explained"])
            & ~existing["case_key"].isin(set(conditions["case_key"]))
        ]
        global_classes = [c for c, subjects in scopes.items() if subjects is None]
        scoped_keys = set().union(*(subjects for subjects in scopes.values() if subjects))
        in_scope = active["case_class"].isin(global_classes) | active["case_key"].isin(scoped_keys)
        cleared = active[in_scope.to_numpy()]
        if len(cleared):
            resolution = (
                f"condition cleared by reconciliation on {now.astimezone(BUSINESS_TZ):%Y-%m-%d %H:%M}"
            )
            conn.execute(
                update(settlement_cases)
                .where(settlement_cases.c.id == bindparam("cid"))
                .values(
                    status="resolved",
                    resolved_at=now,
                    resolved_by=SYSTEM,
                    resolution=resolution,
                    updated_at=now,
                ),
                [{"cid": int(i)} for i in cleared["id"]],
            )
            history += [{"case_id": int(i), "action": "resolved", "from_status": s, "to_status": "resolved",
                         "note": resolution} for i, s in zip(cleared["id"], cleared["status"], strict=True)]  # fmt: skip
            counts["auto_resolved"] = len(cleared)
    if history:
        insert_rows(conn, settlement_case_events, pd.DataFrame(history).assign(occurred_at=now, actor=actor))
    return counts


def _case_row(conn: Connection, case_id: int):
    row = conn.execute(select(settlement_cases).where(settlement_cases.c.id == case_id)).first()
    if row is None:
        raise KeyError(f"no settlement case {case_id}")
    return row


def change_case(
    conn: Connection, case_id: int, *, to_status: str | None = None, owner: str | None = None, note: str,
    actor: str | None = None,
) -> dict:  # fmt: skip
    """A person explains, resolves, reopens or reassigns a case; every change is kept in its history."""
    if to_status is not None and to_status not in CASE_STATUSES:
        raise ValueError(f"status must be one of {CASE_STATUSES}")
    if not note or not note.strip():
        raise ValueError("say why: a note is required")
    actor = actor or current_actor()
    now = utc_now()
    row = _case_row(conn, case_id)
    values: dict = {"updated_at": now}
    action = "assigned"
    if owner:
        values["owner"] = owner
    if to_status and to_status != row.status:
        values["status"] = to_status
        action = {"explained": "explained", "resolved": "resolved", "open": "reopened"}[to_status]
        if to_status == "resolved":
            values.update(resolved_at=now, resolved_by=actor, resolution=note)
        else:
            values.update(resolved_at=None, resolved_by=None, resolution=None)
    conn.execute(update(settlement_cases).where(settlement_cases.c.id == case_id).values(**values))
    insert_rows(
        conn, settlement_case_events,
        pd.DataFrame([{"case_id": case_id, "occurred_at": now, "actor": actor, "action": action,
                       "from_status": row.status, "to_status": values.get("status", row.status),
                       "note": note + (f" (owner → {owner})" if owner else "")}]),
    )  # fmt: skip
    return {
        "case_id": case_id,
        "status": values.get("status", row.status),
        "owner": values.get("owner", row.owner),
    }
