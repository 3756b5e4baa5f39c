"""Legal rules step (K4, P1): every rule evaluated over a period's orders, one finding per rule and period (with
the orders behind it), open findings of earlier periods re-checked; and the scheduled anonymisation (PIPL 19)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Engine, select

from tasks.risk import findings, legal, legal_store
from tasks.risk.periods import business_dates, parse_period, utc_bounds
from yidi.schema_risk import risk_findings
from yidi.settings import Settings
from yidi.workdays import BUSINESS_TZ


def evaluate_period(conn, period: str, now: datetime, settings: Settings) -> pd.DataFrame:
    """Violations (rule, order_id, summary) of every rule over the orders of ``period``."""
    start, end, _kind = parse_period(period)
    lo, hi = utc_bounds(start, end)
    policy = settings.risk
    deliveries = legal_store.load_deliveries(conn, lo, hi)
    if not deliveries.empty:
        delivered = deliveries["delivered_at"].notna()
        deliveries["delivered_day"] = pd.NaT
        if delivered.any():
            deliveries.loc[delivered, "delivered_day"] = pd.to_datetime(
                business_dates(deliveries.loc[delivered, "delivered_at"])
            )
    incidents = legal_store.load_transit_incidents(conn, lo, hi).assign(customer_chose_carrier=False)
    pieces = [
        legal.refund_late(legal_store.load_returns(conn, lo, hi), now, policy),
        legal.delivery_late(deliveries, now.astimezone(BUSINESS_TZ).date()) if not deliveries.empty else None,
        legal.transport_risk(incidents, now),
        legal.carrier_claim_missing(incidents, now),
        legal.invoice_missing(legal_store.load_paid(conn, lo, hi), now, policy),
    ]
    pieces = [p for p in pieces if p is not None and not p.empty]
    return pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(columns=legal.VIOLATION_COLUMNS)


def _finding_rows(violations: pd.DataFrame, period: str) -> pd.DataFrame:
    rows = []
    for code, group in violations.groupby("rule"):
        rule = legal.RULES_BY_CODE[code]
        rows.append({"finding_key": f"legal:{code}:{period}", "source": "legal", "check_code": code,
                     "severity": rule.severity, "period": period,
                     "order_id": int(group["order_id"].iloc[0]) if len(group) == 1 else None,
                     "summary": f"{rule.title}（{rule.citation}）: orders in {period}: {len(group)}",
                     "details": {"citation": rule.citation, "orders": len(group),
                                 "order_ids": [int(i) for i in group["order_id"].head(50)],
                                 "examples": group["summary"].head(5).tolist()}})  # fmt: skip
    return pd.DataFrame(rows)


def assess_legal(engine: Engine, settings: Settings, period: str, now: datetime, actor: str = "risk") -> dict:
    with engine.begin() as conn:
        earlier = conn.execute(
            select(risk_findings.c.period)
            .where(risk_findings.c.source == "legal", risk_findings.c.state.in_(("open", "rectifying")))
            .distinct()
        ).scalars()
        periods = sorted({period, *earlier})
        violations = {p: evaluate_period(conn, p, now, settings) for p in periods}
        retention = legal.retention_exceeded(
            legal_store.load_finished(conn, now - timedelta(days=settings.risk.retention_days)),
            now,
            settings.risk,
        )
        violations[period] = pd.concat([violations[period], retention], ignore_index=True)
        rows = pd.concat([_finding_rows(v, p) for p, v in violations.items() if not v.empty] or [pd.DataFrame()],
                         ignore_index=True)  # fmt: skip
        opened = findings.open_findings(conn, rows, now, settings, actor)
        failing = set(rows["finding_key"]) if not rows.empty else set()
        scope = {f"legal:{r.code}:{p}" for r in legal.RULES for p in periods}
        rechecked = findings.recheck(conn, [r.code for r in legal.RULES], failing, now, actor, scope)
    current = violations[period]
    counts = current["rule"].value_counts() if not current.empty else pd.Series(dtype="int64")
    return {
        "period": period,
        "violations": {r.code: int(counts.get(r.code, 0)) for r in legal.RULES},
        "findings": opened,
        "rechecked": rechecked,
    }


def anonymise_expired(engine: Engine, settings: Settings, now: datetime, actor: str = "risk") -> dict:
    """PIPL art. 19: personal fields of finished orders past ``risk.retention_days`` removed, event kept."""
    with engine.begin() as conn:
        ids = legal_store.anonymise(conn, now, settings.risk.retention_days, actor)
    return {"anonymised": len(ids)}
