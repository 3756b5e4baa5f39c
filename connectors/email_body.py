"""An order written in an email's body as ``key: value`` lines, and the message's envelope and body text.

The keys are the order template's column names (Chinese or English); one ``商品:`` line per item, like
``SKU-0002 摩托车头盔 x 2 @ 189.00`` (code, name, x quantity, @ unit price). The stored record's content is the
envelope (From, Subject, Message-Id, Date) over the body, so a replay reads the same order again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime

from connectors.base import (
    LINE_COLUMNS,
    ORDER_COLUMNS,
    BadValue,
    Parsed,
    frame_from_rows,
    parse_local_time,
    parse_quantity,
    problem_rows,
)
from connectors.template.headers import CHANNEL_VALUES, PAYMENT_VALUES, map_headers
from yidi.money import BadAmount, yuan_to_fen

ITEM_KEYS = {"商品", "item", "明细", "货品", "服务"}
_ITEM = re.compile(
    r"^\s*(?P<code>[A-Za-z][A-Za-z0-9_.\-]*)?\s*(?P<name>.*?)\s*[x×X*]\s*(?P<qty>[0-9.,]+)\s*"
    r"(?:@|单价|，|,)\s*[¥￥]?\s*(?P<price>[0-9.,]+)\s*(?:元)?\s*$"
)


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


def body_text(message: EmailMessage) -> str:
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


def envelope_of(message: EmailMessage) -> dict:
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

