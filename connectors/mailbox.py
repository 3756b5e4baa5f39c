"""Where order emails wait: a Maildir folder or an IMAP mailbox (stdlib ``imaplib``).

A message is read without being marked (IMAP ``BODY.PEEK[]``) and marked processed only when asked, after its
records are committed (IMAP: ``STORE +FLAGS`` with the configured flag, default ``\\Seen``; Maildir: moved to
``cur/`` with the flag letter, default ``S``). An oversized message can be looked at by its headers alone.
"""

from __future__ import annotations

import imaplib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from connectors.base import ChannelError, TransientChannelError


@dataclass
class MailItem:
    ref: str  # where it is: imap://user@host/INBOX;UID=12 or maildir:/path/new/xyz
    size: int
    load: Callable[[], bytes]
    mark: Callable[[], None]
    headers: Callable[[], bytes]  # headers only (cheap), for refused oversized messages


class MaildirSource:
    def __init__(self, path: Path, flag: str = "S") -> None:
        self.path, self.flag = Path(path), flag

    def items(self) -> Iterator[MailItem]:
        for sub in ("new", "cur", "tmp"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        files = sorted((self.path / "new").iterdir()) + sorted((self.path / "cur").iterdir())
        for file in files:
            if not file.is_file() or file.name.startswith("."):
                continue
            base, _, info = file.name.partition(":2,")
            if self.flag in info:
                continue
            yield MailItem(
                ref=f"maildir:{file}",
                size=file.stat().st_size,
                load=file.read_bytes,
                mark=lambda f=file, b=base, i=info: self._mark(f, b, i),
                headers=lambda f=file: _read_headers(f),
            )

    def _mark(self, file: Path, base: str, info: str) -> None:
        flags = "".join(sorted(set(info) | {self.flag}))
        if file.exists():
            os.replace(file, self.path / "cur" / f"{base}:2,{flags}")

    def close(self) -> None:
        pass


def _read_headers(file: Path) -> bytes:
    out = bytearray()
    with file.open("rb") as handle:
        for line in handle:
            if line in (b"\r\n", b"\n") or len(out) > 64_000:
                break
            out += line
    return bytes(out)


class ImapSource:
    def __init__(self, host: str, port: int, user: str, password: str, *, mailbox: str = "INBOX",
                 use_ssl: bool = False, flag: str = "\\Seen", timeout: float = 30.0) -> None:
        self.host, self.port, self.user, self.mailbox, self.flag = host, port, user, mailbox, flag
        try:
            cls = imaplib.IMAP4_SSL if use_ssl else imaplib.IMAP4
            self.conn = cls(host, port, timeout=timeout)
        except OSError as exc:
            raise TransientChannelError(f"IMAP server {host}:{port} unreachable: {exc}") from None
        try:
            self.conn.login(user, password)
        except imaplib.IMAP4.error as exc:
            self._close()
            raise ChannelError(f"IMAP login refused for {user} at {host}:{port} ({_decode(exc)}); check the user "
                               "and password environment variables") from None
        status, data = self.conn.select(_quote_mailbox(mailbox))
        if status != "OK":
            self._close()
            raise ChannelError(f"IMAP mailbox {mailbox!r} cannot be opened: {_decode(data)}")

    def items(self) -> Iterator[MailItem]:
        criterion = "UNSEEN" if self.flag == "\\Seen" else f"UNKEYWORD {self.flag}"
        status, data = self.conn.uid("SEARCH", None, criterion)
        if status != "OK":
            raise TransientChannelError(f"IMAP SEARCH failed: {_decode(data)}")
        uids = [u.decode() for u in (data[0] or b"").split()]
        base = f"imap://{self.user}@{self.host}:{self.port}/{self.mailbox}"
        for uid in uids:
            status, data = self.conn.uid("FETCH", uid, "(RFC822.SIZE)")
            match = re.search(rb"RFC822\.SIZE (\d+)", data[0] if data and isinstance(data[0], bytes) else b"")
            size = int(match.group(1)) if match else 0
            yield MailItem(
                ref=f"{base};UID={uid}",
                size=size,
                load=lambda u=uid: self._fetch(u, "BODY.PEEK[]"),
                mark=lambda u=uid: self._store(u),
                headers=lambda u=uid: self._fetch(u, "BODY.PEEK[HEADER]"),
            )

    def _fetch(self, uid: str, what: str) -> bytes:
        status, data = self.conn.uid("FETCH", uid, f"({what})")
        if status != "OK":
            raise TransientChannelError(f"IMAP FETCH {uid} failed: {_decode(data)}")
        for part in data:
            if isinstance(part, tuple):
                return part[1]
        raise TransientChannelError(f"IMAP FETCH {uid} returned no message body")

    def _store(self, uid: str) -> None:
        status, data = self.conn.uid("STORE", uid, "+FLAGS", f"({self.flag})")
        if status != "OK":
            raise TransientChannelError(f"IMAP STORE {uid} failed: {_decode(data)}")

    def _close(self) -> None:
        try:
            self.conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass

    def close(self) -> None:
        self._close()


def _decode(value) -> str:
    if isinstance(value, Exception):
        value = value.args[0] if value.args else str(value)
    if isinstance(value, list):
        value = b" ".join(v for v in value if isinstance(v, bytes))
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _quote_mailbox(name: str) -> str:
    return f'"{name}"' if " " in name else name

