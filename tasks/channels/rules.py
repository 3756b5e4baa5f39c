"""Pure rules of the channels area: which confirmation each shipped parcel needs, shipping deadlines, and which
stock figures to push. Frames in, frames out; no database, no clock, no I/O."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta

import pandas as pd

from yidi.channels_policy import ChannelsPolicy
from yidi.workdays import BUSINESS_TZ, add_working_hours

CONFIRMATION_COLUMNS = ["idempotency_key", "shipment_id", "shipment_no", "order_id", "channel", "channel_order_id",
                        "carrier", "waybill_no", "sub_ids", "medium", "status"]  # fmt: skip


def confirmation_key(channel: str, channel_order_id: str, shipment_no: str) -> str:
    """One confirmation per order and parcel, whatever run or retry writes it."""
    return f"confirm:{channel}:{channel_order_id}:{shipment_no}"


def top_sub_ids(raw_trade: str | None, line_nos: list[int]) -> list[str] | None:
    """The TOP sub-order ids (``oid``) of the given order lines (1-based, in the trade's ``orders.order`` order),
    from the trade as it was landed; None when the trade or an oid is missing (the parcel is then confirmed whole)."""
    if not raw_trade:
        return None
    try:
        subs = ((json.loads(raw_trade).get("orders") or {}).get("order")) or []
        oids = [str(subs[n - 1]["oid"]) for n in sorted(set(line_nos))]
    except (ValueError, AttributeError, TypeError, KeyError, IndexError):
        return None
    return oids or None


def confirmation_rows(shipped: pd.DataFrame, policy: ChannelsPolicy) -> pd.DataFrame:
    """A confirmation per (parcel, order). ``shipped`` columns: shipment_id, shipment_no, order_id, channel,
    channel_order_id, carrier, waybill_no, parcels (the order's planned parcels), line_nos (this parcel's order
    lines), order_lines (the order's line count), raw_trade (the landed TOP trade, or None).

    A channel with an API is told (medium ``api``); others get the customer notice (medium ``notice``). A parcel
    carrying only part of an order is confirmed by its sub-orders where the channel allows it."""
    rows = []
    for r in shipped.to_dict("records"):
        api = policy.confirm_api.get(r["channel"])
        sub_ids = None
        carried = list(r.get("line_nos") or [])
        partial = int(r.get("parcels") or 1) > 1 or (bool(carried) and len(carried) < int(r.get("order_lines") or 0))
        if api == "top" and partial and r["channel"] in policy.split_confirm_channels:
            sub_ids = top_sub_ids(r.get("raw_trade"), carried)
        rows.append({
            "idempotency_key": confirmation_key(r["channel"], str(r["channel_order_id"]), r["shipment_no"]),
            "shipment_id": int(r["shipment_id"]), "shipment_no": r["shipment_no"], "order_id": int(r["order_id"]),
            "channel": r["channel"], "channel_order_id": str(r["channel_order_id"]), "carrier": r["carrier"],
            "waybill_no": r["waybill_no"], "sub_ids": ",".join(sub_ids) if sub_ids else None,
            "medium": "api" if api else "notice", "status": "pending",
        })  # fmt: skip
    return pd.DataFrame(rows, columns=CONFIRMATION_COLUMNS)


def woocommerce_note(carrier: str, waybill_no: str, policy: ChannelsPolicy) -> str:
    name = policy.carrier_names.get(carrier, carrier)
    return f"您的订单已发货：{name}，运单号 {waybill_no}。Your order has shipped: {name}, tracking number {waybill_no}."


# --- shipping deadlines -------------------------------------------------------------------------------------------


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def shipping_deadline(channel: str, paid_at: datetime, policy: ChannelsPolicy) -> datetime:
    """When the channel's promised window after payment ends: wall-clock hours, or working hours (the holiday
    calendar, ``workday_start``–``workday_end`` Asia/Shanghai) for the channels the policy lists."""
    hours = policy.ship_within_hours.get(channel, policy.ship_within_hours.get("default", 72.0))
    if channel in policy.working_hours_channels:
        local = paid_at.astimezone(BUSINESS_TZ)
        return add_working_hours(local, hours, _clock(policy.workday_start), _clock(policy.workday_end))
    return paid_at + timedelta(hours=hours)


def deadline_levels(unconfirmed: pd.DataFrame, now: datetime, policy: ChannelsPolicy) -> pd.DataFrame:
    """``unconfirmed`` (order_id, channel, paid_at) -> rows with deadline_at, hours_left and level: ``missed``
    (past it, no confirmation), ``escalated`` (within escalate_before_hours), ``warning`` (within
    warn_before_hours); orders with time to spare are left out."""
    rows = []
    for r in unconfirmed.to_dict("records"):
        paid = r["paid_at"]
        if paid is None or pd.isna(paid):
            continue
        deadline = shipping_deadline(r["channel"], pd.Timestamp(paid).to_pydatetime(), policy)
        left = (deadline - now).total_seconds() / 3600
        if left <= 0:
            level = "missed"
        elif left <= policy.escalate_before_hours:
            level = "escalated"
        elif left <= policy.warn_before_hours:
            level = "warning"
        else:
            continue
        rows.append({**r, "deadline_at": deadline, "hours_left": round(left, 2), "level": level})
    return pd.DataFrame(rows, columns=[*unconfirmed.columns, "deadline_at", "hours_left", "level"])


# --- stock figures ------------------------------------------------------------------------------------------------


def available_stock(levels: pd.DataFrame, policy: ChannelsPolicy) -> pd.DataFrame:
    """``levels`` (item_code, on_hand, reserved, damaged, quarantined; any warehouses) -> item_code, available:
    what may be sold, after allocations (reserved), unusable stock and the safety stock; whole units, never < 0."""
    if levels.empty:
        return pd.DataFrame(columns=["item_code", "available"])
    usable = levels["on_hand"] - levels["reserved"] - levels["damaged"] - levels["quarantined"]
    per_item = usable.groupby(levels["item_code"]).sum()
    safety = per_item.index.map(lambda code: policy.safety_stock_items.get(code, policy.safety_stock))
    available = (per_item - safety).clip(lower=0).astype(float).apply(lambda q: int(q // 1))
    return pd.DataFrame({"item_code": per_item.index, "available": available.to_numpy()})


def changed_figures(available: pd.DataFrame, listings: pd.DataFrame, pushed: pd.DataFrame) -> pd.DataFrame:
    """Figures to push: one per listed (channel, item) whose available figure differs from the last one the
    channel accepted, and is not the figure it last refused (a refusal is reported once, not retried until the
    figure changes). ``listings``: channel, item_code, listing_id, sku_id; ``pushed``: channel, item_code,
    pushed_quantity, refused_quantity."""
    columns = ["channel", "item_code", "listing_id", "sku_id", "available"]
    if listings.empty:
        return pd.DataFrame(columns=columns)
    frame = listings.merge(available, on="item_code", how="left")
    frame["available"] = frame["available"].fillna(0).astype(int)
    frame = frame.merge(pushed, on=["channel", "item_code"], how="left")
    same = frame["pushed_quantity"].notna() & (frame["pushed_quantity"] == frame["available"])
    refused = frame["refused_quantity"].notna() & (frame["refused_quantity"] == frame["available"])
    return frame.loc[~same & ~refused, columns].reset_index(drop=True)
