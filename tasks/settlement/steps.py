"""Settlement reconciliation against the order store (A1, A2, K2): ingest payment files, match lines to orders,
advance order payment states, keep the receivables ledger, track discrepancy cases and take dunning steps.

Each step is a plain function over a SQLAlchemy connection (testable without Prefect); ``flows/settle.py``
wraps them as tasks. Matching rules live in ``tasks.settlement.match``, the business rules in ``tasks.settlement.rules``.

Idempotency: a file already ingested (same content hash) is skipped; a line already known (same source and
line identity) is not inserted again; only unmatched lines are matched; receivables and cases are written only
where something changed. Running twice on the same files and period therefore changes nothing.
"""

from __future__ import annotations

import io
import itertools
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, select, text, update

from connectors.payment_files.alipay import parse_alipay_bill
from connectors.payment_files.bank_statement import detect_template, parse_bank_statement
from connectors.payment_files.cod_remittance import CARRIER_NAMES, parse_cod_remittance
from connectors.payment_files.common import PaymentFileError, file_hash, normalise_text, read_source
from connectors.payment_files.wechatpay import parse_wechatpay_bill
from tasks.settlement.match import LINE_COLUMNS, match_lines, memo_tokens
from tasks.settlement.rules import (
    CASE_COLUMNS,
    RECEIVABLE_STATES,
    REFUND_REASON_STATES,
    cod_cases,
    dunning_notices,
    duplicate_payments,
    fee_cases,
    line_cases,
    order_cases,
    payment_states,
    plan_dunning,
    plan_receivables,
)
from yidi.bulk import insert_rows, read_frame, utc_now
from yidi.lifecycle import OrderState, current_actor, record_events, transition_orders
from yidi.outbox import enqueue
from yidi.schema import orders
from yidi.schema_settlement import (
    dunning_actions,
    payment_lines,
    payment_matches,
    receivables,
    settlement_case_events,
    settlement_cases,
    statement_files,
)
from yidi.settings import Settings, get_settings, yidi_home
from yidi.settlement_policy import SettlementPolicy
from yidi.workdays import BUSINESS_TZ, add_working_days

CASE_STATUSES = ("open", "explained", "resolved")
SYSTEM = "system"
_temp_counter = itertools.count()


class ReconciliationFailed(RuntimeError):
    """A reconciliation finished its work but some files were refused; the message lists them."""


def business_today(now: datetime | None = None) -> date:
    return (now or utc_now()).astimezone(BUSINESS_TZ).date()


# ----------------------------------------------------------------------------------------------- files


def inbox_dir(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    path = Path(settings.settlement.inbox_dir).expanduser()
    return path if path.is_absolute() else yidi_home() / path


def source_from_folder(path: Path) -> str | None:
    """Inbox layout: ``alipay/``, ``wechatpay/``, ``bank-<template>/``, ``cod-<carrier>/`` (else content decides)."""
    folder = path.parent.name.lower()
    if folder in ("alipay", "wechatpay"):
        return folder
    for kind in ("bank", "cod"):
        for sep in ("-", "_", ":"):
            if folder.startswith(kind + sep) and len(folder) > len(kind) + 1:
                return f"{kind}:{folder[len(kind) + 1 :]}"
    return None


def inbox_files(settings: Settings | None = None, source: str | None = None) -> list[Path]:
    """Files in the settlement inbox, optionally only those of ``source`` ('bank' selects every bank)."""
    settings = settings or get_settings()
    root = inbox_dir(settings)
    if not root.is_dir():
        return []
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not source:
        return files
    chosen = []
    for path in files:
        found = source_from_folder(path)
        if found is None:  # outside the per-source folders: the content decides
            try:
                found = detect_source(path.read_bytes(), path.name, settings.settlement)
            except PaymentFileError:
                continue  # not recognisable: an unfiltered run reports it
        if found == source or found.startswith(source + ":"):
            chosen.append(path)
    return chosen


def detect_source(data: bytes, name: str, policy: SettlementPolicy) -> str:
    """Which kind of payment file this is, from its content (Alipay zip, WeChat csv, COD remittance, a bank)."""
    if data[:4] == b"PK\x03\x04":
        try:
            members = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except zipfile.BadZipFile:
            members = None
        if members is not None and "[Content_Types].xml" not in members:
            return "alipay"
        if members is None and name.lower().endswith(".zip"):
            return "alipay"  # the parser says what is wrong with it
    else:
        head = data[:8192].decode("utf-8", errors="ignore") + data[:8192].decode("gb18030", errors="ignore")
        if "支付宝" in head and "#" in head:
            return "alipay"
        if "微信订单号" in head and "交易时间" in head:
            return "wechatpay"
    if data[:4] == b"PK\x03\x04" or "代收货款" in data[:8192].decode("gb18030", errors="ignore"):
        from connectors.payment_files.common import read_cells

        try:
            rows = read_cells(data, name)
        except PaymentFileError:
            rows = []
        top = normalise_text(" ".join(" ".join(r) for r in rows[:12]))
        if "代收" in top and "运单号" in top:
            for carrier_name, code in CARRIER_NAMES.items():
                if carrier_name in top:
                    return f"cod:{code}"
    key = detect_template(data, policy.bank_templates, name=name)
    if key:
        return f"bank:{key}"
    raise PaymentFileError(
        name,
        "format",
        "not a payment file yidi knows: Alipay bill, WeChat Pay bill, COD remittance, or a bank statement of the "
        f"templates {sorted(policy.bank_templates)} (a wrong encoding also ends here; pass the source to see why)",
    )


def parse_payment_file(data: bytes, name: str, source: str, settings: Settings) -> pd.DataFrame:
    policy = settings.settlement
    kind, _, key = source.partition(":")
    if kind == "alipay":
        return parse_alipay_bill(data, name=name, accounts=policy.accounts.alipay)
    if kind == "wechatpay":
        return parse_wechatpay_bill(data, name=name, accounts=policy.accounts.wechatpay)
    if kind == "bank":
        template = policy.bank_templates.get(key)
        if template is None:
            raise PaymentFileError(name, "format", f"no bank template {key!r} in [settlement.bank_templates]")
        return parse_bank_statement(
            data, template, template_key=key, name=name, accounts=policy.accounts.bank.get(key, [])
        )
    if kind == "cod":
        return parse_cod_remittance(
            data, carrier=key or None, name=name, accounts=policy.accounts.cod.get(key, [])
        )
    raise PaymentFileError(name, "format", f"unknown source {source!r}")


def ingest_payment_file(
    engine: Engine,
    path: str | Path,
    *,
    source: str | None = None,
    settings: Settings | None = None,
    actor: str | None = None,
    now: datetime | None = None,
    retry_rejected: bool = True,
) -> dict:
    """Parse one file and store its lines; a file already ingested is skipped, a refused one recorded.

    ``retry_rejected``: parse a file refused before again (the policy may have changed, e.g. an account added);
    scheduled inbox runs pass False so a bad file fails one run, not every run until someone removes it.
    Returns {file, status: ingested|duplicate|rejected|rejected_before, source, file_id, rows, new_lines,
    reason, error}.
    """
    settings = settings or get_settings()
    actor = actor or current_actor()
    now = now or utc_now()
    data, name = read_source(Path(path))
    digest = file_hash(data)
    with engine.connect() as conn:
        known = conn.execute(
            select(statement_files.c.id, statement_files.c.status, statement_files.c.source).where(
                statement_files.c.file_hash == digest
            )
        ).first()
    if known is not None and known.status == "ingested":
        return {
            "file": name,
            "status": "duplicate",
            "source": known.source,
            "file_id": known.id,
            "new_lines": 0,
        }
    if known is not None and not retry_rejected:
        # refused before and unchanged: listed, not re-parsed (and not failing every scheduled run again)
        return {"file": name, "status": "rejected_before", "source": known.source, "file_id": known.id,
                "new_lines": 0}  # fmt: skip
    hint = source if source and ":" in source or source in ("alipay", "wechatpay") else None
    hint = hint or source_from_folder(Path(path))
    try:
        detected = hint or detect_source(data, name, settings.settlement)
        if source and not (detected == source or detected.startswith(source + ":")):
            raise PaymentFileError(name, "format", f"asked for source {source}, the file is {detected}")
        frame = parse_payment_file(data, name, detected, settings)
    except PaymentFileError as exc:
        record = {
            "file_hash": digest, "source": source or hint, "file_name": name, "file_path": str(path),
            "status": "rejected", "reason": exc.reason, "error": str(exc), "received_at": now, "actor": actor,
        }  # fmt: skip
        with engine.begin() as conn:
            insert_rows(
                conn, statement_files, pd.DataFrame([record]), on_conflict=["file_hash"],
                update_columns=["reason", "error", "source"],
            )  # fmt: skip
        return {
            "file": name,
            "status": "rejected",
            "source": source or hint,
            "reason": exc.reason,
            "error": str(exc),
        }

    amounts = frame["amount_fen"]
    record = {
        "file_hash": digest, "source": detected, "account": frame["account"].iloc[0] if len(frame) else None,
        "file_name": name, "file_path": str(path), "status": "ingested", "reason": None, "error": None,
        "row_count": len(frame), "new_lines": 0, "credit_fen": int(amounts[amounts > 0].sum()),
        "debit_fen": int(-amounts[amounts < 0].sum()),
        "first_txn_at": frame["txn_time"].min() if len(frame) else None,
        "last_txn_at": frame["txn_time"].max() if len(frame) else None, "received_at": now, "actor": actor,
    }  # fmt: skip
    with engine.begin() as conn:
        insert_rows(
            conn, statement_files, pd.DataFrame([record]), on_conflict=["file_hash"],
            update_columns=[c for c in record if c not in ("file_hash", "received_at")],
        )  # fmt: skip
        file_id = conn.execute(
            select(statement_files.c.id).where(statement_files.c.file_hash == digest)
        ).scalar_one()
        lines = frame.drop(columns=["file_hash"]).assign(
            file_id=file_id, match_status="unmatched", ingested_at=now
        )
        new = insert_rows(conn, payment_lines, lines, on_conflict=["source", "line_key"])
        conn.execute(update(statement_files).where(statement_files.c.id == file_id).values(new_lines=new))
    return {"file": name, "status": "ingested", "source": detected, "file_id": file_id, "rows": len(frame),
            "new_lines": new}  # fmt: skip


# ----------------------------------------------------------------------------------------------- helpers


def _temp_keys(conn: Connection, values, kind: str = "text") -> str:
    """A temporary one-column table ``k`` holding the distinct ``values`` (for joins instead of huge IN lists)."""
    name = f"settle_keys_{next(_temp_counter)}"
    column = "VARCHAR(200)" if kind == "text" else "BIGINT"
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} (k {column} PRIMARY KEY)")
    distinct = pd.unique(pd.Series(list(values)).dropna())
    rows = [(str(v),) if kind == "text" else (int(v),) for v in distinct]
    if rows:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        conn.exec_driver_sql(f"INSERT INTO {name} (k) VALUES ({mark})", rows)
    return name


def _drop(conn: Connection, *names: str) -> None:
    for name in names:
        conn.exec_driver_sql(f"DROP TABLE {name}")


def _in_list(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _order_payments(conn: Connection, id_table: str | None = None) -> pd.DataFrame:
    """paid_fen / refunded_fen per order from the matches (all orders, or those in ``id_table``)."""
    where = f"WHERE order_id IN (SELECT k FROM {id_table})" if id_table else ""
    return read_frame(
        conn,
        f"""SELECT order_id,
                   SUM(CASE WHEN amount_fen > 0 THEN amount_fen ELSE 0 END) AS paid_fen,
                   SUM(CASE WHEN amount_fen < 0 THEN -amount_fen ELSE 0 END) AS refunded_fen
            FROM payment_matches {where} GROUP BY order_id""",
    )


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

    key_table = _temp_keys(conn, keys)
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
        _drop(conn, key_table)
    parts = [referenced]
    if len(invoices):
        id_table = _temp_keys(conn, invoices["order_id"], "int")
        parts.append(read_frame(conn, f"{ORDER_SELECT} WHERE o.id IN (SELECT k FROM {id_table})"))
        _drop(conn, id_table)
    fuzzy = lines[(lines["kind"] == "credit") & lines["payer_name"].notna()]
    if len(fuzzy):
        since = pd.to_datetime(fuzzy["txn_time"], utc=True).min() - pd.Timedelta(days=400)
        closed = _in_list(sorted({"cancelled", "rejected", "auto_rejected", "returned", "closed"}))
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
    id_table = _temp_keys(conn, frame["id"], "int")
    try:
        sums = _order_payments(conn, id_table)
        next_due = read_frame(
            conn,
            f"""SELECT order_id, due_date, outstanding_fen FROM receivables
                WHERE status = 'open' AND order_id IN (SELECT k FROM {id_table})""",
        )
    finally:
        _drop(conn, id_table)
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


# ----------------------------------------------------------------------------------------------- matching


def run_matching(conn: Connection, policy: SettlementPolicy, *, actor: str, now: datetime) -> dict:
    """Match every unmatched line that can be matched now; returns counts and the orders touched."""
    lines = read_frame(
        conn,
        select(*(payment_lines.c[c] for c in LINE_COLUMNS)).where(
            payment_lines.c.match_status == "unmatched"
        ),
    )
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
        table = _temp_keys(conn, waybills)
        shipments = read_frame(
            conn,
            f"SELECT carrier, waybill_no, order_id FROM shipments WHERE waybill_no IN (SELECT k FROM {table})",
        )
        _drop(conn, table)
    originals = None
    refs = lines["original_txn_id"].dropna()
    if len(refs):
        table = _temp_keys(conn, refs)
        originals = read_frame(
            conn,
            f"""SELECT l.source, l.provider_txn_id, m.order_id FROM payment_lines l
                JOIN payment_matches m ON m.payment_line_id = l.id
                WHERE l.provider_txn_id IN (SELECT k FROM {table}) AND l.kind IN ('payment', 'credit', 'cod')""",
        )
        _drop(conn, table)
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


# ----------------------------------------------------------------------------------------------- payment state


def order_payment_frame(conn: Connection) -> pd.DataFrame:
    """Orders with any payment (or a payment state to undo), with paid/refunded sums."""
    sums = _order_payments(conn)
    frame = read_frame(
        conn,
        """SELECT o.id AS order_id, o.order_no, o.customer_id, o.state, o.payment_state, o.order_total_fen,
                  o.installments
           FROM orders o
           WHERE o.id IN (SELECT order_id FROM payment_matches) OR o.payment_state <> 'unpaid'""",
    )
    frame = frame.merge(sums, on="order_id", how="left")
    frame[["paid_fen", "refunded_fen"]] = frame[["paid_fen", "refunded_fen"]].fillna(0).astype("int64")
    return frame


def refresh_payment_states(
    conn: Connection,
    policy: SettlementPolicy,
    *,
    actor: str,
    now: datetime,
    new_matches: pd.DataFrame | None = None,
) -> dict:
    """Recompute every paid order's payment state; changed ones are updated with one 'payment' event each, and
    orders with newly matched payments get an event even when their state stays."""
    frame = payment_states(order_payment_frame(conn), policy)
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
        columns = ["order_id", "payment_state", "new_payment_state", "paid_fen", "refunded_fen", "due_fen"]
        for order_id, old, new, paid, refunded, due in zip(
            *(events[c].tolist() for c in columns), strict=True
        ):
            reasons.append(f"payment state {old} → {new}" if new != old else f"payment matched ({new})")
            details.append(
                {"from": old, "to": new, "paid_fen": int(paid), "refunded_fen": int(refunded), "due_fen": int(due),
                 "new_lines": lines_by_order.get(int(order_id), [])}
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
    """Delivered orders that are fully paid become settled (lifecycle transition with its event)."""
    ids = [
        row.id
        for row in conn.execute(
            select(orders.c.id).where(
                orders.c.state == OrderState.DELIVERED, orders.c.payment_state == "paid"
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


# ----------------------------------------------------------------------------------------------- receivables


def _cod_due_dates(delivered: pd.Series, working_days: int) -> dict:
    """order id -> delivery date + N official working days (each distinct date computed once)."""
    cache: dict[date, date] = {}
    result = {}
    for order_id, day in delivered.dropna().items():
        if day not in cache:
            cache[day] = add_working_days(day, working_days)
        result[order_id] = cache[day]
    return result


def refresh_receivables(conn: Connection, policy: SettlementPolicy, *, now: datetime) -> dict:
    """Rebuild the ledger plan for accepted orders and write the rows that changed."""
    states = _in_list(sorted(RECEIVABLE_STATES))
    frame = read_frame(
        conn,
        f"""SELECT o.id, o.customer_id, o.state, o.order_total_fen, o.payment_method, o.installments, o.order_time,
                   c.payment_terms AS customer_terms, c.net_days AS customer_net_days,
                   s.shipped_at, s.delivered_at
            FROM orders o
            LEFT JOIN customers c ON c.id = o.customer_id
            LEFT JOIN (SELECT order_id, MIN(shipped_at) AS shipped_at, MAX(delivered_at) AS delivered_at
                       FROM shipments GROUP BY order_id) s ON s.order_id = o.id
            WHERE o.state IN ({states}) OR o.id IN (SELECT order_id FROM receivables)""",
    )
    if frame.empty:
        return {"receivables": 0, "written": 0}
    sums = _order_payments(conn)
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
    plan = plan_receivables(
        frame, policy, cod_due_dates=_cod_due_dates(cod, policy.cod_remittance_working_days)
    )
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


# ----------------------------------------------------------------------------------------------- cases


def current_conditions(
    conn: Connection, settings: Settings, *, today: date, now: datetime, new_line_ids: list[int]
) -> tuple[pd.DataFrame, dict[str, set | None]]:
    """Every discrepancy that holds now, and per class the subjects evaluated (None = all of them)."""
    policy = settings.settlement
    paid = payment_states(order_payment_frame(conn), policy)
    ledger = read_frame(
        conn,
        # COD money is owed by the carrier once delivered: that is a cod_not_remitted case, not the customer's debt
        """SELECT r.order_id, r.due_date, r.amount_fen, r.status, o.order_no, o.customer_id, o.state,
                  o.order_total_fen, o.installments
           FROM receivables r JOIN orders o ON o.id = r.order_id
           WHERE r.status <> 'void' AND r.payment_terms <> 'cod'""",
    )
    if len(ledger):
        due_dates = pd.to_datetime(ledger["due_date"])
        ledger["due_now_fen"] = np.where(
            due_dates.notna() & (due_dates <= pd.Timestamp(today)), ledger["amount_fen"], 0
        )
        per_order = ledger.groupby("order_id").agg(
            order_no=("order_no", "first"), customer_id=("customer_id", "first"), state=("state", "first"),
            order_total_fen=("order_total_fen", "first"), installments=("installments", "first"),
            due_so_far_fen=("due_now_fen", "sum"), first_due_date=("due_date", "min"),
        ).reset_index()  # fmt: skip
    else:
        per_order = pd.DataFrame(columns=["order_id", "order_no", "customer_id", "state", "order_total_fen",
                                          "installments", "due_so_far_fen", "first_due_date"])  # fmt: skip
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
        table = _temp_keys(conn, refunded_ids, "int")
        history = read_frame(
            conn,
            f"""SELECT DISTINCT order_id FROM order_events WHERE kind = 'state'
                AND to_state IN ({_in_list(sorted(REFUND_REASON_STATES))}) AND order_id IN (SELECT k FROM {table})""",
        )
        _drop(conn, table)
        returned |= set(history["order_id"])
    summary["has_return"] = summary["order_id"].isin(returned)
    summary["customer_id"] = summary["customer_id"].astype("Int64")

    suspicious = summary[summary["net_fen"] > summary["due_fen"] + summary["tolerance_fen"]][
        "order_id"
    ].tolist()
    duplicates = pd.DataFrame(columns=["order_id", "duplicate_lines", "duplicate_fen", "line_ids"])
    if suspicious:
        table = _temp_keys(conn, suspicious, "int")
        matched = read_frame(
            conn,
            f"""SELECT m.order_id, m.payment_line_id, m.amount_fen FROM payment_matches m
                WHERE m.amount_fen > 0 AND m.order_id IN (SELECT k FROM {table})""",
        )
        _drop(conn, table)
        totals = summary[["order_id", "order_total_fen", "installments"]]
        duplicates = duplicate_payments(matched, totals, policy)
    parts = [order_cases(summary, duplicates, policy, today)]

    unmatched = read_frame(
        conn,
        select(
            payment_lines.c.id,
            payment_lines.c.source,
            payment_lines.c.line_key,
            payment_lines.c.amount_fen,
            payment_lines.c.txn_time,
            payment_lines.c.payer_name,
            payment_lines.c.memo,
            payment_lines.c.merchant_order_no,
        ).where(payment_lines.c.match_status == "unmatched"),
    )
    if len(unmatched):
        parts.append(line_cases(unmatched, now, policy))

    scopes: dict[str, set | None] = {
        c: None
        for c in ("unpaid_past_terms", "short_paid", "overpaid", "duplicate_payment", "payment_without_order",
                  "refund_without_return", "cod_not_remitted")
    }  # fmt: skip
    scopes["fee_mismatch"] = set()
    if new_line_ids:
        table = _temp_keys(conn, new_line_ids, "int")
        fresh = read_frame(
            conn,
            f"""SELECT id, source, provider_txn_id, amount_fen, fee_fen FROM payment_lines
                WHERE id IN (SELECT k FROM {table})""",
        )
        _drop(conn, table)
        cod_contracts = {
            code: (card.cod_fee_pct / 100, int(card.cod_min_yuan * 100))
            for code, card in settings.fulfilment.rate_cards.items()
            if card.cod
        }
        parts.append(fee_cases(fresh, policy, cod_contracts))
        scopes["fee_mismatch"] = {f"fee_mismatch:line:{i}" for i in fresh["id"]}

    shipments_due = read_frame(
        conn,
        """SELECT s.id AS shipment_id, s.order_id, s.carrier, s.waybill_no, s.cod_amount_fen, s.delivered_at,
                  o.order_no, o.customer_id
           FROM shipments s JOIN orders o ON o.id = s.order_id
           WHERE s.cod_amount_fen > 0 AND s.delivered_at IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM payment_lines l WHERE l.kind = 'cod' AND l.waybill_no = s.waybill_no)""",
    )
    if len(shipments_due):
        shipments_due["delivered_date"] = (
            pd.to_datetime(shipments_due["delivered_at"], utc=True).dt.tz_convert(BUSINESS_TZ).dt.date
        )
        due = _cod_due_dates(
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


# ----------------------------------------------------------------------------------------------- dunning


def overdue_receivables(conn: Connection, today: date) -> pd.DataFrame:
    frame = read_frame(
        conn,
        text(
            """SELECT r.order_id, r.customer_id, r.outstanding_fen, r.due_date, o.order_no,
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
    return frame


def take_dunning_steps(
    conn: Connection, settings: Settings, *, today: date, now: datetime, actor: str
) -> dict:
    """Take each overdue party's due step once: record it and queue its notices (customer and internal)."""
    policy = settings.settlement
    overdue = overdue_receivables(conn, today)
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


def new_line_ids_since(conn: Connection, since: datetime) -> list[int]:
    rows = conn.execute(select(payment_lines.c.id).where(payment_lines.c.ingested_at >= since)).scalars()
    return [int(i) for i in rows]


def reconcile(
    engine: Engine,
    *,
    files: list[Path] | None = None,
    source: str | None = None,
    settings: Settings | None = None,
    now: datetime | None = None,
    actor: str | None = None,
) -> dict:
    """The whole reconciliation without Prefect (tests, benchmarks, scripts): ingest, match, states, settle,
    receivables, cases, dunning. The flow runs the same steps as tasks."""
    settings = settings or get_settings()
    policy = settings.settlement
    now = now or utc_now()
    actor = actor or current_actor()
    today = business_today(now)
    files = list(files) if files is not None else inbox_files(settings, source)
    ingested = [
        ingest_payment_file(
            engine, f, source=source, settings=settings, actor=actor, now=now, retry_rejected=False
        )
        for f in files
    ]
    with engine.begin() as conn:
        matching = run_matching(conn, policy, actor=actor, now=now)
        new_matches = matching.pop("new_matches", None)
        states = refresh_payment_states(conn, policy, actor=actor, now=now, new_matches=new_matches)
        settled = settle_paid_orders(conn, actor=actor)
        ledger = refresh_receivables(conn, policy, now=now)
        conditions, scopes = current_conditions(
            conn, settings, today=today, now=now, new_line_ids=new_line_ids_since(conn, now)
        )
        cases = sync_cases(conn, conditions, scopes, policy, now=now, actor=actor)
        dunning = take_dunning_steps(conn, settings, today=today, now=now, actor=actor)
    matching.pop("order_ids", None)
    return {
        "files": ingested,
        "matching": matching,
        "payment_states": states,
        "settled": settled,
        "receivables": ledger,
        "cases": cases,
        "dunning": dunning,
    }


def txn_window_utc(start: date, end: date) -> tuple[datetime, datetime]:
    """[start, end) local dates as UTC instants."""
    tz = BUSINESS_TZ
    a = datetime(start.year, start.month, start.day, tzinfo=tz).astimezone(UTC)
    b = datetime(end.year, end.month, end.day, tzinfo=tz).astimezone(UTC)
    return a, b
