"""After-sales, feedback and survey replies dropped as files (the phone form, the website contact form, the
platforms' refund lists and the SMS gateway's inbound messages write here; the demo's stand-ins do too).

Layout under the inbox folder: ``<kind>/<channel>/<name>.json`` (one record, or a list of records) and
``<kind>/<channel>/<name>.eml`` (a raw RFC 822 message). Kinds: ``requests``, ``feedback``, ``replies``. A record's
source key is its ``source_id``/``message_id`` field when it has one, else the file name and position; an email's
is its Message-ID. After the records of a folder are committed the flow moves the files it read to
``processed/<kind>/<channel>/`` (``move_processed``), so a cycle does not read every file ever dropped; a crash
before the move only means they are read again, which is harmless (the inbox keeps each record once). A file
that is not JSON is still handed on, as text, so it is kept and quarantined with its reason, never dropped.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from email import message_from_bytes
from email import policy as email_policy
from email.errors import MissingHeaderBodySeparatorDefect
from pathlib import Path

from connectors.email_body import body_text, envelope_of
from connectors.taobao_refunds import refund_requests

KINDS = ("requests", "feedback", "replies")


def read_inbox(root: Path) -> Iterator[tuple[str, str, list[tuple[str | None, object]]]]:
    """(kind, channel, records) per channel folder, files in name order."""
    for kind, channel, records, _files in read_inbox_files(root):
        yield kind, channel, records


def move_processed(root: Path, files: list[Path]) -> int:
    """Move files whose records are committed to ``processed/<kind>/<channel>/`` under ``root`` (a name already
    there gets a numbered suffix: nothing is overwritten); returns how many moved."""
    moved = 0
    for file in files:
        target_dir = root / "processed" / file.relative_to(root).parent
        target_dir.mkdir(parents=True, exist_ok=True)
        target, n = target_dir / file.name, 1
        while target.exists():
            target, n = target_dir / f"{file.stem}.{n}{file.suffix}", n + 1
        file.replace(target)
        moved += 1
    return moved


def read_inbox_files(root: Path) -> Iterator[tuple[str, str, list[tuple[str | None, object]], list[Path]]]:
    """(kind, channel, records, the files read) per channel folder, files in name order."""
    for kind in KINDS:
        base = root / kind
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            records: list[tuple[str | None, object]] = []
            files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in (".eml", ".json"))
            for file in files:
                if file.suffix == ".eml":
                    records.append(email_record(file.read_bytes()))
                elif file.suffix == ".json" and kind == "requests" and folder.name == "taobao":
                    records.extend(taobao_records(file))
                elif file.suffix == ".json":
                    records.extend(json_records(file))
            if records:
                yield kind, folder.name, records, files


def email_record(raw: bytes) -> tuple[str | None, dict]:
    message = message_from_bytes(raw, policy=email_policy.default)
    env = envelope_of(message)
    return env["message_id"] or None, {"contact": env["from"], "subject": env["subject"],
                                       "body": body_text(message).strip(), "text": body_text(message).strip(),
                                       "received_at": env["date"]}  # fmt: skip


def mail_record(raw: bytes) -> tuple[str | None, dict]:
    """A message read from the service mailbox: ``email_record``'s fields plus what tells a survey reply
    (``in_reply_to``, ``references``) and the raw RFC 822 message itself (``rfc822``; ``rfc822_base64`` when it is
    not UTF-8), so nothing of it is lost. A message that is not RFC 822 (no header block, no From) is handed on
    with ``unreadable`` saying why, to be quarantined; its key is then its content."""
    try:
        kept = {"rfc822": raw.decode("utf-8")}
    except UnicodeDecodeError:
        kept = {"rfc822_base64": base64.b64encode(raw).decode("ascii")}
    message = message_from_bytes(raw, policy=email_policy.default)
    no_headers = any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in message.defects)
    if no_headers or not message.get("From"):
        return None, {**kept, "unreadable": "not an RFC 822 message: " + (
            "no header block" if no_headers else "no From header")}  # fmt: skip
    key, record = email_record(raw)
    return key, {**record, **kept, "in_reply_to": str(message.get("In-Reply-To") or "").strip(),
                 "references": str(message.get("References") or "").split()}  # fmt: skip


def oversized_mail_record(headers: bytes, size: int, limit_mb: float) -> tuple[str | None, dict]:
    """A message over the size limit, not downloaded: its headers kept, to be quarantined with the reason."""
    message = message_from_bytes(headers, policy=email_policy.default)
    key = str(message.get("Message-ID") or "").strip() or None
    return key, {"rfc822_headers": headers.decode("utf-8", "replace"), "unreadable": (
        f"the message is {size:,} bytes, over the {limit_mb:g} MB limit "
        "([feedback.mailbox] max_message_mb); not downloaded, its headers kept, left in the mailbox")}  # fmt: skip


def taobao_records(file: Path) -> list[tuple[str | None, object]]:
    """A saved ``taobao.refunds.receive.get`` answer: one request per refund."""
    text = file.read_text(encoding="utf-8", errors="replace")
    try:
        return refund_requests(json.loads(text))
    except ValueError:
        return [(file.name, text)]


def json_records(file: Path) -> list[tuple[str | None, object]]:
    text = file.read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return [(f"{file.name}", text)]
    items = data if isinstance(data, list) else [data]
    return [((str(i.get("source_id") or i.get("message_id") or "") or f"{file.name}#{n}")
             if isinstance(i, dict) else f"{file.name}#{n}", i) for n, i in enumerate(items)]  # fmt: skip
