"""Feedback rules (T3) as pure functions: classification by the policy's keywords, response and resolution
deadlines in working hours on the Chinese official calendar, which reminders and escalations are due, and reading
a survey reply. No database, no clock: the caller passes ``now``.
"""

from __future__ import annotations

import re
from datetime import datetime, time

import pandas as pd

from yidi.aftersales_policy import FeedbackPolicy
from yidi.workdays import add_working_hours

CLASS_ORDER = ("complaint", "praise", "suggestion", "inquiry")
ALERT_KINDS = ("response_reminder", "response_escalation", "resolution_reminder", "resolution_escalation")


def classify(text: str, policy: FeedbackPolicy) -> str:
    """The first class (complaint, praise, suggestion, inquiry) with a keyword in ``text``; inquiry otherwise."""
    lowered = (text or "").lower()
    for category in CLASS_ORDER:
        if any(word.lower() in lowered for word in policy.keywords.get(category, [])):
            return category
    return "inquiry"


def _hours(policy: FeedbackPolicy) -> tuple[time, time]:
    start, end = (time.fromisoformat(v) for v in policy.working_hours)
    return start, end


def deadlines(received_at: datetime, category: str, policy: FeedbackPolicy) -> tuple[datetime, datetime]:
    """(first response due, resolution due): working hours after ``received_at``."""
    start, end = _hours(policy)
    return (add_working_hours(received_at, policy.first_response_hours, start, end),
            add_working_hours(received_at, policy.resolution_hours.get(category, 24), start, end))  # fmt: skip


def reminder_time(due_at: datetime, policy: FeedbackPolicy) -> datetime:
    """When to remind: ``reminder_hours_before`` clock hours before ``due_at`` (the limit itself is in working
    hours; a reminder an hour early needs no calendar)."""
    return due_at - pd.Timedelta(hours=policy.reminder_hours_before)


def due_alerts(items: pd.DataFrame, now: datetime, policy: FeedbackPolicy) -> pd.DataFrame:
    """Alerts due now for open items (columns id, owner, first_response_due_at, resolution_due_at,
    first_responded_at, resolved_at): a reminder to the owner shortly before each limit, an escalation to the
    escalation contact once it has passed. One row per item, kind and deadline (the store keeps each once)."""
    rows = []
    for item in items.to_dict("records"):
        for stage, due, done in (("response", item["first_response_due_at"], item["first_responded_at"]),
                                 ("resolution", item["resolution_due_at"], item["resolved_at"])):  # fmt: skip
            if done is not None and not pd.isna(done):
                continue
            due = pd.Timestamp(due).to_pydatetime()
            if now >= due:
                rows.append({"feedback_id": int(item["id"]), "kind": f"{stage}_escalation", "due_at": due,
                             "recipient": policy.escalation_contact})  # fmt: skip
            elif now >= reminder_time(due, policy):
                rows.append({"feedback_id": int(item["id"]), "kind": f"{stage}_reminder", "due_at": due,
                             "recipient": item["owner"] or policy.default_owner})  # fmt: skip
    return pd.DataFrame(rows, columns=["feedback_id", "kind", "due_at", "recipient"])


SURVEY_REPLY = re.compile(r"(?P<code>[A-Z0-9]{6})\W*(?P<score>[1-5])(?:\s*分)?\s*(?P<text>.*)", re.S | re.I)


def read_survey_reply(text: str) -> tuple[str, int, str] | None:
    """(survey code, score 1-5, comment) from a reply such as ``K7Q2MX 5 安装师傅很专业``; None if unreadable."""
    match = SURVEY_REPLY.search((text or "").strip())
    if not match:
        return None
    return match["code"].upper(), int(match["score"]), match["text"].strip()


# How mail clients quote the message answered: "> " lines under an attribution ("On … wrote:", QQ Mail's
# "在 … 写道："), or, in Outlook and Foxmail, the whole original below a separator or a "发件人:"/"From:" block.
QUOTED_LINE = re.compile(r"^\s*>")
ATTRIBUTION = re.compile(r"^\s*(on .+ wrote:|在.+写道[:：])\s*$", re.I)
ORIGINAL_BELOW = re.compile(r"^\s*(-{2,}\s*(原始邮件|original message)|发件人[:：]|from:)", re.I)
SUBJECT_CODE = re.compile(r"(?<![A-Z0-9])[A-Z0-9]{6}(?![A-Z0-9])")


def own_words(body: str) -> str:
    """The customer's own words in an email reply, above or below the quote (top- or bottom-posted): every line
    that is not quoted, not the attribution, and not below an Outlook/Foxmail original-message block."""
    lines = []
    for line in (body or "").splitlines():
        if ORIGINAL_BELOW.match(line):
            break
        if not (QUOTED_LINE.match(line) or ATTRIBUTION.match(line)):
            lines.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def survey_code_of_mail(subject: str, in_reply_to: str, references: list[str], code_of_message: dict[str, str],
                        codes: set[str]) -> str | None:  # fmt: skip
    """The survey an email answers: the survey email it replies to (In-Reply-To, then References, newest first;
    ``code_of_message`` maps a survey email's Message-ID local part to its code), else a known survey code in the
    subject (the survey's subject carries it: "请为我们的服务打分（K7Q2MX）"); None when it answers no survey."""
    for message_id in [in_reply_to, *reversed(references or [])]:
        local = str(message_id or "").strip().strip("<>").split("@")[0]
        if local in code_of_message:
            return code_of_message[local]
    return next((c for c in SUBJECT_CODE.findall(str(subject or "").upper()) if c in codes), None)
