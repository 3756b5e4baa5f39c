"""Shipment confirmation (发货回传, issue 18): every parcel with a waybill confirmed on its order's channel once.

``plan_confirmations`` writes one ``channel_confirmations`` row per (parcel, order) in one transaction — the
outbox, keyed by ``idempotency_key`` so re-runs add nothing. ``send_confirmations`` calls the channels outside any
transaction and records each chunk of answers in one; only a row still ``pending`` is recorded, so two runs at
once never record twice. A lost answer leaves the row pending: the next call gets the platform's "already
shipped" (TOP B04), or finds its own note on the website, and both count as done — the channel is never told
twice. Channels without an API get the customer notice (``yidi.outbox``), sharing fulfilment's dedupe key for the
parcel so the customer is told once.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine, bindparam, update

from connectors.taobao_writeback import WriteOutcome, offline_send
from tasks.channels import rules, store
from yidi.bulk import chunked, insert_rows, json_text, utc_now
from yidi.lifecycle import current_actor, record_events
from yidi.outbox import enqueue_customer_notices
from yidi.schema_channels import channel_confirmations
from yidi.settings import Settings, get_settings


@dataclass
class ConfirmResult:
    planned: int = 0
    confirmed: int = 0
    already: int = 0  # the channel had it (a lost answer, or a person): done, not sent again
    notified: int = 0  # no API: the customer was told
    failed: int = 0  # transient: tried again next run
    refused: int = 0  # the channel refused, or gave up after confirm_max_attempts: a person looks
    pending: int = 0  # still waiting after this run
    skipped: dict[str, int] = field(default_factory=dict)  # channel not configured: left pending, not tried
    problems: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def plan_confirmations(engine: Engine, settings: Settings | None = None, limit: int | None = None) -> int:
    """One confirmation row per shipped parcel and order not yet planned; returns how many were new."""
    policy = (settings or get_settings()).channels
    with engine.begin() as conn:
        shipped = store.shipped_unconfirmed(conn, limit)
        rows = rules.confirmation_rows(shipped, policy)
        return insert_rows(conn, channel_confirmations, rows, on_conflict=["idempotency_key"])


class ChannelWriters:
    """The clients that write to each channel, built once per run from the policy (URLs overridable)."""

    def __init__(self, top=None, woo=None, unconfigured: list[str] | None = None):
        self.top, self.woo = top, woo
        self.unconfigured = unconfigured or []  # channels wanted whose secrets are not set (logged, skipped)

    @classmethod
    def from_settings(cls, settings: Settings, top_url: str | None = None, woo_url: str | None = None,
                      channels: set[str] | None = None, pacers: dict | None = None):
        from connectors.registry import channel_options
        from connectors.taobao import TaobaoConnector
        from connectors.woocommerce_writeback import WooWriter

        wanted = channels or set(settings.channels.confirm_api)
        top = woo = None
        unconfigured = []
        if "taobao" in wanted:
            options = {**channel_options("taobao", settings), **({"url": top_url} if top_url else {})}
            if all(os.environ.get(options.get(k) or "") for k in ("app_key_env", "app_secret_env")):
                top = TaobaoConnector(name="taobao", options=options).client()
                top.keep_alive = True  # many calls per run (stock figures): one pooled session
            else:  # a fresh stack has no shop credentials: not an error, the channel is simply not in use yet
                unconfigured.append("taobao")
        if "website" in wanted:
            o = channel_options("woocommerce", settings)
            key, secret = os.environ.get(o["consumer_key_env"]), os.environ.get(o["consumer_secret_env"])
            if key and secret:
                woo = WooWriter(woo_url or o["url"], key, secret, float(o.get("timeout_seconds", 20)),
                                pacer=(pacers or {}).get("website"))
            else:
                unconfigured.append("website")
        return cls(top, woo, unconfigured)


def _send_one(row: dict, writers: ChannelWriters, settings: Settings, waiting: set[int]) -> WriteOutcome:
    policy = settings.channels
    api = policy.confirm_api.get(row["channel"])
    if api == "top":
        if writers.top is None:
            return WriteOutcome("failed", error="no TOP client configured (intake.taobao and its secrets)")
        code = policy.top_company_codes.get(row["carrier"])
        if not code:
            return WriteOutcome("refused", error=f"carrier {row['carrier']} has no TOP company code "
                                "(channels.top_company_codes)")
        sub_ids = row["sub_ids"].split(",") if isinstance(row.get("sub_ids"), str) and row["sub_ids"] else None
        return offline_send(writers.top, row["channel_order_id"], row["waybill_no"], code, sub_ids)
    if api == "woocommerce":
        if writers.woo is None:
            return WriteOutcome("failed", error="no WooCommerce client configured (intake.woocommerce and its keys)")
        complete = None if int(row["order_id"]) in waiting else policy.woocommerce_done_status
        note = rules.woocommerce_note(row["carrier"], row["waybill_no"], policy)
        return writers.woo.confirm_shipped(row["channel_order_id"], note, row["waybill_no"], complete)
    return WriteOutcome("refused", error=f"channel {row['channel']} has no confirmation API ({api})")


def send_confirmations(engine: Engine, writers: ChannelWriters, *, settings: Settings | None = None,
                       channel: str | None = None, now: datetime | None = None, actor: str | None = None,
                       limit: int | None = None) -> ConfirmResult:
    """Tell each channel about its pending confirmations; record every answer once (see the module)."""
    settings = settings or get_settings()
    policy, actor = settings.channels, actor or current_actor()
    result = ConfirmResult(skipped=dict.fromkeys(getattr(writers, "unconfigured", ()), 0))
    with engine.connect() as conn:
        pending = store.pending_confirmations(conn, channel, limit)
        waiting = store.orders_with_parcels_waiting(conn, [int(i) for i in pending["order_id"].unique()])
    notices = pending[pending["medium"] == "notice"]
    if len(notices):
        _notify(engine, notices, settings, now or utc_now(), actor)
        result.notified = len(notices)
    calls = []
    for r in pending[pending["medium"] == "api"].to_dict("records"):
        if r["channel"] in writers.unconfigured:  # left pending until the channel is configured
            result.skipped[r["channel"]] = result.skipped.get(r["channel"], 0) + 1
        else:
            calls.append(r)
    for chunk in chunked(calls, policy.confirm_chunk):
        outcomes = [(row, _send_one(row, writers, settings, waiting)) for row in chunk]
        _record(engine, outcomes, policy.confirm_max_attempts, now or utc_now(), actor, result)
    with engine.connect() as conn:
        result.pending = len(store.pending_confirmations(conn, channel))
    return result


def _notify(engine: Engine, rows: pd.DataFrame, settings: Settings, now: datetime, actor: str) -> None:
    policy = settings.channels
    notices = [{"order_id": int(r["order_id"]), "template": "channels_shipped",
                # fulfilment's dedupe key for the parcel: when it already told the customer, nothing new is queued
                "dedupe": f"fulfil-shipped:{r['shipment_no']}",
                "context": {"carrier_name": policy.carrier_names.get(r["carrier"], r["carrier"]),
                            "waybill_no": r["waybill_no"]}}
               for r in rows.to_dict("records")]  # fmt: skip
    with engine.begin() as conn:
        enqueue_customer_notices(conn, notices, policy.notice_media, settings.general.company_name)
        conn.execute(update(channel_confirmations)
                     .where(channel_confirmations.c.id == bindparam("cid"), channel_confirmations.c.status == "pending")
                     .values(status="notified", confirmed_at=now, updated_at=now, attempts=1),
                     [{"cid": int(i)} for i in rows["id"]])  # fmt: skip
        record_events(conn, pd.DataFrame({
            "order_id": rows["order_id"].astype(int), "kind": "channel_notified",
            "reason": [f"{r['channel']} has no API: customer told of waybill {r['waybill_no']}"
                       for r in rows.to_dict("records")]}), actor=actor)  # fmt: skip


def _record(engine: Engine, outcomes: list[tuple[dict, WriteOutcome]], max_attempts: int, now: datetime,
            actor: str, result: ConfirmResult) -> None:
    c = channel_confirmations.c
    updates, events = [], []
    for row, outcome in outcomes:
        attempts = int(row["attempts"] or 0) + 1
        status = outcome.status
        if status == "failed" and attempts >= max_attempts:
            status, outcome.error = "refused", f"gave up after {attempts} attempts: {outcome.error}"
        done = status in ("confirmed", "already")
        updates.append({"cid": int(row["id"]), "st": "pending" if status == "failed" else status, "att": attempts,
                        "err": outcome.error, "ans": json_text(outcome.answer) if outcome.answer else None,
                        "cat": now if done else None})  # fmt: skip
        setattr(result, status, getattr(result, status) + 1)
        if status in ("confirmed", "already"):
            how = "confirmed" if status == "confirmed" else "already shipped there (counted as done)"
            events.append({"order_id": int(row["order_id"]), "kind": "channel_confirmed",
                           "reason": f"{row['channel']} {row['channel_order_id']}: parcel {row['shipment_no']} "
                                     f"waybill {row['waybill_no']} {how}"})  # fmt: skip
        elif status == "refused":
            events.append({"order_id": int(row["order_id"]), "kind": "channel_refused",
                           "reason": f"{row['channel']} refused the shipment confirmation: {outcome.error}"})
            result.problems.append({"shipment_no": row["shipment_no"], "channel": row["channel"],
                                    "channel_order_id": row["channel_order_id"], "error": outcome.error})
    with engine.begin() as conn:
        conn.execute(
            update(channel_confirmations).where(c.id == bindparam("cid"), c.status == "pending").values(
                status=bindparam("st"), attempts=bindparam("att"), last_error=bindparam("err"),
                answer=bindparam("ans"), confirmed_at=bindparam("cat"), updated_at=now),
            updates,
        )
        if events:
            record_events(conn, pd.DataFrame(events), actor=actor)
