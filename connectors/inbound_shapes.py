"""The published shapes the service inbox's HTTP receiver (``connectors.service_inbound``) speaks: Aliyun SMS
上行短信消息 (HTTP 批量推送) and Contact Form 7's REST feedback submission. Pure functions, no server, so the
feedback and survey tasks read the raw records with them without loading uvicorn.
"""

from __future__ import annotations

import hashlib
import json
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs

CF7_HIDDEN = ("_wpcf7", "_wpcf7_version", "_wpcf7_locale", "_wpcf7_unit_tag", "_wpcf7_container_post",
              "_wpcf7_posted_data_hash")  # fmt: skip
SMS_OK = {"code": 0, "msg": "接收成功"}
CF7_SENT = "Thank you for your message. It has been sent."
CF7_INVALID = "One or more fields have an error. Please check and try again."

Records = list[tuple[str | None, object]]


def sms_up_records(body: bytes) -> Records:
    """(source key, raw message) per message of an Aliyun SmsUp push; an unreadable body is one record (text)."""
    try:
        messages = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return [(None, body.decode("utf-8", "replace"))]
    if not isinstance(messages, list):
        return [(None, messages)]
    return [(f"sms-up:{m['sequence_id']}" if isinstance(m, dict) and m.get("sequence_id") is not None else None, m)
            for m in messages]  # fmt: skip


def sms_reply_text(message: dict) -> str:
    """The words of an inbound SMS (Aliyun ``content``; our gateway's ``text``)."""
    return str(message.get("content") or message.get("text") or message.get("body") or "")


def form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The text fields of a form submission (urlencoded or multipart/form-data; files are left out)."""
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        fields = {}
        for part in message.iter_parts() if message.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            if name and not part.get_filename():
                # Browsers send text fields without a charset, in the page's: UTF-8 (WordPress's).
                charset = part.get_content_charset() or "utf-8"
                fields[str(name)] = (part.get_payload(decode=True) or b"").decode(charset, "replace")
        return fields
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def feedback_record(fields: dict) -> dict:
    """A Contact Form 7 submission as a feedback record (``body``, ``contact``, ``name``, ``subject``,
    ``order_no``); the default form's field names and the common extra ones (``your-tel``, ``order-no``)."""
    def first(*names):
        return next((str(fields[n]).strip() for n in names if str(fields.get(n) or "").strip()), None)

    return {"body": first("your-message", "message") or "", "name": first("your-name", "name"),
            "contact": first("your-tel", "your-phone", "tel", "your-email", "email"),
            "subject": first("your-subject", "subject"), "order_no": first("order-no", "your-order", "order_no")}


def cf7_answer(form_id: int, fields: dict, accepted: bool) -> dict:
    unit_tag = str(fields.get("_wpcf7_unit_tag") or f"wpcf7-f{form_id}-o1")
    posted = {k: v for k, v in sorted(fields.items()) if k not in CF7_HIDDEN}
    answer = {"contact_form_id": form_id, "status": "mail_sent" if accepted else "validation_failed",
              "message": CF7_SENT if accepted else CF7_INVALID,
              "posted_data_hash": hashlib.md5(json.dumps(posted, ensure_ascii=False).encode()).hexdigest()
              if accepted else "", "into": f"#{unit_tag}", "invalid_fields": []}  # fmt: skip
    if not accepted:
        answer["invalid_fields"] = [{"field": "your-message", "message": "Please fill out this field.",
                                     "idref": None, "error_id": f"{unit_tag}-ve-your-message"}]  # fmt: skip
    return answer


