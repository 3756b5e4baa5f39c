"""The monthly internal audit (E1): process compliance over the event log, data accuracy on a reproducible
stratified sample (re-derived from raw intake records by the function the flow passes in), satisfaction; findings
opened with severity, owner and due date, and last runs' open findings re-checked."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine

from tasks.risk import audit, audit_store, findings
from tasks.risk.periods import parse_period, utc_bounds
from yidi.money import decimal_to_fen
from yidi.settings import Settings
from yidi.staff import stock_adjusters

PROCESS_CHECKS = ["APPROVED_WITHOUT_REVIEW", "REVIEWED_AFTER_DEADLINE", "SHIPPED_WITHOUT_APPROVAL", "STATE_SKIPPED",
                  "SETTLED_UNPAID", "CHANGED_AFTER_APPROVAL", "OUTCOME_WITHOUT_NOTICE", "REFUND_WITHOUT_CASE",
                  "KEYED_AND_APPROVED", "APPROVED_AND_RESOLVED"]  # fmt: skip
DATA_CHECKS = ["DATA_FIELD_MISMATCH", "DATA_AMOUNT_MISMATCH", "DATA_RAW_MISSING"]
# rederive(raw intake records) -> the orders they give today: channel, channel_order_id and the compared fields
Rederive = Callable[[pd.DataFrame], pd.DataFrame]


def _rederived(conn, sample: pd.DataFrame, rederive: Rederive) -> pd.DataFrame:
    """The sampled orders as their raw records give them today. A bulk drop's chunk (one record holding thousands
    of orders) is re-read whole by its channel's parser; only the sampled orders of it are kept."""
    record_ids = sorted({int(r) for r in sample["raw_record_id"].dropna()})
    records = audit_store.raw_records(conn, record_ids)
    derived = (
        rederive(records) if not records.empty else pd.DataFrame(columns=["channel", "channel_order_id"])
    )
    keys = sample[["order_id", "channel", "channel_order_id"]]
    return derived.merge(keys, on=["channel", "channel_order_id"]).drop(columns=["channel", "channel_order_id"])


def run_audit(
    engine: Engine,
    settings: Settings,
    period: str,
    now: datetime,
    rederive: Rederive | None = None,
    actor: str = "audit",
) -> dict:
    start, end, _kind = parse_period(period)
    lo, hi = utc_bounds(start, end)
    policy = settings.audit
    with engine.begin() as conn:
        ids = audit_store.audited_orders(conn, lo, hi, PROCESS_CHECKS)
        # open data-accuracy findings are compared again whatever month their order is from
        recheck_data = set(audit_store.open_finding_orders(conn, DATA_CHECKS))
        events = audit_store.load_events(conn, ids)
        order_rows = audit_store.load_orders(conn, sorted(set(ids) | recheck_data))
        process = audit.process_checks(events, order_rows[order_rows["order_id"].isin(ids)],
                                       audit_store.noticed(conn, ids), audit_store.with_case(conn, ids),
                                       audit_store.refunded(conn, ids))  # fmt: skip
        in_period = order_rows[order_rows["order_id"].isin(
            audit_store.audited_orders(conn, lo, hi, []))]  # fmt: skip
        sample = audit.stratified_sample(in_period, policy.sample_size, policy.sample_seed,
                                         [decimal_to_fen(b) for b in policy.amount_bands_yuan])  # fmt: skip
        compared = order_rows[order_rows["order_id"].isin(set(sample["order_id"]) | recheck_data)] if len(sample) or \
            recheck_data else order_rows.iloc[:0]  # fmt: skip
        data = [audit.amount_checks(compared, audit_store.received(conn, compared["order_id"].tolist()))]
        if rederive is not None and not compared.empty:
            derived = _rederived(conn, compared, rederive)
            data.append(audit.compare_fields(compared[["order_id", *audit.COMPARED_FIELDS]], derived))
        target = settings.kpi.targets.get("satisfaction_score")
        scores = audit_store.survey_scores(conn, lo, hi)
        satisfaction = audit.satisfaction_check(scores, target.target if target else 0, period)
        verified = audit_store.verified_stocktakes(conn, lo, hi)  # separated duties (issue 20)
        stock = audit.stock_duty_check(verified, stock_adjusters(conn, verified["stocktake_id"]), settings.staff)
        duties = audit.order_duty_checks(*audit_store.duty_actors(conn, ids), settings.staff)
        results = pd.concat([process, duties, *data, satisfaction, stock], ignore_index=True)
        subject = results["subject"] if "subject" in results else pd.Series(None, index=results.index)
        rows = pd.DataFrame({
            "finding_key": [f"audit:{c}:{s}" if isinstance(s, str) else f"audit:{c}:{int(o)}" if pd.notna(o)
                            else f"audit:{c}:{period}"
                            for c, o, s in zip(results["check"], results["order_id"], subject, strict=True)],
            "source": "audit", "check_code": results["check"],
            "severity": results["check"].map(lambda c: audit.CHECKS[c][0]),
            "order_id": pd.array(results["order_id"], dtype="Int64"), "period": period, "summary": results["summary"],
        })  # fmt: skip
        opened = findings.open_findings(conn, rows, now, settings, actor)
        scope = {f"audit:{c}:{o}" for c in PROCESS_CHECKS for o in ids}
        scope |= {f"audit:{c}:{o}" for c in DATA_CHECKS for o in compared["order_id"]}
        scope |= {f"audit:SATISFACTION_LOW:{period}"} | {f"audit:STOCKTAKE_SELF_VERIFIED:{n}"
                                                         for n in verified["stocktake_no"]}  # fmt: skip
        rechecked = findings.recheck(conn, list(audit.CHECKS), set(rows["finding_key"]), now, actor, scope)
    counts = results["check"].value_counts()
    return {"period": period, "orders": len(ids), "sample": int(len(sample)),
            "sample_ids": [int(i) for i in sample["order_id"]], "by_check": {c: int(counts.get(c, 0)) for c in audit.CHECKS},
            "findings": opened, "rechecked": rechecked,
            "satisfaction": round(float(scores.mean()), 2) if len(scores) else None}  # fmt: skip
