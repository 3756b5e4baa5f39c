"""The review's pure rules (V1–V6): verdicts, deadlines, the reviewer's input, what a customer and a reviewer read.

Frames in, frames (or text) out; no store, no Prefect. The store-dependent checks themselves are computed as columns
in ``tasks/review/columns.py`` and validated by the Great Expectations suites in ``expectations/``; what follows
turns their failures into decisions (``decide``), sums chunk results, dates deadlines in working days, validates a
reviewer's decision and words the notices and listings.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from tasks.review.columns import ReviewColumns, ReviewInputs, compute_review_columns
from yidi.lifecycle import OrderState
from yidi.masking import mask_frame, mask_name
from yidi.money import yuan_text
from yidi.settings import Settings
from yidi.workdays import BUSINESS_TZ, add_working_days


def content_key(order_id: int, content_hash) -> str:
    """What an order's check is unique by: its content hash, or the order itself when it has none (I3)."""
    return str(content_hash) if isinstance(content_hash, str) and content_hash else f"order:{int(order_id)}"


# --- the automated verdict (V5) -----------------------------------------------------------------------------------


@dataclass
class Evaluation:
    columns: ReviewColumns
    failures: pd.DataFrame  # order_id, suite, rule, reason_code, severity, area
    decisions: pd.DataFrame  # order_id, outcome, reject_count, review_count, note_count
    stats: pd.DataFrame
    outcome: object = None  # expectations.engine.ValidationOutcome (results kept for Data Docs)


def decide(order_ids: pd.Index, failures: pd.DataFrame) -> pd.DataFrame:
    """Any reject-severity finding → auto_rejected; else pending_review (V5)."""
    positions = order_ids.get_indexer(failures["order_id"])
    counts = {}
    for severity in ("reject", "needs_review", "note"):
        hit = positions[(failures["severity"] == severity).to_numpy()]
        counts[severity] = np.bincount(hit[hit >= 0], minlength=len(order_ids))
    return pd.DataFrame({
        "order_id": order_ids.to_numpy(),
        "outcome": np.where(counts["reject"] > 0, OrderState.AUTO_REJECTED.value, OrderState.PENDING_REVIEW.value),
        "reject_count": counts["reject"],
        "review_count": counts["needs_review"],
        "note_count": counts["note"],
    })  # fmt: skip


def evaluate(inputs: ReviewInputs, settings: Settings) -> Evaluation:
    """Columns, Great Expectations, decisions: the whole automated review of a chunk, in memory."""
    from expectations.engine import validator_for

    columns = compute_review_columns(inputs, settings)
    outcome = validator_for(settings).validate(columns.frame)
    decisions = decide(columns.frame.index, outcome.failures)
    return Evaluation(columns, outcome.failures, decisions, outcome.stats, outcome)


@dataclass
class ChunkSummary:
    checked: int = 0
    auto_rejected: int = 0
    pending_review: int = 0
    auto_approved: int = 0  # clean orders approved by policy ([review].auto_approve_clean; off by default)
    unchanged: int = 0  # already checked with this content (a rerun) or moved concurrently
    notices: int = 0
    by_reason: Counter = field(default_factory=Counter)

    def add(self, other: ChunkSummary) -> None:
        self.checked += other.checked
        self.auto_rejected += other.auto_rejected
        self.pending_review += other.pending_review
        self.auto_approved += other.auto_approved
        self.unchanged += other.unchanged
        self.notices += other.notices
        self.by_reason.update(other.by_reason)

    def as_dict(self) -> dict:
        return {"checked": self.checked, "auto_rejected": self.auto_rejected, "pending_review": self.pending_review,
                "auto_approved": self.auto_approved, "unchanged": self.unchanged, "notices": self.notices, "by_reason": dict(self.by_reason)}  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict) -> ChunkSummary:
        """Back from ``as_dict`` (a chunk task's result, or a run's result with its other keys)."""
        summary = cls(**{k: values[k] for k in ("checked", "auto_rejected", "pending_review", "unchanged", "notices")},
                      auto_approved=values.get("auto_approved", 0))
        summary.by_reason.update(values.get("by_reason", {}))
        return summary


def merge_stats(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-expectation counts of several chunks summed into one table (the run's record and artifact)."""
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=["suite", "rule", "reason_code", "severity", "unexpected_count", "element_count"])
    both = pd.concat(frames, ignore_index=True)
    return both.groupby(["suite", "rule", "reason_code", "severity"], as_index=False)[
        ["unexpected_count", "element_count"]].sum()


# --- deadlines (V6) -------------------------------------------------------------------------------------------------


def review_deadline(became_pending: datetime, settings: Settings) -> datetime:
    """X working days (official calendar, make-up days included) after the order became pending."""
    return add_working_days(became_pending, settings.review.deadline_working_days)


BACKLOG_BUCKETS = ["within deadline", "due within reminder window", "overdue < 1 day", "overdue 1-3 days",
                   "overdue > 3 days"]  # fmt: skip


def backlog_by_age(pending: pd.DataFrame, now: datetime, reminder_hours: float = 4) -> pd.DataFrame:
    """Pending orders counted by how their deadline stands at ``now`` (the backlog artifact and CLI listing)."""
    if pending.empty:
        return pd.DataFrame({"bucket": BACKLOG_BUCKETS, "orders": 0})
    due = pd.to_datetime(pending["review_due_at"], utc=True)
    late_hours = (pd.Timestamp(now) - due).dt.total_seconds() / 3600
    bucket = np.select(
        [late_hours < -reminder_hours, late_hours < 0, late_hours < 24, late_hours < 72],
        BACKLOG_BUCKETS[:4], BACKLOG_BUCKETS[4],
    )
    counts = pd.Series(bucket).value_counts()
    return pd.DataFrame({"bucket": BACKLOG_BUCKETS, "orders": [int(counts.get(b, 0)) for b in BACKLOG_BUCKETS]})


def deadline_listing(fresh: pd.DataFrame) -> list[str]:
    """One line per order for the reviewers' reminder / escalation notice (customer name masked)."""
    return [
        f"{r.order_no}（{mask_name(r.customer_name)}，{yuan_text(r.order_total_fen, symbol=True)}，期限 "
        f"{pd.Timestamp(r.review_due_at).tz_convert(BUSINESS_TZ):%Y-%m-%d %H:%M}）"
        for r in fresh.itertuples(index=False)
    ]


# --- the reviewer's decision (V6) -------------------------------------------------------------------------------------


class InvalidDecision(ValueError):
    """The reviewer's input cannot be applied as given (the order stays pending)."""


def validate_decision(decision: str, reviewer: str, reason: str | None, proposed_solution: str | None) -> None:
    if decision not in ("approve", "reject"):
        raise InvalidDecision(f"decision must be approve or reject, not {decision!r}")
    if not reviewer or not reviewer.strip():
        raise InvalidDecision("a reviewer name is required")
    if decision == "reject":
        if not reason or len(reason.strip()) < 2:
            raise InvalidDecision("a rejection needs a reason the customer can understand")
        if not proposed_solution or len(proposed_solution.strip()) < 2:
            raise InvalidDecision("a rejection needs a proposed solution for the customer (V6)")


def already_decided(order, decision) -> str:
    """Why a decision was not applied: another reviewer's decision won, or the order left pending review."""
    if decision is not None:
        when = pd.Timestamp(decision["decided_at"]).tz_convert(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M")
        verb = "approved" if decision["decision"] == "approve" else "rejected"
        return (f"order {order['order_no']} was already {verb} by {decision['reviewer']} at {when} "
                f"({decision['source']}); your decision was not applied")  # fmt: skip
    return f"order {order['order_no']} is {order['state']}, not pending review; your decision was not applied"


# --- what customers and reviewers read ------------------------------------------------------------------------------


def customer_contacts(frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """One row per (order, medium) the customer can be reached on: SMS to mobiles, email to addresses."""
    from tasks.notifications import sms_number

    rows = []
    media = settings.notifications.customer_media
    for oid, phone, email in zip(frame["id"], frame["customer_phone"], frame["customer_email"], strict=True):
        if "sms" in media and isinstance(phone, str) and sms_number(phone):
            rows.append((int(oid), "sms", sms_number(phone)))
        if "email" in media and isinstance(email, str) and "@" in email:
            rows.append((int(oid), "email", email.strip()))
    return pd.DataFrame(rows, columns=["order_id", "medium", "recipient"])


def order_context(row) -> dict:
    """The order fields every customer notice of the review names (P2)."""
    when = pd.Timestamp(row["order_time"]) if row["order_time"] is not None else None
    local = when.tz_convert(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M") if when is not None and not pd.isna(when) else "—"
    return {"order_no": row["order_no"], "customer_name": row["customer_name"] or "客户", "order_time": local,
            "order_total": yuan_text(row["order_total_fen"])}  # fmt: skip


def credit_amounts(credit: dict) -> tuple[str, str, str]:
    """Exposure, limit and overdue of a credit check (its JSON as a dict) as ``¥1,234.50`` texts."""
    return tuple(yuan_text(credit[k], grouping=True, symbol=True) for k in ("exposure_fen", "limit_fen", "overdue_fen"))


def credit_summary(credit_json: str | None) -> str | None:
    """``exposure ¥x of limit ¥y, overdue ¥z`` for a credit-checked order (V1), else None."""
    if not isinstance(credit_json, str) or not credit_json:  # NULL comes back from pandas as NaN
        return None
    credit = json.loads(credit_json)
    ok = credit["exposure_fen"] <= credit["limit_fen"] and credit["overdue_fen"] <= 0
    why = "important customer" if credit.get("important") else "large order"
    exposure, limit, overdue = credit_amounts(credit)
    return f"credit check ({why}): {'ok' if ok else 'NOT OK'}: exposure {exposure} of limit {limit}, overdue {overdue}"


def masked_pending(frame: pd.DataFrame) -> pd.DataFrame:
    """Pending orders as a listing shows them: name, phone and street address masked."""
    return mask_frame(frame, {"customer_name": "name", "customer_phone": "phone", "ship_detail": "address"})
