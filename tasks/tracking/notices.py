"""Customer notices from tracking (P3): progress (e.g. out for delivery, delivered), incidents, resolutions.

Each notice goes through the outbox once per medium with a contact (SMS to the phone, mail to the address); the
dedupe key names the shipment and status, or the incident and its occurrence, so a re-run never sends twice.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
from sqlalchemy import Connection

from connectors.kuaidi100 import CARRIER_NAMES
from tasks.tracking import store
from tasks.tracking.rules import INCIDENT_LABELS_ZH
from tasks.tracking.status import STATUS_LABELS_ZH, TrackingStatus
from yidi.bulk import frame_records
from yidi.outbox import enqueue_customer_notices
from yidi.settings import get_settings
from yidi.tracking_policy import TrackingPolicy
from yidi.workdays import BUSINESS_TZ, add_working_days


def shipment_context(fact: dict) -> dict:
    """What every tracking template may show about the shipment."""
    expected = fact.get("expected_delivery_date")
    return {
        "carrier_name": CARRIER_NAMES.get(fact["carrier"], fact["carrier"]),
        "waybill_no": fact["waybill_no"] or "",
        "expected_delivery_date": expected.isoformat() if isinstance(expected, date) else "待定",
        "status_label": STATUS_LABELS_ZH.get(TrackingStatus(fact["status"]), fact["status"]),
    }


def _enqueue(conn: Connection, rows: list[dict], policy: TrackingPolicy) -> int:
    return enqueue_customer_notices(conn, rows, policy.notice_media, get_settings().general.company_name)


def incident_notices(conn: Connection, incidents: pd.DataFrame, policy: TrackingPolicy) -> int:
    """Tell customers about newly opened (or reopened) incidents of the types the policy names."""
    notify = incidents[incidents["incident_type"].isin(policy.notify_incidents)]
    if notify.empty:
        return 0
    facts = store.shipment_facts(conn, notify["shipment_id"].tolist())
    rows = [
        {
            "order_id": int(rec["order_id"]),
            "template": f"tracking_{rec['incident_type']}",
            "dedupe": f"tracking:incident:{int(rec['id'])}:{int(rec['occurrences'])}",
            "context": {**shipment_context(facts[int(rec["shipment_id"])]),
                        "incident_label": INCIDENT_LABELS_ZH.get(rec["incident_type"], rec["incident_type"]),
                        "revised_delivery_date": _revised_date(rec, policy)},
        }
        for rec in frame_records(notify)
    ]  # fmt: skip
    return _enqueue(conn, rows, policy)


def _revised_date(incident: dict, policy: TrackingPolicy) -> str:
    """T2 'a revised date when tracking finds a delay': the working day(s) after the incident was (re)opened."""
    found = pd.Timestamp(incident.get("last_seen_at") or incident["opened_at"])
    if found.tzinfo is None:
        found = found.tz_localize("UTC")
    day = found.tz_convert(BUSINESS_TZ).date()
    return add_working_days(day, policy.delay_revised_working_days).isoformat()


def progress_notices(conn: Connection, changes: pd.DataFrame, policy: TrackingPolicy) -> int:
    """Tell customers when a shipment reaches a status the policy names (``changes``: shipment_id, status)."""
    wanted = changes[changes["status"].isin(policy.notify_statuses)] if not changes.empty else changes
    if wanted.empty:
        return 0
    facts = store.shipment_facts(conn, wanted["shipment_id"].tolist())
    rows = [
        {
            "order_id": int(facts[int(sid)]["order_id"]),
            "template": f"tracking_{status}",
            "dedupe": f"tracking:status:{int(sid)}:{status}",
            "context": shipment_context(facts[int(sid)]),
        }
        for sid, status in zip(wanted["shipment_id"], wanted["status"], strict=True)
    ]
    return _enqueue(conn, rows, policy)


def resolution_notice(conn: Connection, incident: dict, resolution: str, policy: TrackingPolicy) -> int:
    """Tell the customer how a person resolved the incident (types the policy names)."""
    if incident["incident_type"] not in policy.notify_incidents:
        return 0
    sid = int(incident["shipment_id"])
    fact = store.shipment_facts(conn, [sid])[sid]
    notice = {
        "order_id": int(incident["order_id"]),
        "template": "tracking_resolved",
        "dedupe": f"tracking:resolved:{int(incident['id'])}:{int(incident['occurrences'])}",
        "context": {**shipment_context(fact), "resolution": resolution,
                    "incident_label": INCIDENT_LABELS_ZH.get(incident["incident_type"], incident["incident_type"])},
    }  # fmt: skip
    return _enqueue(conn, [notice], policy)
