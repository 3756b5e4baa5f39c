"""Credit evaluation steps (K1): score every customer in one batch, keep the history, notice downgrades; a
manager's expiring override."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Engine

from tasks.risk import credit, credit_store
from yidi.bulk import json_text
from yidi.risk_policy import GRADES
from yidi.settings import Settings


@dataclass
class CreditRun:
    evaluated: int
    new_rows: int
    by_grade: dict
    upgrades: int
    downgrades: int
    notices: int

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def evaluate_credit(
    engine: Engine, settings: Settings, as_of: datetime, run_key: str | None = None
) -> CreditRun:
    """Score and grade every customer as the store stands at ``as_of``; one transaction. ``run_key`` (default: the
    as-of time) makes a re-run of the same evaluation add nothing."""
    policy = settings.credit
    run_key = run_key or as_of.isoformat(timespec="seconds")
    with engine.begin() as conn:
        raw = credit_store.load_raw_factors(conn, as_of, policy)
        if raw.empty:
            return CreditRun(0, 0, {}, 0, 0, 0)
        scored = credit.score_customers(credit.factor_values(raw), policy)
        previous = credit_store.previous_grades(conn)
        changed = credit.changes(scored, previous)
        rows = scored[["customer_id", "score", "grade"]].copy()
        rows["previous_grade"] = rows["customer_id"].map(previous)
        rows["run_key"] = run_key
        rows["evaluated_at"] = as_of
        rows["factors"] = [json_text(f) for f in credit.factors_record(scored)]
        new_rows = credit_store.write_evaluations(conn, rows)
        down = changed[changed["direction"] == "down"].copy()
        down["measures"] = [credit.measures_text(g, policy) for g in down["grade"]]
        notices = (
            credit_store.enqueue_downgrades(conn, down, policy.downgrade_contacts, run_key) if new_rows else 0
        )
    counts = scored["grade"].value_counts()
    return CreditRun(
        evaluated=len(scored),
        new_rows=new_rows,
        by_grade={g: int(counts.get(g, 0)) for g in GRADES},
        upgrades=int((changed["direction"] == "up").sum()),
        downgrades=len(down),
        notices=notices,
    )


class OverrideError(ValueError):
    """A grade override that cannot be recorded as asked."""


def override_grade(
    engine: Engine,
    settings: Settings,
    customer_ref: str,
    grade: str,
    reason: str,
    actor: str,
    days: int,
    now: datetime,
) -> dict:
    """Record a manager's override (K1): who, why, until when; it lapses by itself at ``expires_at``."""
    if grade not in GRADES:
        raise OverrideError(f"grade must be one of {list(GRADES)}, not {grade!r}")
    if not reason or len(reason.strip()) < 4:
        raise OverrideError("an override needs a reason (at least 4 characters)")
    if not 1 <= days <= settings.credit.override_max_days:
        raise OverrideError(
            f"an override lasts 1 to {settings.credit.override_max_days} days (credit.override_max_days)"
        )
    with engine.begin() as conn:
        customer = credit_store.customer_by_ref(conn, customer_ref)
        if customer is None:
            raise OverrideError(f"no customer {customer_ref!r}")
        expires = now + timedelta(days=days)
        oid = credit_store.add_override(conn, int(customer["id"]), grade, reason.strip(), actor, now, expires)
    return {
        "override_id": oid,
        "customer": customer["code"],
        "grade": grade,
        "expires_at": pd.Timestamp(expires),
    }
