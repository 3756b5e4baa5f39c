"""A customer's effective credit grade and what it requires (K1, V1/V3): where risk and review meet.

The risk area writes the scored grade (``customer_credit``) and managers' overrides (``credit_overrides``); review
reads the effective grade of its customers through ``effective_credit`` and applies the grade's measures from the
policy (``[credit.grades]``). An override applies from its creation until it expires or is revoked, so expiry
needs no job: it is decided at reading time, against the caller's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, and_, select

from yidi.bulk import read_in
from yidi.money import decimal_to_fen
from yidi.risk_policy import CreditPolicy
from yidi.schema_risk import credit_overrides, customer_credit

MEASURE_COLUMNS = ["grade_limit_fen", "grade_prepayment_ratio", "guarantee_required", "cod_allowed",
                   "installments_allowed", "manual_review"]  # fmt: skip
EFFECTIVE_COLUMNS = ["customer_id", "grade", "scored_grade", "score", "override_expires_at", *MEASURE_COLUMNS]


def grade_of(scores: pd.Series, policy: CreditPolicy) -> pd.Series:
    """The grade a score earns: the best grade whose ``min_score`` it reaches."""
    grades = pd.Series("E", index=scores.index, dtype=object)
    for grade, measures in sorted(policy.grades.items(), key=lambda kv: kv[1].min_score):
        grades = grades.mask(scores >= measures.min_score, grade)
    return grades


def measures_of(grades: pd.Series, policy: CreditPolicy) -> pd.DataFrame:
    """The policy's measures for each grade (index aligned with ``grades``)."""
    table = pd.DataFrame(
        {
            grade: {
                "grade_limit_fen": decimal_to_fen(m.credit_limit_yuan),
                "grade_prepayment_ratio": float(m.prepayment_ratio),
                "guarantee_required": bool(m.guarantee_required),
                "cod_allowed": bool(m.cod_allowed),
                "installments_allowed": bool(m.installments_allowed),
                "manual_review": bool(m.manual_review),
            }
            for grade, m in policy.grades.items()
        }
    ).T
    rows = table.reindex(grades.to_numpy())
    rows.index = grades.index
    return rows


def effective_credit(
    conn: Connection, customer_ids: Sequence[int], as_of: datetime, policy: CreditPolicy
) -> pd.DataFrame:
    """One row per graded customer among ``customer_ids`` (``EFFECTIVE_COLUMNS``): the override in force at
    ``as_of`` if any (the latest one), else the scored grade, and that grade's measures. Customers never graded
    and without an override are absent: no grade, no measures."""
    ids = sorted({int(c) for c in customer_ids})
    empty = pd.DataFrame(columns=EFFECTIVE_COLUMNS)
    if not ids:
        return empty
    scored = read_in(
        conn,
        lambda c: select(
            customer_credit.c.customer_id, customer_credit.c.grade, customer_credit.c.score
        ).where(customer_credit.c.customer_id.in_(c)),
        ids,
    )
    overrides = read_in(conn, lambda c: select(credit_overrides.c.customer_id, credit_overrides.c.grade,
                                               credit_overrides.c.expires_at, credit_overrides.c.id)
                        .where(credit_overrides.c.customer_id.in_(c), and_(
                            credit_overrides.c.created_at <= as_of, credit_overrides.c.expires_at > as_of,
                            credit_overrides.c.revoked_at.is_(None))), ids)  # fmt: skip
    if scored.empty and overrides.empty:
        return empty
    scored = scored.rename(columns={"grade": "scored_grade"}).set_index("customer_id")
    latest = overrides.sort_values("id").drop_duplicates("customer_id", keep="last").set_index("customer_id")
    frame = pd.DataFrame(index=scored.index.union(latest.index))
    frame["scored_grade"] = scored["scored_grade"].reindex(frame.index)
    frame["score"] = scored["score"].reindex(frame.index)
    frame["override_grade"] = latest["grade"].reindex(frame.index) if not latest.empty else None
    frame["override_expires_at"] = latest["expires_at"].reindex(frame.index) if not latest.empty else None
    frame["grade"] = frame["override_grade"].where(frame["override_grade"].notna(), frame["scored_grade"])
    frame = frame.join(measures_of(frame["grade"], policy))
    frame.index.name = "customer_id"
    return frame.reset_index()[EFFECTIVE_COLUMNS]
