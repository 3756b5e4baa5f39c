"""The service mailbox's messages (``connectors.service_inbox_files.mail_record``) land in the after-sales inbox:
a reply to a satisfaction survey email (In-Reply-To/References naming the survey's Message-ID, or the survey's code
in the subject) with a readable score lands as that survey's reply; everything else as email feedback, exactly as
an .eml dropped in ``feedback/email/`` does (same channel, same Message-ID key: a message both dropped and read
from the mailbox is one item). A reply to a survey without a score 1-5 is the customer writing to us: feedback.
Unreadable messages are quarantined by the feedback path with their reason and raw content.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, select

from connectors.smtp_mail import message_id_for
from tasks.feedback.queue import land_feedback
from tasks.feedback.rules import own_words, read_survey_reply, survey_code_of_mail
from tasks.feedback.surveys import land_survey_replies
from yidi.bulk import read_frame
from yidi.schema_aftersales import surveys
from yidi.settings import Settings


def _survey_messages(conn: Connection) -> tuple[dict[str, str], set[str]]:
    """Each survey email's Message-ID local part (the notifier derives it from the outbox key ``survey:<key>``,
    ``connectors.smtp_mail.message_id_for``) -> the survey's code; and every code."""
    known = read_frame(conn, select(surveys.c.survey_key, surveys.c.code))
    by_message = {message_id_for(f"survey:{k}", "").strip("<>").split("@")[0]: c
                  for k, c in zip(known["survey_key"], known["code"], strict=True)}  # fmt: skip
    return by_message, set(known["code"])


def land_mail(conn: Connection, records: Sequence[tuple[str | None, dict]], settings: Settings,
              now: datetime) -> dict:  # fmt: skip
    """Land mailbox records (Message-ID, mail record); returns the counts of each path."""
    by_message, codes = _survey_messages(conn)
    replies, feedback = [], []
    for key, record in records:
        code = None if record.get("unreadable") else survey_code_of_mail(
            record.get("subject") or "", record.get("in_reply_to") or "", record.get("references") or [],
            by_message, codes)  # fmt: skip
        words = own_words(record.get("body") or "") if code else ""
        if code and read_survey_reply(words) is None:
            words = f"{code} {words}"  # the reply names its survey by its headers: the customer wrote the score only
        if code and read_survey_reply(words) is not None and read_survey_reply(words)[0] == code:
            replies.append((key, {**record, "text": words}))
        else:
            feedback.append((key, record))
    return {"feedback": land_feedback(conn, "email", feedback, settings, now),
            "survey_replies": land_survey_replies(conn, "email", replies, now)}  # fmt: skip
