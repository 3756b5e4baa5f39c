"""Sending the notification outbox (P2): email over SMTP, SMS over the HTTP gateway; each notice once.

Discipline (at-least-once made as close to exactly-once as the protocols allow):

1. **Claim** a batch of due rows in one short transaction: ``UPDATE … SET status='sending', attempts+1,
   next_attempt_at=now+lease WHERE id IN (…) AND <still due> RETURNING …``. The due condition is re-checked in the
   UPDATE itself, so two senders never claim the same row (PostgreSQL re-evaluates it after a row lock; SQLite
   serialises writers).
2. **Send** outside any transaction (a slow relay must not hold the database).
3. **Mark** each message right after it went out, in its own transaction together with its ``notification`` event
   on the order: ``status='sent'`` only where the row is still ours (``status='sending'`` and our attempt number).
   A crash between 2 and 3 leaves the row ``sending``; after the lease it is claimed again. That resend carries the
   same Message-ID / SMS ``client_ref``, so the relay/gateway can drop the duplicate.

Failures stay visible in the outbox: ``status='failed'``, ``attempts``, ``last_error``, and ``next_attempt_at`` (the
retry time, doubling per attempt; empty when the notice was given up: a permanent error or ``max_attempts``).
A relay that is down fails the rest of its batch at once instead of timing out message by message.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, bindparam, or_, select, update

from connectors.sms_gateway import SmsGateway, SmsSendError
from connectors.smtp_mail import MailSendError, OutgoingMail, SmtpMailer
from yidi.bulk import frame_records, utc_now
from yidi.db import for_writing
from yidi.lifecycle import record_events
from yidi.masking import mask_phone
from yidi.schema import notification_outbox as outbox
from yidi.settings import Settings, get_settings
from yidi.steps import NO_CACHE, exponential_backoff, task

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "yidi" / "templates"
MOBILE = re.compile(r"^1[3-9]\d{9}$")
_PHONE_NOISE = re.compile(r"[\s\-()（）]")


class TemplateError(ValueError):
    """A template is missing or needs a value the notice does not carry (never retried)."""


@dataclass
class SendReport:
    claimed: int = 0
    sent: int = 0
    failed: int = 0  # will be retried
    gave_up: int = 0  # permanent error or out of attempts: stays failed
    by_medium: Counter = field(default_factory=Counter)
    errors: list[dict] = field(default_factory=list)  # masked, for artifacts
    unreachable: dict[str, str] = field(default_factory=dict)  # medium -> why its relay/gateway did not answer

    def add(self, other: SendReport) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.failed += other.failed
        self.gave_up += other.gave_up
        self.by_medium.update(other.by_medium)
        self.errors.extend(other.errors)
        self.unreachable.update(other.unreachable)

    def as_dict(self) -> dict:
        return {"claimed": self.claimed, "sent": self.sent, "failed": self.failed, "gave_up": self.gave_up,
                "by_medium": dict(self.by_medium), "unreachable": dict(self.unreachable)}  # fmt: skip


# --- rendering -------------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _template_text(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise TemplateError(f"bad template name {name!r}")
    path = TEMPLATES_DIR / f"{name}.zh.txt"
    if not path.is_file():
        raise TemplateError(f"no template {path.name} in {TEMPLATES_DIR}")
    return path.read_text(encoding="utf-8")


def _display(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "\n".join(f"{i}. {_display(item)}" for i, item in enumerate(value, start=1))
    return str(value)


def render(template: str, context: dict | str, settings: Settings | None = None) -> tuple[str, str]:
    """(subject, body) of ``yidi/templates/<template>.zh.txt``; lists in the context become numbered lines."""
    settings = settings or get_settings()
    if isinstance(context, str):
        context = json.loads(context or "{}")
    values = {
        "company_name": settings.general.company_name,
        "service_contact": settings.notifications.service_contact,
        **{key: _display(value) for key, value in context.items()},
    }
    text = _template_text(template)
    first, _, rest = text.partition("\n")
    subject, body = (first[len("Subject:"):].strip(), rest) if first.startswith("Subject:") else ("", text)
    try:
        return (string.Template(subject).substitute(values), string.Template(body).substitute(values).strip())
    except KeyError as exc:
        raise TemplateError(f"template {template} needs ${{{exc.args[0]}}}, which the notice does not carry") from None
    except ValueError as exc:
        raise TemplateError(f"template {template} is malformed: {exc}") from None


def sms_number(recipient: str) -> str | None:
    """A mainland mobile number in the gateway's form, or None (landlines cannot receive SMS)."""
    digits = _PHONE_NOISE.sub("", str(recipient))
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            digits = digits[len(prefix):]
    return digits if MOBILE.match(digits) else None


def sms_numbers(recipients: pd.Series) -> pd.Series:
    """``sms_number`` of a whole column (None where there is none). Texts of plain ASCII digits, what intake stores,
    are checked column-wise in Arrow; anything else goes through ``sms_number`` itself."""
    present = recipients.notna().to_numpy()
    text = pd.Series(recipients.where(present, "").astype(str).to_numpy(), dtype="string[pyarrow]")
    digits_only = text.str.fullmatch(r"[0-9]+").to_numpy(dtype=bool)
    number = text.str.replace(r"^0086", "", regex=True)  # the only prefix plain digits can carry
    mobile = number.str.fullmatch(r"1[3-9][0-9]{9}").to_numpy(dtype=bool)
    out = pd.Series(np.where(digits_only & mobile, number.to_numpy(dtype=object), None), index=recipients.index,
                    dtype=object)
    other = np.flatnonzero(present & ~digits_only)
    if len(other):
        out.iloc[other] = [sms_number(v) for v in recipients.iloc[other].tolist()]
    return out


def mask_recipient(medium: str, recipient: str) -> str:
    if medium == "sms":
        return mask_phone(sms_number(recipient) or recipient)
    local, _, domain = str(recipient).partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


# --- claim / send / mark ---------------------------------------------------------------------------------------


def _due(now: datetime):
    return or_(
        and_(outbox.c.status == "pending", or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now)),
        and_(outbox.c.status == "failed", outbox.c.next_attempt_at.is_not(None), outbox.c.next_attempt_at <= now),
        # A claim whose lease ran out: the sender died between sending and marking.
        and_(outbox.c.status == "sending", outbox.c.next_attempt_at <= now),
    )


def claim_due(engine: Engine, now: datetime, limit: int, lease_seconds: float,
              media: tuple[str, ...] = ("email", "sms")) -> pd.DataFrame:
    """Claim up to ``limit`` due notices (oldest first) for this sender; returns the claimed rows."""
    lease_until = now + timedelta(seconds=lease_seconds)
    with for_writing(engine).begin() as conn:
        ids = conn.execute(
            select(outbox.c.id).where(_due(now), outbox.c.medium.in_(media)).order_by(outbox.c.id).limit(limit)
        ).scalars().all()
        if not ids:
            return pd.DataFrame(columns=["id", "order_id", "medium", "recipient", "template", "context",
                                         "dedupe_key", "attempts"])  # fmt: skip
        claimed = conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(ids), _due(now))
            .values(status="sending", attempts=outbox.c.attempts + 1, next_attempt_at=lease_until)
            .returning(outbox.c.id, outbox.c.order_id, outbox.c.medium, outbox.c.recipient, outbox.c.template,
                       outbox.c.context, outbox.c.dedupe_key, outbox.c.attempts)
        ).all()  # fmt: skip
    frame = pd.DataFrame(claimed, columns=["id", "order_id", "medium", "recipient", "template", "context",
                                           "dedupe_key", "attempts"])  # fmt: skip
    return frame.sort_values("id", ignore_index=True)


def retry_delay(attempts: int, base: float, cap: float) -> timedelta:
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))


def _mark_sent(engine: Engine, row: dict, now: datetime, detail: str) -> bool:
    with engine.begin() as conn:
        done = conn.execute(
            update(outbox)
            .where(outbox.c.id == row["id"], outbox.c.status == "sending", outbox.c.attempts == row["attempts"])
            .values(status="sent", sent_at=now, last_error=None, next_attempt_at=None)
        ).rowcount
        if done and row.get("order_id") is not None and not pd.isna(row["order_id"]):
            record_events(conn, pd.DataFrame({
                "order_id": [int(row["order_id"])], "kind": ["notification"],
                "reason": [f"{'邮件' if row['medium'] == 'email' else '短信'}已发送：{row['template']}"],
                "details": [{"outbox_id": int(row["id"]), "medium": row["medium"], "template": row["template"],
                             "recipient": mask_recipient(row["medium"], row["recipient"]), "ref": detail}],
            }), actor="notifier")  # fmt: skip
    return bool(done)


def _mark_failed(engine: Engine, rows: list[dict], error: str, transient: bool, now: datetime,
                 policy) -> tuple[int, int]:
    """Record a failure for ``rows``; returns (to retry, given up)."""
    retry = gave_up = 0
    params = []
    for row in rows:
        again = transient and row["attempts"] < policy.max_attempts
        next_at = now + retry_delay(row["attempts"], policy.retry_base_seconds, policy.retry_max_seconds)
        params.append({"oid": row["id"], "att": row["attempts"], "err": error[:1000],
                       "next_at": next_at if again else None})  # fmt: skip
        retry += again
        gave_up += not again
    with engine.begin() as conn:
        conn.execute(
            update(outbox)
            .where(outbox.c.id == bindparam("oid"), outbox.c.status == "sending", outbox.c.attempts == bindparam("att"))
            .values(status="failed", last_error=bindparam("err"), next_attempt_at=bindparam("next_at")),
            params,
        )
    return retry, gave_up


def _send_email(rows: list[dict], engine: Engine, settings: Settings, now: datetime, report: SendReport) -> None:
    if not rows:
        return
    with SmtpMailer.from_settings(settings) as mailer:
        for index, row in enumerate(rows):
            try:
                subject, body = render(row["template"], row["context"], settings)
                message_id = mailer.send(OutgoingMail(row["recipient"], subject, body, row["dedupe_key"]))
            except TemplateError as exc:
                _fail(engine, [row], str(exc), False, now, settings, report)
                continue
            except MailSendError as exc:
                # A dead relay fails this and every remaining message now; they are retried together later.
                _fail(engine, rows[index:] if exc.connection else [row], str(exc), exc.transient, now, settings,
                      report)
                if exc.connection:
                    report.unreachable["email"] = str(exc)  # names the relay and why
                    return
                continue
            _sent(engine, row, now, message_id, report)


def _send_sms(rows: list[dict], engine: Engine, settings: Settings, now: datetime, report: SendReport) -> None:
    if not rows:
        return
    with SmsGateway.from_settings(settings) as gateway:
        for index, row in enumerate(rows):
            number = sms_number(row["recipient"])
            if number is None:
                _fail(engine, [row], "not a mainland mobile number: SMS impossible", False, now, settings, report)
                continue
            try:
                _, body = render(row["template"], row["context"], settings)
                result = gateway.send(number, body, row["dedupe_key"])
            except TemplateError as exc:
                _fail(engine, [row], str(exc), False, now, settings, report)
                continue
            except SmsSendError as exc:
                _fail(engine, rows[index:] if exc.connection else [row], str(exc), exc.transient, now, settings,
                      report)
                if exc.connection:
                    report.unreachable["sms"] = f"{exc} at {settings.notifications.sms_gateway_url}"
                    return
                continue
            _sent(engine, row, now, result.message_id, report)


def _sent(engine, row, now, ref, report: SendReport) -> None:
    if _mark_sent(engine, row, now, ref):
        report.sent += 1
        report.by_medium[f"{row['medium']}:sent"] += 1


def _fail(engine, rows, error, transient, now, settings, report: SendReport) -> None:
    retry, gave_up = _mark_failed(engine, rows, error, transient, now, settings.notifications)
    report.failed += retry
    report.gave_up += gave_up
    for row in rows:
        report.by_medium[f"{row['medium']}:failed"] += 1
        if len(report.errors) < 50:
            report.errors.append({"outbox_id": int(row["id"]), "medium": row["medium"],
                                  "recipient": mask_recipient(row["medium"], row["recipient"]),
                                  "template": row["template"], "attempts": int(row["attempts"]),
                                  "error": error[:200], "retry": bool(transient)})  # fmt: skip


def send_batch(engine: Engine, *, now: datetime | None = None, settings: Settings | None = None,
               limit: int | None = None) -> SendReport:
    """Claim one batch of due notices, send them, mark each. Plain function: the task and tests call it."""
    settings = settings or get_settings()
    now = now or utc_now()
    policy = settings.notifications
    claimed = claim_due(engine, now, limit or policy.send_batch_size, policy.claim_lease_seconds)
    report = SendReport(claimed=len(claimed))
    if claimed.empty:
        return report
    rows = frame_records(claimed)
    _send_email([r for r in rows if r["medium"] == "email"], engine, settings, now, report)
    _send_sms([r for r in rows if r["medium"] == "sms"], engine, settings, now, report)
    return report


def outbox_status(engine: Engine) -> pd.DataFrame:
    """Counts by medium and status (for artifacts and the CLI)."""
    with engine.connect() as conn:
        from sqlalchemy import func

        rows = conn.execute(
            select(outbox.c.medium, outbox.c.status, func.count().label("count"))
            .group_by(outbox.c.medium, outbox.c.status)
            .order_by(outbox.c.medium, outbox.c.status)
        ).all()
    return pd.DataFrame(rows, columns=["medium", "status", "count"])


@task(name="send-notification-batch", retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=5),
      retry_jitter_factor=0.5, cache_policy=NO_CACHE)  # fmt: skip
def send_batch_task(engine: Engine | None = None, *, now: datetime | None = None,
                    settings: Settings | None = None) -> SendReport:
    """One claimed batch (retried on database errors; message failures are recorded, not raised)."""
    from yidi.db import get_engine

    return send_batch(engine or get_engine(), now=now, settings=settings)
