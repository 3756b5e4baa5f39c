"""Stand-ins for the senders of the service inbox's inbound paths (``connectors.service_inbound``), for the demo and
tests: Aliyun's SMS platform pushing customers' replies (上行短信消息, HTTP 批量推送: a JSON array, re-pushed until
answered ``{"code": 0}``) and a visitor's browser submitting the website's Contact Form 7 form (multipart
``FormData`` with the plugin's hidden fields, as its JavaScript sends it). Shapes as in
``tests/data/formats/aliyun_sms/`` and ``tests/data/formats/contact_form7/``.
"""

from __future__ import annotations

import itertools
from datetime import datetime

import requests

from yidi.workdays import BUSINESS_TZ

_sequence = itertools.count(1_000_000_001)


def sms_up_message(phone: str, content: str, sent: datetime, *, sequence_id: int | None = None,
                   sign_name: str = "重庆示例实业", dest_code: str = "1234") -> dict:  # fmt: skip
    """One 上行短信 as Aliyun pushes it (``send_time`` in Beijing time)."""
    return {"phone_number": phone, "send_time": sent.astimezone(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M:%S"),
            "content": content, "sign_name": sign_name, "dest_code": dest_code,
            "sequence_id": next(_sequence) if sequence_id is None else sequence_id}  # fmt: skip


def push_sms_replies(receiver_url: str, messages: list[dict] | bytes, *, timeout: float = 10.0) -> tuple[int, dict]:
    """One HTTP batch push to ``<receiver>/sms/up``; returns (HTTP status, answer). ``messages`` as bytes sends a
    body as is (a broken push)."""
    url = receiver_url.rstrip("/") + "/sms/up"
    if isinstance(messages, bytes):
        response = requests.post(url, data=messages, headers={"Content-Type": "application/json"}, timeout=timeout)
    else:
        response = requests.post(url, json=messages, timeout=timeout)
    return response.status_code, response.json()


def submit_contact_form(site_url: str, form_id: int, fields: dict[str, str], *, timeout: float = 10.0
                        ) -> tuple[int, dict]:  # fmt: skip
    """A Contact Form 7 submission as the plugin's JavaScript sends it (multipart FormData, hidden fields first)."""
    hidden = {"_wpcf7": str(form_id), "_wpcf7_version": "5.8", "_wpcf7_locale": "zh_CN",
              "_wpcf7_unit_tag": f"wpcf7-f{form_id}-o1", "_wpcf7_container_post": "0"}  # fmt: skip
    parts = [(name, (None, value)) for name, value in {**hidden, **fields}.items()]
    response = requests.post(f"{site_url.rstrip('/')}/wp-json/contact-form-7/v1/contact-forms/{form_id}/feedback",
                             files=parts, timeout=timeout)  # fmt: skip
    return response.status_code, response.json()
