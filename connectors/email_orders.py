"""Email orders: messages in a Maildir folder or an IMAP mailbox (stdlib ``imaplib``).

An order email carries the order template as a csv/xlsx attachment (any number of orders), or one order in the
body as simple ``key: value`` lines (same names as the template's columns) with one ``商品:`` line per item::

    订单号: E2026-0001          (optional: the message id is used when absent)
    客户: 张三
    电话: 138 1234 5678
    地址: 四川省成都市武侯区人民南路四段1号
    商品: SKU-0002 摩托车头盔 x 2 @ 189.00
    商品: SV-INSTALL 设备上门安装 x 1 @ 300
    付款方式: 支付宝

Each message is read once: after its records are committed it is marked processed (IMAP: ``STORE +FLAGS`` with
the configured flag, default ``\\Seen``, fetched with ``BODY.PEEK[]`` so reading alone never marks it; Maildir: moved
to ``cur/`` with the flag letter, default ``S``). A message over ``max_message_mb`` is not downloaded: it is
quarantined with its headers and left in the mailbox. Attachment names are made safe (no path separators, no
``..``) before the attachment is archived under ``$YIDI_HOME/intake/mail/``.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import imaplib
import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path

import pandas as pd

from connectors.base import (
    LINE_COLUMNS,
    ORDER_COLUMNS,
    BadValue,
    Batch,
    ChannelError,
    Connector,
    Parsed,
    TransientChannelError,
    empty_lines,
    empty_orders,
    empty_problems,
    frame_from_rows,
    make_records,
    parse_local_time,
    parse_quantity,
    problem_rows,
)
from connectors.spreadsheet_orders import read_xlsx_chunks
from connectors.template import (
    CHANNEL_VALUES,
    PAYMENT_VALUES,
    SeenOrders,
    UnreadableFile,
    build_template_records,
    detect_encoding,
    iter_csv_chunks,
    map_headers,
    parse_template_records,
)
from connectors.template import (
    CONTENT_TYPE as TEMPLATE_TYPE,
)
from yidi.money import BadAmount, yuan_to_fen

BODY_TYPE = "text/plain; order-email"
REJECTED_TYPE = "text/plain; email-not-understood"
ITEM_KEYS = {"商品", "item", "明细", "货品", "服务"}
_ITEM = re.compile(
    r"^\s*(?P<code>[A-Za-z][A-Za-z0-9_.\-]*)?\s*(?P<name>.*?)\s*[x×X*]\s*(?P<qty>[0-9.,]+)\s*"
    r"(?:@|单价|，|,)\s*[¥￥]?\s*(?P<price>[0-9.,]+)\s*(?:元)?\s*$"
)


def safe_filename(name: str | None, fallback: str = "attachment") -> str:
    """A file name without directories, separators, control characters or leading dots."""
    text = (name or "").replace("\\", "/").split("/")[-1]
    text = re.sub(r"[\x00-\x1f<>:\"|?*]", "_", text).strip().lstrip(".")
    return text[:120] or fallback


# ---------------------------------------------------------------------------------------------------------------
# Mail sources


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


# ---------------------------------------------------------------------------------------------------------------
# Messages -> records


def _text_of(part) -> str:
    payload = part.get_payload(decode=True) or b""
    charset = part.get_content_charset()
    if charset:
        try:
            return payload.decode("gb18030" if charset.lower() in ("gbk", "gb2312") else charset)
        except (LookupError, UnicodeDecodeError):
            pass
    from yidi.textfiles import UnreadableText, decode_bytes

    try:
        return decode_bytes(payload)[0]
    except UnreadableText:
        return payload.decode("utf-8", "replace")


def _body_text(message: EmailMessage) -> str:
    plain = html = None
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() == "text/plain" and plain is None:
            plain = _text_of(part)
        elif part.get_content_type() == "text/html" and html is None:
            html = _text_of(part)
    if plain is not None:
        return plain
    if html is not None:
        text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>", "\n", html)
        return re.sub(r"<[^>]+>", "", text)
    return ""


def _envelope(message: EmailMessage) -> dict:
    sender = parseaddr(str(message.get("From", "")))[1]
    try:
        sent = parsedate_to_datetime(str(message.get("Date"))).astimezone(UTC).isoformat()
    except (TypeError, ValueError):
        sent = None
    return {
        "from": sender,
        "subject": str(message.get("Subject", "")),
        "message_id": str(message.get("Message-ID", "")).strip(),
        "date": sent,
    }


def body_content(envelope: dict, body: str) -> str:
    head = "\n".join(f"{k.replace('_', '-').title()}: {v}" for k, v in envelope.items() if v)
    return f"{head}\n\n{body.strip()}\n"


def split_body_content(content: str) -> tuple[dict, str]:
    head, _, body = content.partition("\n\n")
    envelope = {}
    for line in head.splitlines():
        key, _, value = line.partition(": ")
        envelope[key.strip().lower().replace("-", "_")] = value.strip()
    return envelope, body


@dataclass
class MessageResult:
    records: pd.DataFrame
    parsed: Parsed


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
    envelope = _envelope(message)
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
    body = _body_text(message)
    content = body_content(envelope, body)
    orders, lines, problems = parse_body_rows(envelope, body, 0, received_at)
    return [BodyPart(content, ref, orders, lines, problems)]


def _fill_sender(orders: pd.DataFrame, sender: str) -> None:
    if sender and len(orders):
        orders["customer_email"] = orders["customer_email"].fillna(sender)


@dataclass
class BodyPart:
    """One message's body order as plain rows (frames are built once per batch: cheaper than per message)."""

    content: str
    ref: str
    orders: list[dict]
    lines: list[dict]
    problems: list[tuple[int, str]]


def parse_body(envelope: dict, body: str, idx: int, received_at: datetime) -> Parsed:
    orders, lines, problems = parse_body_rows(envelope, body, idx, received_at)
    return Parsed(frame_from_rows(orders, ORDER_COLUMNS), frame_from_rows(lines, LINE_COLUMNS),
                  problem_rows(problems))


def parse_body_rows(envelope: dict, body: str, idx: int, received_at: datetime
                    ) -> tuple[list[dict], list[dict], list[tuple[int, str]]]:
    fields: dict[str, str] = {}
    items: list[str] = []
    for raw in body.splitlines():
        line = raw.strip().lstrip("-•*").strip()
        if not line:
            continue
        key, sep, value = re.split(r"([:：])", line, maxsplit=1) if re.search(r"[:：]", line) else (line, "", "")
        if not sep:
            continue
        key_norm = re.sub(r"[\s\d]+$", "", key.strip().lower())
        if key_norm in ITEM_KEYS:
            items.append(value.strip())
            continue
        mapped = map_headers([key.strip()])
        if mapped and value.strip():
            field_name = next(iter(mapped))
            fields.setdefault(field_name, value.strip())
    if not items and not fields:
        return [], [], [(idx, (
            "no order found: the message has no csv/xlsx attachment and no 'key: value' order lines in its body; "
            "forward it with the order template attached, or edit this record into 'key: value' lines and replay"
        ))]
    if not items:
        return [], [], [(idx, (
            "the order email has no item lines; add lines like '商品: SKU-0002 摩托车头盔 x 2 @ 189.00' and replay"
        ))]
    lines, problems = [], []
    for n, text in enumerate(items, start=1):
        match = _ITEM.match(text)
        if not match:
            problems.append((idx, f"item line {n} {text!r} should look like 'SKU-0002 摩托车头盔 x 2 @ 189.00' "
                                  "(code, name, x quantity, @ unit price)"))
            continue
        try:
            lines.append({
                "record_idx": idx,
                "line_no": n,
                "item_code": match["code"],
                "item_name": match["name"] or None,
                "quantity": parse_quantity(match["qty"], f"item line {n} quantity"),
                "unit_price_fen": yuan_to_fen(match["price"], f"item line {n} unit price"),
            })
        except (BadValue, BadAmount) as exc:
            problems.append((idx, str(exc)))
    channel_text = (fields.get("channel") or "").strip().lower()
    channel = CHANNEL_VALUES.get(channel_text, "email") if channel_text else "email"
    if channel_text and channel_text not in CHANNEL_VALUES:
        problems.append((idx, f"渠道 {fields['channel']!r} is not one of 电话/传真/邮件 (phone/fax/email)"))
    try:
        order_time = parse_local_time(fields.get("order_time"), "下单时间 (order time)")
        freight = yuan_to_fen(fields.get("freight"), "运费 (freight)") or 0
        discount = yuan_to_fen(fields.get("order_discount"), "订单优惠 (order discount)") or 0
        installments = int(fields.get("installments") or 1)
    except (BadValue, BadAmount) as exc:
        problems.append((idx, str(exc)))
    except ValueError:
        problems.append((idx, f"分期数 {fields.get('installments')!r} is not a whole number"))
    if problems:
        return [], [], problems
    method = (fields.get("payment_method") or "").strip()
    order_id = fields.get("order_id") or "MSG-" + hashlib.sha256(
        (envelope.get("message_id") or body).encode()).hexdigest()[:20]
    order = {
        "record_idx": idx,
        "channel": channel,
        "channel_order_id": order_id,
        "customer_name": fields.get("customer_name"),
        "customer_phone": fields.get("customer_phone"),
        "customer_email": fields.get("customer_email") or envelope.get("from") or None,
        "ship_country": "CN",
        "ship_province": fields.get("province"),
        "ship_city": fields.get("city"),
        "ship_district": fields.get("district"),
        "ship_detail": fields.get("detail"),
        "ship_full_address": fields.get("full_address"),
        "ship_postcode": fields.get("postcode"),
        "payment_method": PAYMENT_VALUES.get(method.lower().replace(" ", ""), method.lower() or None),
        "installments": installments,
        "currency": "CNY",
        "freight_fen": freight,
        "discount_fen": discount,
        "order_time": order_time or _sent_at(envelope) or received_at,
        "buyer_note": fields.get("note"),
        "source_cancelled": False,
    }
    return [order], lines, []


def _sent_at(envelope: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(envelope["date"]) if envelope.get("date") else None
    except ValueError:
        return None


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
                    content = body_content(_envelope(message), f"[message of {item.size:,} bytes not downloaded]")
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
