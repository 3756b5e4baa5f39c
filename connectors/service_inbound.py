"""The service inbox's HTTP receiver: customers' SMS replies pushed by the SMS provider and the website's contact
form, each in the shape its sender publishes, handed to an injected ``land(kind, channel, records)`` (one short
transaction that keeps every raw record once and quarantines what it cannot read) and answered only after it
returned, so an acknowledged message is never lost and a re-sent one is stored once.

**SMS replies: Aliyun SMS 上行短信消息, HTTP 批量推送模式** (``POST /sms/up``). The body is a JSON array; each
message has ``phone_number``, ``send_time`` (``YYYY-MM-DD HH:MM:SS``, Beijing), ``content``, ``sign_name``,
``dest_code`` and ``sequence_id`` (the message's identity: the provider pushes again until answered, so the same
message may come twice). Answer ``{"code": 0, "msg": "接收成功"}``; anything else (we answer ``code`` 1 with
HTTP 500 when the store failed) makes Aliyun push again after 1, 5, 10, 30 and 60 minutes. A body that is not an
array of messages is still kept (and quarantined) and answered 0: pushing it again cannot make it readable.
Sample: ``tests/data/formats/aliyun_sms/smsup-http-batch-push.json``.

**Contact form: Contact Form 7's REST feedback endpoint** (``POST /wp-json/contact-form-7/v1/contact-forms/<id>/
feedback``, what the plugin's JavaScript submits: ``multipart/form-data`` or urlencoded fields ``_wpcf7``,
``_wpcf7_version``, ``_wpcf7_locale``, ``_wpcf7_unit_tag``, ``_wpcf7_container_post`` and the form's own fields,
``your-name``, ``your-email``, ``your-subject``, ``your-message`` in the default form). Answer as the plugin does:
``{"contact_form_id", "status": "mail_sent" | "validation_failed", "message", "posted_data_hash", "into",
"invalid_fields": []}``. Sample: ``tests/data/formats/contact_form7/feedback-*.json``. The submitted fields are the
raw record. The shapes themselves (parsing, answers) are in ``connectors.inbound_shapes``, which the tasks import
without loading the server.

This module imports no tasks: what landing means is the caller's (``flows/service_inbound.py``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.http_receiver import ThreadedReceiver, TooLarge, read_body
from connectors.inbound_shapes import SMS_OK, Records, cf7_answer, form_fields, sms_up_records

log = logging.getLogger("yidi.service_inbound")
MAX_BODY_BYTES = 1024 * 1024  # a batch of SMS replies or one contact form: a few KB
SMS_PATH = "/sms/up"
CF7_PATH = "/wp-json/contact-form-7/v1/contact-forms/{form_id:int}/feedback"
Land = Callable[[str, str, Records], dict]  # (kind, channel, records) -> counts: landed, duplicates, quarantined


# --- the server -----------------------------------------------------------------------------------------------------


class InboundReceiver(ThreadedReceiver):
    """``with InboundReceiver(land, host=…, port=…) as srv: srv.url`` — or ``serve_forever()``."""

    thread_name = "service-inbound"

    def __init__(self, land: Land, *, host: str, port: int, land_threads: int = 4) -> None:
        self.land, self.land_threads = land, land_threads
        self.counts: Counter = Counter()
        self._limiter: anyio.CapacityLimiter | None = None
        self._serve(self._app(), host=host, port=port)

    async def _land(self, kind: str, channel: str, records: Records) -> dict:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.land_threads)
        return await anyio.to_thread.run_sync(self.land, kind, channel, records, limiter=self._limiter)

    def _app(self) -> Starlette:
        async def sms_up(request: Request) -> JSONResponse:
            try:
                body = await read_body(request, MAX_BODY_BYTES)
            except TooLarge:
                return JSONResponse({"code": 413, "msg": "body too large"}, status_code=413)
            try:
                got = await self._land("survey_reply", "sms", sms_up_records(body))
            except Exception as exc:  # the store failed: not acknowledged, Aliyun pushes again
                log.warning("sms replies not landed: %s", type(exc).__name__)
                self.counts["sms_failed"] += 1
                return JSONResponse({"code": 1, "msg": "暂时无法接收，请重推"}, status_code=500)
            self.counts.update({f"sms_{k}": v for k, v in got.items()})
            return JSONResponse(SMS_OK)

        async def cf7_feedback(request: Request) -> JSONResponse:
            form_id = int(request.path_params["form_id"])
            try:
                body = await read_body(request, MAX_BODY_BYTES)
            except TooLarge:
                return JSONResponse({"code": "rest_invalid_param", "message": "too large"}, status_code=413)
            fields = form_fields(request.headers.get("content-type", ""), body)
            try:
                got = await self._land("feedback", "website", [(None, {"contact_form_id": form_id, **fields})])
            except Exception as exc:
                log.warning("contact form not landed: %s", type(exc).__name__)
                self.counts["form_failed"] += 1
                return JSONResponse({"code": "internal_server_error", "message": "try again later",
                                     "data": {"status": 500}}, status_code=500)  # fmt: skip
            self.counts.update({f"form_{k}": v for k, v in got.items()})
            return JSONResponse(cf7_answer(form_id, fields, accepted=not got.get("quarantined")))

        async def health(_request: Request) -> JSONResponse:
            return JSONResponse({"ok": True, "counts": dict(self.counts)})

        return Starlette(routes=[Route(SMS_PATH, sms_up, methods=["POST"]),
                                 Route(CF7_PATH, cf7_feedback, methods=["POST"]), Route("/health", health)])
