"""The service inbox's HTTP receiver behind ``yidi feedback receive`` (and the demo's, on a free port): the connector's server
(``connectors.service_inbound``: Aliyun SMS replies and Contact Form 7 submissions, answered as each sender
expects) wired to the feedback area (``tasks.feedback``: survey replies and feedback land once each, raw records
kept, unreadable ones quarantined), one short transaction per request. Here, below ``app`` and ``demo``, so both
run the same wiring.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from connectors.service_inbound import InboundReceiver
from tasks.feedback.queue import land_feedback
from tasks.feedback.surveys import land_survey_replies
from yidi.bulk import utc_now
from yidi.settings import get_settings


def inbound_receiver(engine: Engine, *, host: str | None = None, port: int | None = None,
                     clock: Callable[[], datetime] = utc_now) -> InboundReceiver:  # fmt: skip
    """The receiver on ``[feedback] inbound_host``/``inbound_port`` (or those given), landing in this store."""
    policy = get_settings().feedback

    def land(kind: str, channel: str, records) -> dict:
        with engine.begin() as conn:
            if kind == "feedback":
                return land_feedback(conn, channel, records, get_settings(), clock())
            return land_survey_replies(conn, channel, records, clock())

    return InboundReceiver(land, host=host or policy.inbound_host,
                           port=policy.inbound_port if port is None else port)  # fmt: skip
