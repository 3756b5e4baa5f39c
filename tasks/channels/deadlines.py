"""Shipping deadlines (issue 18): each channel's promised window after payment (``channels.ship_within_hours``,
working hours for the channels the policy lists). Orders near it are flagged, escalated before it passes, and a
deadline passed without a confirmation is an incident — each once per order and level
(``channel_deadline_alerts``), with an order event the team sees (``deadline_escalated``, ``deadline_missed``)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Engine, select

from tasks.channels import rules, store
from yidi.bulk import insert_rows, read_in
from yidi.lifecycle import current_actor, record_events
from yidi.schema_channels import channel_deadline_alerts
from yidi.settings import Settings, get_settings
from yidi.workdays import BUSINESS_TZ

EVENT_KINDS = {"escalated": "deadline_escalated", "missed": "deadline_missed"}


def check_deadlines(engine: Engine, now: datetime, *, settings: Settings | None = None, actor: str | None = None,
                    channels: list[str] | None = None) -> dict:
    """Flag, escalate and record missed shipping deadlines; returns counts and the flagged orders (for the
    artifact), soonest first."""
    policy = (settings or get_settings()).channels
    actor = actor or current_actor()
    with engine.begin() as conn:
        open_orders = store.unconfirmed_paid_orders(conn, channels)
        flagged = rules.deadline_levels(open_orders, now, policy).sort_values("deadline_at", kind="stable")
        if flagged.empty:
            return {"warning": 0, "escalated": 0, "missed": 0, "new_escalations": 0, "new_missed": 0, "orders": []}
        a = channel_deadline_alerts.c
        known = read_in(conn, lambda ids: select(a.order_id, a.level).where(a.order_id.in_(ids)),
                        [int(i) for i in flagged["order_id"]])
        seen = set(zip(known["order_id"].astype(int), known["level"], strict=True)) if len(known) else set()
        new = flagged[[(int(o), lv) not in seen for o, lv in zip(flagged["order_id"], flagged["level"], strict=True)]]
        insert_rows(conn, channel_deadline_alerts, new[["order_id", "level", "channel", "deadline_at"]],
                    on_conflict=["order_id", "level"])
        loud = new[new["level"].isin(list(EVENT_KINDS))]
        if len(loud):
            record_events(conn, pd.DataFrame({
                "order_id": loud["order_id"].astype(int), "kind": loud["level"].map(EVENT_KINDS),
                "reason": [f"{r['channel']} shipping deadline {_local(r['deadline_at'])} (Asia/Shanghai) "
                           + ("passed without a shipment confirmation" if r["level"] == "missed"
                              else f"in {r['hours_left']} h and the order is not confirmed shipped")
                           for r in loud.to_dict("records")]}), actor=actor)  # fmt: skip
    counts = flagged["level"].value_counts().to_dict()
    return {"warning": int(counts.get("warning", 0)), "escalated": int(counts.get("escalated", 0)),
            "missed": int(counts.get("missed", 0)), "new_escalations": int((new["level"] == "escalated").sum()),
            "new_missed": int((new["level"] == "missed").sum()),
            "orders": [{"order_no": r["order_no"], "channel": r["channel"], "state": r["state"], "level": r["level"],
                        "deadline": _local(r["deadline_at"]), "hours_left": r["hours_left"]}
                       for r in flagged.to_dict("records")]}  # fmt: skip


def _local(stamp) -> str:
    return pd.Timestamp(stamp).tz_convert(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M")
