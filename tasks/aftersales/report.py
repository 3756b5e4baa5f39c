"""What a person reads about after-sales (A3, T3): open cases by age and type, feedback SLA compliance, and
satisfaction from survey replies. Pure over frames; aggregates only, no personal data (the case list the CLI
shows masks names and phones)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

AGE_BUCKETS = [(0, 1, "< 1 天"), (1, 3, "1-3 天"), (3, 7, "3-7 天"), (7, 10_000, "> 7 天")]


def open_cases_by_age(cases: pd.DataFrame, now: datetime) -> list[dict]:
    """Rows: kind, then one count per age bucket, for cases not closed or rejected."""
    open_ = cases[~cases["status"].isin(["closed", "rejected"])] if len(cases) else cases
    rows = []
    for kind, group in (open_.groupby("kind") if len(open_) else []):
        age = (pd.Timestamp(now) - pd.to_datetime(group["requested_at"], utc=True)).dt.total_seconds() / 86400
        row = {"type": kind}
        for low, high, label in AGE_BUCKETS:
            row[label] = int(((age >= low) & (age < high)).sum())
        rows.append(row)
    return rows


def sla_compliance(items: pd.DataFrame, now: datetime) -> list[dict]:
    """Per feedback class: items, first responses on time / late / still open past the limit, resolutions too."""
    rows = []
    for category, g in (items.groupby("category") if len(items) else []):
        r_ok, r_late = _on_time(g, "first_responded_at", "first_response_due_at", now)
        s_ok, s_late = _on_time(g, "resolved_at", "resolution_due_at", now)
        rows.append({"class": category, "items": len(g), "responded on time": r_ok, "response late": r_late,
                     "resolved on time": s_ok, "resolution late": s_late})  # fmt: skip
    return rows


def _on_time(g: pd.DataFrame, done: str, due: str, now: datetime) -> tuple[int, int]:
    """(done by the limit, done late or still open past it)."""
    finished, limit = pd.to_datetime(g[done], utc=True), pd.to_datetime(g[due], utc=True)
    late_open = finished.isna() & (limit < pd.Timestamp(now))
    return int((finished.notna() & (finished <= limit)).sum()), int((finished > limit).sum() + late_open.sum())


def satisfaction(surveys: pd.DataFrame) -> list[dict]:
    """Per trigger: surveys sent, replies, reply rate, mean score (1-5)."""
    rows = []
    for trigger, g in (surveys.groupby("trigger") if len(surveys) else []):
        scores = pd.to_numeric(g["score"], errors="coerce").dropna()
        rows.append({"after": trigger, "sent": len(g), "replies": len(scores),
                     "reply rate": f"{len(scores) / len(g):.0%}",
                     "mean score": f"{scores.mean():.2f}" if len(scores) else "-"})  # fmt: skip
    return rows
