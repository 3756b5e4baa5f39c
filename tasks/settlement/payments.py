"""Matching payment lines to orders and what follows from it (A1): each unmatched line is tried against the orders
it could belong to (``tasks.settlement.match`` decides), the orders' payment states are recomputed with one
'payment' event per changed or newly paid order, and delivered orders paid in full become settled.

Only unmatched lines are matched and only changed states are written, so a rerun changes nothing.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection, bindparam, exists, select, text, update

from tasks.settlement.match import LINE_COLUMNS, match_lines, memo_tokens
from tasks.settlement.rules import payment_states
from tasks.settlement.store import in_list, order_payment_frame, order_payments
from yidi.bulk import drop_temp_tables, insert_rows, read_frame, temp_key_table
from yidi.lifecycle import OrderState, record_events, transition_orders
from yidi.schema import orders
from yidi.schema_aftersales import service_jobs
from yidi.schema_settlement import payment_lines, payment_matches
from yidi.settlement_policy import SettlementPolicy
from yidi.workdays import BUSINESS_TZ

ORDER_SELECT = (
    "SELECT o.id, o.order_no, o.channel_order_id, o.customer_id, o.customer_name, o.order_total_fen, "
    "o.order_time, o.state, o.payment_state, o.installments, o.payment_method FROM orders o"
)


def candidate_orders(
    conn: Connection, lines: pd.DataFrame, policy: SettlementPolicy
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The orders the unmatched ``lines`` could belong to (referenced by a number, or open for fuzzy matching),
    with ``outstanding_fen``, ``next_due_fen`` and ``due_time``; plus the invoices named in memos."""
    tokens = memo_tokens(lines, policy.memo_reference_pattern)
    keys = pd.concat(
        [
            lines["merchant_order_no"].dropna().astype(str),
            tokens["key"].astype(str),
            tokens["raw"].astype(str),
        ]
    )

    key_table = temp_key_table(conn, keys)
    try:
        referenced = read_frame(
            conn,
            f"{ORDER_SELECT} WHERE o.order_no IN (SELECT k FROM {key_table}) "
            f"UNION {ORDER_SELECT} WHERE o.channel_order_id IN (SELECT k FROM {key_table})",
        )
        invoices = read_frame(
            conn,
            f"SELECT invoice_no, order_id FROM receivables WHERE invoice_no IN (SELECT UPPER(k) FROM {key_table}) "
            f"OR invoice_no IN (SELECT k FROM {key_table})",
        )
    finally:
        drop_temp_tables(conn, key_table)
    parts = [referenced]
    if len(invoices):
        id_table = temp_key_table(conn, invoices["order_id"], "int")
        parts.append(read_frame(conn, f"{ORDER_SELECT} WHERE o.id IN (SELECT k FROM {id_table})"))
        drop_temp_tables(conn, id_table)
    fuzzy = lines[(lines["kind"] == "credit") & lines["payer_name"].notna()]
    if len(fuzzy):
        since = pd.to_datetime(fuzzy["txn_time"], utc=True).min() - pd.Timedelta(days=400)
        closed = in_list(sorted({"cancelled", "rejected", "auto_rejected", "returned", "closed"}))
        parts.append(
            read_frame(
                conn,
                text(
                    f"{ORDER_SELECT} WHERE o.payment_state IN ('unpaid', 'partly_paid') AND o.state NOT IN ({closed}) "
                    "AND o.order_time >= :since"
                ).bindparams(bindparam("since", type_=orders.c.order_time.type)),
                {"since": since.to_pydatetime()},
            )
        )
    frame = (
        pd.concat([p for p in parts if len(p)], ignore_index=True)
        if any(len(p) for p in parts)
        else referenced
    )
    frame = frame.drop_duplicates("id").reset_index(drop=True)
    if frame.empty:
        return frame.assign(outstanding_fen=[], next_due_fen=[], due_time=[]), invoices
    id_table = temp_key_table(conn, frame["id"], "int")
    try:
        sums = order_payments(conn, id_table)
        next_due = read_frame(
            conn,
            f"""SELECT order_id, due_date, outstanding_fen FROM receivables
                WHERE status = 'open' AND order_id IN (SELECT k FROM {id_table})""",
        )
    finally:
        drop_temp_tables(conn, id_table)
    frame = frame.merge(sums, left_on="id", right_on="order_id", how="left").drop(columns="order_id")
    frame[["paid_fen", "refunded_fen"]] = frame[["paid_fen", "refunded_fen"]].fillna(0).astype("int64")
    stated = payment_states(frame, policy)
    frame["outstanding_fen"] = np.maximum(stated["due_fen"] - stated["net_fen"], 0)
    if len(next_due):
        next_due = next_due.sort_values(["order_id", "due_date"]).drop_duplicates("order_id")
        frame = frame.merge(
            next_due.rename(columns={"outstanding_fen": "next_due_fen"}),
            left_on="id",
            right_on="order_id",
            how="left",
        )
        frame = frame.drop(columns="order_id")
    else:
        frame["next_due_fen"] = pd.NA
        frame["due_date"] = None
    # an instalment order without its ledger rows yet: the next instalment is its equal share (remainder first)
    n = frame["installments"].fillna(1).clip(lower=1).astype("int64")
    share = stated["due_fen"] // n + np.where(stated["net_fen"] <= 0, stated["due_fen"] % n, 0)
    fallback = np.minimum(frame["outstanding_fen"], share)
    frame["next_due_fen"] = (
        frame["next_due_fen"].fillna(pd.Series(fallback, index=frame.index)).astype("int64")
    )
    due = pd.to_datetime(frame["due_date"]).dt.tz_localize(BUSINESS_TZ)
    frame["due_time"] = due.dt.tz_convert("UTC")
    frame["order_time"] = pd.to_datetime(frame["order_time"], utc=True)
    return frame, invoices


def run_matching(
    conn: Connection, policy: SettlementPolicy, *, actor: str, now: datetime, at: datetime | None = None
) -> dict:
    """Match every unmatched line that can be matched now; returns counts and the orders touched. ``at``: a
    reconciliation as of a past day leaves lines dated after it for a later run."""
    stmt = select(*(payment_lines.c[c] for c in LINE_COLUMNS)).where(payment_lines.c.match_status == "unmatched")
    if at is not None:
        stmt = stmt.where(payment_lines.c.txn_time <= at)
    lines = read_frame(conn, stmt)
    if lines.empty:
        return {"candidates": 0, "matched_lines": 0, "ignored_lines": 0, "by_rule": {}, "order_ids": []}
    for column in (
        "source",
        "kind",
        "merchant_order_no",
        "provider_txn_id",
        "original_txn_id",
        "payer_name",
        "memo",
        "waybill_no",
    ):
        lines[column] = lines[column].astype("string")
    lines["txn_time"] = pd.to_datetime(lines["txn_time"], utc=True)
    candidates, invoices = candidate_orders(conn, lines, policy)
    waybills = lines.loc[lines["kind"] == "cod", "waybill_no"].dropna()
    shipments = None
    if len(waybills):
        table = temp_key_table(conn, waybills)
        shipments = read_frame(
            conn,
            f"SELECT carrier, waybill_no, order_id FROM shipments WHERE waybill_no IN (SELECT k FROM {table})",
        )
        drop_temp_tables(conn, table)
    originals = None
    refs = lines["original_txn_id"].dropna()
    if len(refs):
        table = temp_key_table(conn, refs)
        originals = read_frame(
            conn,
            f"""SELECT l.source, l.provider_txn_id, m.order_id FROM payment_lines l
                JOIN payment_matches m ON m.payment_line_id = l.id
                WHERE l.provider_txn_id IN (SELECT k FROM {table}) AND l.kind IN ('payment', 'credit', 'cod')""",
        )
        drop_temp_tables(conn, table)
    result = match_lines(
        lines, candidates, policy, shipments=shipments, invoices=invoices, originals=originals
    )
    matches = result.matches.assign(matched_at=now, actor=actor)
    if len(matches):
        insert_rows(conn, payment_matches, matches, on_conflict=["payment_line_id", "order_id"])
    status_rows = [{"lid": int(i), "st": "matched"} for i in pd.unique(result.matches["payment_line_id"])]
    status_rows += [{"lid": int(i), "st": "ignored"} for i in result.ignored["payment_line_id"]]
    if status_rows:
        conn.execute(
            update(payment_lines)
            .where(payment_lines.c.id == bindparam("lid"), payment_lines.c.match_status == "unmatched")
            .values(match_status=bindparam("st"), matched_at=now),
            status_rows,
        )
    summary = result.summary()
    summary["candidates"] = len(lines)
    summary["order_ids"] = sorted(int(i) for i in pd.unique(result.matches["order_id"]))
    summary["new_matches"] = result.matches
    return summary


def refresh_payment_states(
    conn: Connection,
    policy: SettlementPolicy,
    *,
    actor: str,
    now: datetime,
    new_matches: pd.DataFrame | None = None,
    at: datetime | None = None,
) -> dict:
    """Recompute every paid order's payment state (from payments dated up to ``at`` when given); changed ones are
    updated with one 'payment' event each, and orders with newly matched payments get an event even when their
    state stays."""
    frame = payment_states(order_payment_frame(conn, at), policy)
    changed = frame[frame["new_payment_state"] != frame["payment_state"]]
    if len(changed):
        conn.execute(
            update(orders)
            .where(orders.c.id == bindparam("oid"), orders.c.payment_state == bindparam("old"))
            .values(payment_state=bindparam("new"), updated_at=now, version=orders.c.version + 1),
            [
                {"oid": int(o), "old": old, "new": new}
                for o, old, new in zip(
                    changed["order_id"], changed["payment_state"], changed["new_payment_state"], strict=True
                )
            ],
        )
    new_matches = new_matches if new_matches is not None else pd.DataFrame(columns=["order_id"])
    touched = set(changed["order_id"].tolist()) | set(new_matches["order_id"].tolist())
    if touched:
        events = frame[frame["order_id"].isin(touched)]
        lines_by_order: dict[int, list[dict]] = {}
        if len(new_matches):
            for order_id, line_id, amount, rule, score in zip(
                new_matches["order_id"].tolist(), new_matches["payment_line_id"].tolist(),
                new_matches["amount_fen"].tolist(), new_matches["rule"].tolist(), new_matches["score"].tolist(),
                strict=True,
            ):  # fmt: skip
                lines_by_order.setdefault(int(order_id), []).append(
                    {
                        "payment_line_id": int(line_id),
                        "amount_fen": int(amount),
                        "rule": str(rule),
                        "score": float(score),
                    }
                )
        details, reasons = [], []
        columns = ["order_id", "payment_state", "new_payment_state", "paid_fen", "refunded_fen", "due_fen",
                   "counted_in_import_fen"]  # fmt: skip
        for order_id, old, new, paid, refunded, due, in_import in zip(
            *(events[c].tolist() for c in columns), strict=True
        ):
            reason = f"payment state {old} → {new}" if new != old else f"payment matched ({new})"
            if in_import:  # the old system's payment seen again in a bill: matched, not counted twice
                reason += f"; {in_import / 100:.2f} yuan already counted as paid before the import"
            reasons.append(reason)
            details.append(
                {"from": old, "to": new, "paid_fen": int(paid), "refunded_fen": int(refunded), "due_fen": int(due),
                 "counted_in_import_fen": int(in_import), "new_lines": lines_by_order.get(int(order_id), [])}
            )  # fmt: skip
        record_events(
            conn,
            pd.DataFrame(
                {
                    "order_id": events["order_id"].astype("int64").to_numpy(),
                    "kind": "payment",
                    "reason": reasons,
                    "details": details,
                    "actor": actor,
                    "occurred_at": now,
                }
            ),  # fmt: skip
        )
    counts = frame["new_payment_state"].value_counts().to_dict()
    return {
        "changed": len(changed),
        "events": len(touched),
        "by_state": {k: int(v) for k, v in counts.items()},
    }


def settle_paid_orders(conn: Connection, *, actor: str) -> dict:
    """Delivered orders that are fully paid become settled (lifecycle transition with its event), once their
    service jobs (installation, commissioning…; ``service_jobs``, S2) are done too: goods and services both."""
    open_job = exists().where(service_jobs.c.order_id == orders.c.id, service_jobs.c.status != "done")
    ids = [
        row.id
        for row in conn.execute(
            select(orders.c.id).where(
                orders.c.state == OrderState.DELIVERED, orders.c.payment_state == "paid", ~open_job
            )
        )
    ]
    if not ids:
        return {"settled": 0}
    outcome = transition_orders(
        conn, ids, OrderState.SETTLED, actor=actor, reason="fully paid and delivered (settlement reconciliation)",
        skip_illegal=True,
    )  # fmt: skip
    return {"settled": len(outcome.moved), "skipped": len(outcome.skipped)}
