"""Outgoing mail over SMTP (stdlib ``smtplib``): one connection per sending pass, errors classified for retry.

The relay is the policy file's ``notifications.smtp_host``/``smtp_port`` (optionally STARTTLS); the login comes from
the environment variables the policy names (``YIDI_SMTP_USER`` / ``YIDI_SMTP_PASSWORD`` by default), never from
code or logs. Each message carries a ``Message-ID`` derived from its outbox key, so a relay or mailbox that sees
the same message twice (after a crash between sending and recording) can tell it is the same message.
"""

from __future__ import annotations

import hashlib
import os
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate

DEFAULT_TIMEOUT = 10.0


class MailSendError(Exception):
    """A message was not accepted. ``transient``: worth retrying later; ``connection``: every message is affected
    (the relay is down or refuses us), so the rest of the pass is not attempted."""

    def __init__(self, message: str, *, transient: bool, connection: bool = False):
        super().__init__(message)
        self.transient = transient
        self.connection = connection


@dataclass(frozen=True)
class OutgoingMail:
    to: str
    subject: str
    body: str
    key: str  # the outbox dedupe key: stable per message


def message_id_for(key: str, sender: str) -> str:
    domain = sender.rsplit("@", 1)[-1] if "@" in sender else "yidi.local"
    return f"<{hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]}@{domain}>"


def build_message(mail: OutgoingMail, sender: str, sender_name: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = formataddr((sender_name, sender)) if sender_name else sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id_for(mail.key, sender)
    message["X-Yidi-Key"] = mail.key
    message.set_content(mail.body, charset="utf-8")
    return message


def _is_transient_code(code: int | None) -> bool:
    # SMTP 4xx replies are temporary by definition (RFC 5321 §4.2.1); 5xx are permanent.
    return code is None or 400 <= int(code) < 500


class SmtpMailer:
    """Send many messages over one connection: ``with SmtpMailer(...) as mailer: mailer.send(mail)``."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        sender_name: str | None = None,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        self.host, self.port, self.sender, self.sender_name = host, port, sender, sender_name
        self.starttls, self.username, self.password, self.timeout = starttls, username, password, timeout
        self._smtp: smtplib.SMTP | None = None

    @classmethod
    def from_settings(cls, settings=None) -> SmtpMailer:
        from yidi.settings import get_settings

        settings = settings or get_settings()
        policy = settings.notifications
        return cls(
            policy.smtp_host,
            policy.smtp_port,
            policy.mail_from,
            sender_name=settings.general.company_name,
            starttls=policy.smtp_starttls,
            username=os.environ.get(policy.smtp_user_env) or None,
            password=os.environ.get(policy.smtp_password_env) or None,
            timeout=policy.smtp_timeout_seconds,
        )

    def _connect(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            # A login problem is an operator's to fix; keep the notices and retry after that.
            raise MailSendError(f"SMTP login refused by {self.host}:{self.port} ({exc.smtp_code})",
                                transient=True, connection=True) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise MailSendError(f"SMTP relay {self.host}:{self.port} unreachable: {type(exc).__name__}: {exc}",
                                transient=True, connection=True) from None
        self._smtp = smtp
        return smtp

    def send(self, mail: OutgoingMail) -> str:
        """Hand one message to the relay; returns its Message-ID. Raises ``MailSendError``."""
        smtp = self._connect()
        message = build_message(mail, self.sender, self.sender_name)
        try:
            refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0] if exc.recipients else None
            raise MailSendError(f"recipient refused ({code})", transient=_is_transient_code(code)) from None
        except smtplib.SMTPResponseException as exc:
            raise MailSendError(f"relay answered {exc.smtp_code}: {exc.smtp_error!r}",
                                transient=_is_transient_code(exc.smtp_code)) from None
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._smtp = None
            raise MailSendError(f"connection to {self.host}:{self.port} lost: {type(exc).__name__}",
                                transient=True, connection=True) from None
        if refused:
            code = next(iter(refused.values()))[0]
            raise MailSendError(f"recipient refused ({code})", transient=_is_transient_code(code))
        return str(message["Message-ID"])

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._smtp = None

    def __enter__(self) -> SmtpMailer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
