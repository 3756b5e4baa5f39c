"""Generator of order emails as customers and staff send them: the order template attached (csv in GBK/UTF-8/BOM,
or xlsx), or one order as ``key: value`` lines in the body; plus helpers to write them into a Maildir."""

from __future__ import annotations

import io
import os
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from connectors.base import SHANGHAI
from demo.standins.spreadsheets import PAYMENT_ZH, template_frame


def _message(subject: str, sender: str, to: str = "orders@example.com", when=None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="customer.example.com")
    if when is not None:
        message["Date"] = format_datetime(when)
    return message


def body_email(order: dict, *, order_id: str | None = None, charset: str = "utf-8") -> EmailMessage:
    """One order in the body as key/value lines (Chinese keys)."""
    lines = [f"订单号: {order_id}" if order_id else None,
             f"客户: {order['customer_name']}",
             f"电话: {order['phone']}",
             f"地址: {order['province']}{order['city']}{order['district']}{order['detail']}",
             *(f"商品: {line['code']} {line['name']} x {line['qty']} @ {line['price_fen'] / 100:.2f}"
               for line in order["lines"]),
             f"运费: {order['freight_fen'] / 100:.2f}",
             f"付款方式: {PAYMENT_ZH.get(order['payment_method'], order['payment_method'])}",
             f"备注: {order.get('note') or ''}"]
    message = _message(f"订单 {order_id or ''}".strip(), order.get("email") or "buyer@customer.example.com",
                       when=order["order_time"].astimezone(SHANGHAI))
    message.set_content("您好，下单如下：\n\n" + "\n".join(line for line in lines if line) + "\n\n谢谢！\n",
                        charset=charset)
    return message


def attachment_email(orders: list[dict], *, fmt: str = "csv", encoding: str = "gbk",
                     filename: str | None = None, prefix: str = "EM", headers: str = "zh") -> EmailMessage:
    """The order template attached (csv in ``encoding`` or xlsx)."""
    frame = template_frame(orders, headers=headers, channel="email", prefix=prefix)
    message = _message(f"订单表 {len(orders)} 单", "purchasing@customer.example.com")
    message.set_content("附件是本周订单，请查收。\n", charset="utf-8")
    if fmt == "xlsx":
        from demo.standins.spreadsheets import write_xlsx

        buffer = Path(os.environ.get("TMPDIR", "/tmp")) / f"yidi-mail-{os.getpid()}-{time.time_ns()}.xlsx"
        write_xlsx(frame, buffer)
        data = buffer.read_bytes()
        buffer.unlink()
        message.add_attachment(data, maintype="application",
                               subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                               filename=filename or "orders.xlsx")
    else:
        text = io.StringIO()
        frame.to_csv(text, index=False)
        message.add_attachment(text.getvalue().encode(encoding), maintype="text", subtype="csv",
                               filename=filename or "orders.csv")
    return message


def raw_attachment_email(data: bytes, filename: str, *, subtype: str = "csv") -> EmailMessage:
    message = _message("订单附件", "purchasing@customer.example.com")
    message.set_content("见附件。\n", charset="utf-8")
    message.add_attachment(data, maintype="text" if subtype == "csv" else "application", subtype=subtype,
                           filename=filename)
    return message


def large_attachment_message(size_bytes: int, filename: str = "huge.csv") -> bytes:
    """A message with a csv attachment of ``size_bytes`` (MIME built directly: the email package is slow at 50 MB)."""
    import base64

    row = b"0123456789,abcdef,\xe8\xae\xa2\xe5\x8d\x95\n"
    data = row * (size_bytes // len(row) + 1)
    body = base64.encodebytes(data[:size_bytes])
    boundary = b"==yidi-standin-boundary=="
    return b"".join([
        b"From: purchasing@customer.example.com\r\nTo: orders@example.com\r\nSubject: big order file\r\n",
        b"Message-ID: <large@customer.example.com>\r\nMIME-Version: 1.0\r\n",
        b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n',
        b"--" + boundary + b"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee attachment\r\n",
        b"--" + boundary + b"\r\nContent-Type: text/csv\r\nContent-Transfer-Encoding: base64\r\n",
        b'Content-Disposition: attachment; filename="' + filename.encode() + b'"\r\n\r\n',
        body.replace(b"\n", b"\r\n"),
        b"--" + boundary + b"--\r\n",
    ])


def write_maildir(folder: Path, messages: list[EmailMessage | bytes]) -> list[Path]:
    """Deliver messages into ``folder/new`` the Maildir way (write in tmp/, rename into new/)."""
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    paths = []
    for n, message in enumerate(messages):
        data = message if isinstance(message, bytes) else message.as_bytes()
        name = f"{time.time_ns()}.{os.getpid()}_{n}.standin"
        tmp = folder / "tmp" / name
        tmp.write_bytes(data)
        target = folder / "new" / name
        os.replace(tmp, target)
        paths.append(target)
    return paths
