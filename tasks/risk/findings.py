"""Findings (E1, K3, K4): opened once per key, with owner and a due date in working days, moved open →
rectifying → verified (or closed), and re-checked by the next run: a finding whose condition no longer holds is
verified, a rectification that did not work goes back to open. Every move is a row in ``risk_finding_events``."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, select, update

from yidi.bulk import insert_rows, json_text, read_frame, read_in
from yidi.schema_risk import risk_finding_events, risk_findings
from yidi.settings import Settings
from yidi.workdays import BUSINESS_TZ, add_working_days

FINDING_COLUMNS = ["finding_key", "source", "check_code", "severity", "order_id", "customer_id", "carrier", "period",
                   "summary", "details"]  # fmt: skip
MOVES = {"rectifying": {"open"}, "verified": {"rectifying"}, "closed": {"open", "rectifying", "verified"},
         "open": {"rectifying"}}  # fmt: skip


class FindingError(ValueError):
    """A finding move that is not allowed (unknown finding, wrong state, no note)."""


def owner_of(source: str, settings: Settings) -> str:
    if source in ("audit", "data"):
        return settings.audit.owner
    owners = settings.risk.finding_owners
    return owners.get(source, owners.get("default", settings.audit.owner))


def open_findings(conn: Connection, rows: pd.DataFrame, now: datetime, settings: Settings, actor: str) -> int:
    """Insert the findings not yet known (by ``finding_key``); returns how many are new."""
    if rows.empty:
        return 0
    rows = rows.drop_duplicates("finding_key").copy()
    for column in FINDING_COLUMNS:
        if column not in rows:
            rows[column] = None
    known = read_in(conn, lambda k: select(risk_findings.c.finding_key).where(risk_findings.c.finding_key.in_(k)),
                    rows["finding_key"].tolist())  # fmt: skip
    fresh = rows[~rows["finding_key"].isin(set(known["finding_key"]) if not known.empty else set())].copy()
    if fresh.empty:
        return 0
    today = now.astimezone(BUSINESS_TZ).date()
    due_days = settings.risk.finding_due_working_days
    fresh["owner"] = [owner_of(s, settings) for s in fresh["source"]]
    fresh["due_date"] = [add_working_days(today, int(due_days.get(s, 10))) for s in fresh["severity"]]
    fresh["details"] = [json_text(d) for d in fresh["details"]]
    fresh["state"] = "open"
    fresh["opened_at"] = now
    fresh["updated_at"] = now
    insert_rows(conn, risk_findings, fresh[[*FINDING_COLUMNS, "owner", "due_date", "state", "opened_at", "updated_at"]],
                on_conflict=["finding_key"])  # fmt: skip
    ids = read_in(conn, lambda k: select(risk_findings.c.id).where(risk_findings.c.finding_key.in_(k)),
                  fresh["finding_key"].tolist())  # fmt: skip
    _events(conn, ids["id"].tolist(), now, actor, "opened", None, "open", None)
    return len(fresh)


def _events(conn, ids, now, actor, action, from_state, to_state, note) -> None:
    if len(ids):
        insert_rows(conn, risk_finding_events, pd.DataFrame({"finding_id": list(ids), "occurred_at": now,
                                                             "actor": actor, "action": action,
                                                             "from_state": from_state, "to_state": to_state,
                                                             "note": note}))  # fmt: skip


def recheck(
    conn: Connection,
    check_codes: list[str],
    failing_keys: set[str],
    now: datetime,
    actor: str,
    scope: set[str] | None = None,
) -> dict:
    """Re-check the open and rectifying findings of ``check_codes`` against this run's failing keys; ``scope``
    (finding keys) limits it to the findings this run evaluated again."""
    rows = read_frame(conn, select(risk_findings.c.id, risk_findings.c.finding_key, risk_findings.c.state)
                      .where(risk_findings.c.check_code.in_(check_codes), risk_findings.c.opened_at < now,
                             risk_findings.c.state.in_(("open", "rectifying"))))  # fmt: skip
    counts = {"verified": 0, "reopened": 0, "still_failing": 0}
    if scope is not None and not rows.empty:
        rows = rows[rows["finding_key"].isin(scope)]
    if rows.empty:
        return counts
    failing = rows["finding_key"].isin(failing_keys)
    fixed = rows[~failing]
    for state in ("open", "rectifying"):
        ids = fixed.loc[fixed["state"] == state, "id"].astype(int).tolist()
        if ids:
            conn.execute(update(risk_findings).where(risk_findings.c.id.in_(ids)).values(
                state="verified", rechecked_at=now, recheck_result="passes", updated_at=now))  # fmt: skip
            _events(conn, ids, now, actor, "verified", state, "verified", "re-check passes")
            counts["verified"] += len(ids)
    still = rows[failing]
    ids = still["id"].astype(int).tolist()
    if ids:
        conn.execute(update(risk_findings).where(risk_findings.c.id.in_(ids)).values(
            rechecked_at=now, recheck_result="still_failing", updated_at=now))  # fmt: skip
        back = still.loc[still["state"] == "rectifying", "id"].astype(int).tolist()
        if back:
            conn.execute(update(risk_findings).where(risk_findings.c.id.in_(back)).values(state="open"))
            _events(
                conn,
                back,
                now,
                actor,
                "reopened",
                "rectifying",
                "open",
                "re-check: rectification did not work",
            )
        counts["reopened"] = len(back)
        counts["still_failing"] = len(ids)
    return counts


def move(
    conn: Connection, finding_id: int, to_state: str, actor: str, note: str | None, now: datetime
) -> dict:
    """A person moves a finding: ``rectifying`` (resolve: the fix is in), ``verified``, ``closed`` (needs a note)."""
    row = conn.execute(select(risk_findings).where(risk_findings.c.id == finding_id)).mappings().first()
    if row is None:
        raise FindingError(f"no finding {finding_id}")
    if to_state not in MOVES or row["state"] not in MOVES[to_state]:
        raise FindingError(f"finding {finding_id} is {row['state']}; it cannot become {to_state}")
    if to_state in ("rectifying", "closed") and (not note or len(note.strip()) < 4):
        raise FindingError(f"say what was done (a note of at least 4 characters) to mark it {to_state}")
    conn.execute(update(risk_findings).where(risk_findings.c.id == finding_id)
                 .values(state=to_state, updated_at=now))  # fmt: skip
    _events(conn, [finding_id], now, actor, to_state, row["state"], to_state, note)
    return {"id": finding_id, "from": row["state"], "to": to_state}


def listing(conn: Connection, states: list[str] | None = None, source: str | None = None) -> pd.DataFrame:
    stmt = select(risk_findings).order_by(risk_findings.c.due_date, risk_findings.c.id)
    if states:
        stmt = stmt.where(risk_findings.c.state.in_(states))
    if source:
        stmt = stmt.where(risk_findings.c.source == source)
    return read_frame(conn, stmt)


def history(conn: Connection, finding_id: int) -> pd.DataFrame:
    return read_frame(conn, select(risk_finding_events).where(risk_finding_events.c.finding_id == finding_id)
                      .order_by(risk_finding_events.c.id))  # fmt: skip
