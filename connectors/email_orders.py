"""Email orders: messages in a Maildir folder or an IMAP mailbox (``connectors.mailbox``).

An order email carries the order template as a csv/xlsx attachment (any number of orders), or one order in the
body as simple ``key: value`` lines (same names as the template's columns) with one ``商品:`` line per item::

    订单号: E2026-0001          (optional: the message id is used when absent)
    客户: 张三
    电话: 138 1234 5678
    地址: 四川省成都市武侯区人民南路四段1号
    商品: SKU-0002 摩托车头盔 x 2 @ 189.00
    商品: SV-INSTALL 设备上门安装 x 1 @ 300
    付款方式: 支付宝

(read by ``connectors.email_body``). Each message is read once: after its records are committed it is marked processed (IMAP: ``STORE +FLAGS`` with
the configured flag, default ``\\Seen``, fetched with ``BODY.PEEK[]`` so reading alone never marks it; Maildir: moved
to ``cur/`` with the flag letter, default ``S``). A message over ``max_message_mb`` is not downloaded: it is
quarantined with its headers and left in the mailbox. Attachment names are made safe (no path separators, no
``..``) before the attachment is archived under ``$YIDI_HOME/intake/mail/``.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import io
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from connectors.base import (
    LINE_COLUMNS,
    ORDER_COLUMNS,
    Batch,
    ChannelError,
    Connector,
    Parsed,
    empty_lines,
    empty_orders,
    empty_problems,
    frame_from_rows,
    make_records,
    problem_rows,
)
from connectors.email_body import (
    BodyPart,
    body_content,
    body_text,
    envelope_of,
    parse_body,
    parse_body_rows,
    split_body_content,
)
from connectors.mailbox import ImapSource, MaildirSource
from connectors.spreadsheet_orders import read_xlsx_chunks
from connectors.template.csv_rows import UnreadableFile, detect_encoding, iter_csv_chunks
from connectors.template.records import CONTENT_TYPE as TEMPLATE_TYPE
from connectors.template.records import SeenOrders, build_template_records, parse_template_records

BODY_TYPE = "text/plain; order-email"
REJECTED_TYPE = "text/plain; email-not-understood"


def safe_filename(name: str | None, fallback: str = "attachment") -> str:
    """A file name without directories, separators, control characters or leading dots."""
    text = (name or "").replace("\\", "/").split("/")[-1]
    text = re.sub(r"[\x00-\x1f<>:\"|?*]", "_", text).strip().lstrip(".")
    return text[:120] or fallback


def _merge(parts: list) -> tuple[pd.DataFrame, Parsed]:
    """One records frame and one parse for a batch: body parts first (built from rows at once), then tables."""
    bodies = [p for p in parts if isinstance(p, BodyPart)]
    tables = [p for p in parts if not isinstance(p, BodyPart)]
    records, orders, lines, problems = [], [], [], []
    if bodies:
        body_orders, body_lines, body_problems = [], [], []
        for i, part in enumerate(bodies):
            body_orders += [{**row, "record_idx": i} for row in part.orders]
            body_lines += [{**row, "record_idx": i} for row in part.lines]
            body_problems += [(i, reason) for _, reason in part.problems]
        keys = [part.orders[0]["channel_order_id"] if part.orders else None for part in bodies]
        records.append(make_records([p.content for p in bodies], [p.ref for p in bodies], content_type=BODY_TYPE,
                                    source_keys=keys))
        orders.append(frame_from_rows(body_orders, ORDER_COLUMNS))
        lines.append(frame_from_rows(body_lines, LINE_COLUMNS))
        problems.append(problem_rows(body_problems))
    offset = len(bodies)
    for recs, parsed in tables:
        for frame, bucket in ((parsed.orders, orders), (parsed.lines, lines), (parsed.problems, problems)):
            if len(frame):
                shifted = frame.copy()
                shifted["record_idx"] = shifted["record_idx"].astype("int64") + offset
                bucket.append(shifted)
        records.append(recs)
        offset += len(recs)
    return (
        pd.concat(records, ignore_index=True) if records else make_records([], [], content_type=BODY_TYPE),
        Parsed(
            pd.concat(orders, ignore_index=True) if orders else empty_orders(),
            pd.concat(lines, ignore_index=True) if lines else empty_lines(),
            pd.concat(problems, ignore_index=True) if problems else empty_problems(),
        ),
    )


def _rejected(content: str, ref: str, reason: str) -> tuple[pd.DataFrame, Parsed]:
    records = make_records([content], ref, content_type=REJECTED_TYPE)
    return records, Parsed(empty_orders(), empty_lines(), problem_rows([(0, reason)]))


def process_message(raw: bytes, ref: str, *, archive_dir: Path | None, chunk_rows: int = 50_000,
                    received_at: datetime | None = None) -> list[tuple[pd.DataFrame, Parsed]]:
    """Records (with their parse) for one message: its attachments' orders, else the order in its body."""
    received_at = received_at or datetime.now(UTC)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    envelope = envelope_of(message)
    parts: list[tuple[pd.DataFrame, Parsed]] = []
    attachments = [p for p in message.walk() if not p.is_multipart() and (
        p.get_content_disposition() == "attachment" or p.get_filename())]
    table_found = False
    message_key = hashlib.sha256((envelope["message_id"] or ref).encode()).hexdigest()[:16]
    for n, part in enumerate(attachments, start=1):
        name = safe_filename(part.get_filename(), f"attachment-{n}")
        suffix = Path(name).suffix.lower()
        if suffix not in (".csv", ".xlsx", ".xlsm", ".txt"):
            continue
        table_found = True
        data = part.get_payload(decode=True) or b""
        saved = None
        if archive_dir is not None:
            folder = archive_dir / datetime.now(UTC).strftime("%Y-%m-%d") / message_key
            folder.mkdir(parents=True, exist_ok=True)
            saved = folder / name
            saved.write_bytes(data)
        attachment_ref = f"{ref}#attachment={name}"
        try:
            if suffix in (".xlsx", ".xlsm"):
                try:
                    chunks = list(read_xlsx_chunks(data, chunk_rows))
                except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
                    raise UnreadableFile(f"not a readable xlsx workbook ({type(exc).__name__})") from None
            else:
                stream = io.BytesIO(data)
                encoding = detect_encoding(stream)
                chunks = list(iter_csv_chunks(io.TextIOWrapper(stream, encoding=encoding, newline=""),
                                              chunk_rows))
        except UnreadableFile as exc:
            parts.append(_rejected(
                body_content(envelope, f"[attachment {name}, {len(data)} bytes, kept at {saved}]"),
                attachment_ref,
                f"attachment {name}: {exc}; ask the sender for xlsx or a UTF-8/GBK csv of the order template "
                f"(the attachment is kept at {saved})",
            ))
            continue
        seen = SeenOrders()
        for chunk in chunks:
            result = build_template_records(chunk, source_ref=attachment_ref, default_channel="email",
                                            received_at=received_at, seen_before=seen)
            parsed = result.parsed
            _fill_sender(parsed.orders, envelope["from"])
            seen.add(result.orders_seen)
            parts.append((result.records, parsed))
    if table_found:
        return parts
    body = body_text(message)
    content = body_content(envelope, body)
    orders, lines, problems = parse_body_rows(envelope, body, 0, received_at)
    return [BodyPart(content, ref, orders, lines, problems)]


def _fill_sender(orders: pd.DataFrame, sender: str) -> None:
    if sender and len(orders):
        orders["customer_email"] = orders["customer_email"].fillna(sender)


def parse_body_records(records: pd.DataFrame, received_at: datetime | None = None) -> Parsed:
    received_at = received_at or datetime.now(UTC)
    parts = []
    for content, ref in zip(records["content"].tolist(), records["source_ref"].tolist(), strict=True):
        envelope, body = split_body_content(content)
        parts.append(BodyPart(content, ref, *parse_body_rows(envelope, body, 0, received_at)))
    return _merge(parts)[1]


class EmailConnector(Connector):
    """Options: source ("maildir"|"imap"), maildir, host, port, user_env, password_env, mailbox, ssl,
    processed_flag, max_message_mb, archive (bool), files (explicit .eml paths), batch_records."""

    def _source(self):
        o = self.options
        if o.get("source", "maildir") == "imap":
            user = os.environ.get(o.get("user_env", ""), "")
            password = os.environ.get(o.get("password_env", ""), "")
            if not user or not password:
                raise ChannelError(f"email: environment variables {o.get('user_env')} / {o.get('password_env')} "
                                   "(IMAP user and password) are not set")
            return ImapSource(o.get("host", "127.0.0.1"), int(o.get("port", 143)), user, password,
                              mailbox=o.get("mailbox", "INBOX"), use_ssl=bool(o.get("ssl", False)),
                              flag=o.get("processed_flag", "\\Seen"), timeout=float(o.get("timeout_seconds", 30)))
        from yidi.settings import yidi_home

        folder = Path(o.get("maildir", "inbox/mail")).expanduser()
        folder = folder if folder.is_absolute() else yidi_home() / folder
        return MaildirSource(folder, flag=o.get("processed_flag", "S"))

    def _archive_dir(self) -> Path | None:
        if not self.options.get("archive", True):
            return None
        from yidi.settings import yidi_home

        return yidi_home() / "intake" / "mail"

    def fetch(self, cursor: str | None) -> Iterator[Batch]:
        if self.options.get("files"):
            for file in self.options["files"]:
                path = Path(file)
                parts = self._message_parts(path.read_bytes(), f"file:{path.name}", path.stat().st_size)
                records, parsed = _merge(parts)
                yield Batch(records, parsed=parsed, label=path.name)
            return
        source = self._source()
        limit = int(float(self.options.get("max_message_mb", 30)) * 2**20)
        batch_records = int(self.options.get("batch_records", 2_000))
        try:
            pending: list = []
            marks: list[Callable[[], None]] = []
            for item in source.items():
                if item.size > limit:
                    head = item.headers().decode("utf-8", "replace")
                    message = email.message_from_string(head, policy=email.policy.default)
                    content = body_content(envelope_of(message), f"[message of {item.size:,} bytes not downloaded]")
                    pending.append(_rejected(content, item.ref, (
                        f"the message is {item.size / 2**20:.1f} MB, over the {limit / 2**20:.0f} MB limit "
                        "(intake.email.max_message_mb); it is left in the mailbox: ask the sender to split the "
                        "order file, or save the attachment into the spreadsheet inbox"
                    )))
                else:
                    pending.extend(self._message_parts(item.load(), item.ref, item.size))
                marks.append(item.mark)
                if sum(1 if isinstance(p, BodyPart) else len(p[0]) for p in pending) >= batch_records:
                    yield self._batch(pending, marks)
                    pending, marks = [], []
            if pending:
                yield self._batch(pending, marks)
        finally:
            source.close()

    def _message_parts(self, raw: bytes, ref: str, size: int) -> list:
        parts = process_message(raw, ref, archive_dir=self._archive_dir(),
                                chunk_rows=int(self.options.get("chunk_rows", 50_000)))
        return [p for p in parts if isinstance(p, BodyPart) or len(p[0])] or [_rejected(
            raw[:4000].decode("utf-8", "replace"), ref, "the message produced no records (empty attachment?)")]

    def _batch(self, parts, marks) -> Batch:
        records, parsed = _merge(parts)

        def mark_all(marks=tuple(marks)):
            for mark in marks:
                mark()

        return Batch(records, parsed=parsed, on_commit=mark_all, label=f"{len(marks)} message(s)")

    def parse(self, records: pd.DataFrame) -> Parsed:
        parts = []
        for i in range(len(records)):
            one = records.iloc[[i]].reset_index(drop=True)
            kind = one["content_type"].iloc[0]
            if kind == TEMPLATE_TYPE:
                parsed = parse_template_records(one, default_channel="email")
            elif kind == BODY_TYPE:
                parsed = parse_body_records(one)
            else:
                envelope, body = split_body_content(one["content"].iloc[0])
                parsed = parse_body(envelope, body, 0, datetime.now(UTC))
            parts.append((one, parsed))
        return _merge(parts)[1] if parts else Parsed.empty()
