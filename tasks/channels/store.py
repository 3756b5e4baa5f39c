"""The channels area's SQL: shipped parcels not yet confirmed, pending confirmations, unconfirmed paid orders,
stock levels, listings and pushed figures. Reads return frames; writes are bulk (``yidi.bulk``)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Connection, and_, exists, func, select

from yidi.bulk import read_frame, read_in
from yidi.schema import intake_records, order_lines, orders, shipments
from yidi.schema_channels import channel_confirmations, channel_listings, channel_stock
from yidi.schema_fulfilment import allocations, shipment_requests, stock_levels

CANCELLED_REQUEST = "cancelled"
# Paid orders the channel still shows as "not shipped" until confirmed (shipped: the waybill exists, the channel
# may not know yet).
OPEN_STATES = ["received", "pending_review", "approved", "allocated", "backordered", "in_production",
               "in_procurement", "shipped"]


def shipped_unconfirmed(conn: Connection, limit: int | None = None) -> pd.DataFrame:
    """Parcels with a waybill and no confirmation row yet, with what the rules need to plan one (see
    ``rules.confirmation_rows``)."""
    s, o, c = shipments.c, orders.c, channel_confirmations.c
    stmt = (
        select(s.id.label("shipment_id"), s.shipment_no, s.order_id, s.carrier, s.waybill_no, o.channel,
               o.channel_order_id, o.raw_record_id)
        .join(orders, o.id == s.order_id)
        .where(s.waybill_no.is_not(None), s.waybill_no != "",
               ~exists().where(and_(c.shipment_id == s.id, c.order_id == s.order_id)))
        .order_by(s.id)
    )  # fmt: skip
    if limit:
        stmt = stmt.limit(limit)
    frame = read_frame(conn, stmt)
    if frame.empty:
        return frame.assign(parcels=[], line_nos=[], order_lines=[], raw_trade=[])
    order_ids = [int(i) for i in frame["order_id"].unique()]
    sr, a, ol = shipment_requests.c, allocations.c, order_lines.c
    parcels = read_in(conn, lambda ids: select(sr.order_id, func.count().label("parcels"))
                      .where(sr.order_id.in_(ids), sr.status != CANCELLED_REQUEST).group_by(sr.order_id), order_ids)
    lines = read_in(conn, lambda ids: select(ol.order_id, func.count().label("order_lines"))
                    .where(ol.order_id.in_(ids)).group_by(ol.order_id), order_ids)
    carried = read_in(conn, lambda ids: select(sr.shipment_id, ol.line_no).distinct()
                      .join(allocations, a.shipment_request_id == sr.id).join(order_lines, ol.id == a.order_line_id)
                      .where(sr.shipment_id.in_(ids)), [int(i) for i in frame["shipment_id"]])  # fmt: skip
    raw_ids = [int(i) for i in frame.loc[frame["channel"] == "taobao", "raw_record_id"].dropna()]
    raw = (read_in(conn, lambda ids: select(intake_records.c.id, intake_records.c.content)
                   .where(intake_records.c.id.in_(ids)), raw_ids) if raw_ids
           else pd.DataFrame(columns=["id", "content"]))  # fmt: skip
    parcels_of = dict(zip(parcels["order_id"], parcels["parcels"], strict=True)) if len(parcels) else {}
    lines_of = dict(zip(lines["order_id"], lines["order_lines"], strict=True)) if len(lines) else {}
    carried_of = carried.groupby("shipment_id")["line_no"].apply(list).to_dict() if len(carried) else {}
    raw_of = dict(zip(raw["id"], raw["content"], strict=True)) if len(raw) else {}
    frame["parcels"] = [int(parcels_of.get(i, 1)) for i in frame["order_id"]]
    frame["order_lines"] = [int(lines_of.get(i, 0)) for i in frame["order_id"]]
    frame["line_nos"] = [sorted(int(n) for n in carried_of.get(i, [])) for i in frame["shipment_id"]]
    frame["raw_trade"] = [raw_of.get(int(i)) if pd.notna(i) else None for i in frame["raw_record_id"]]
    return frame


def pending_confirmations(conn: Connection, channel: str | None = None, limit: int | None = None) -> pd.DataFrame:
    c = channel_confirmations.c
    stmt = select(channel_confirmations).where(c.status == "pending").order_by(c.id)
    if channel:
        stmt = stmt.where(c.channel == channel)
    if limit:
        stmt = stmt.limit(limit)
    return read_frame(conn, stmt)


def orders_with_parcels_waiting(conn: Connection, order_ids: list[int]) -> set[int]:
    """Orders with a planned parcel that has no waybill yet (the website order is completed only after it)."""
    if not order_ids:
        return set()
    sr = shipment_requests.c
    frame = read_in(conn, lambda ids: select(sr.order_id).distinct()
                    .where(sr.order_id.in_(ids), sr.status == "pending"), order_ids)
    return {int(i) for i in frame["order_id"]} if len(frame) else set()


def unconfirmed_paid_orders(conn: Connection, channels: list[str] | None = None) -> pd.DataFrame:
    """Paid orders not yet cancelled whose shipment is not confirmed to their channel: order_id, order_no,
    channel, channel_order_id, state, paid_at (the order time: intake's payment time where the channel gives one)."""
    o, c = orders.c, channel_confirmations.c
    stmt = (
        select(o.id.label("order_id"), o.order_no, o.channel, o.channel_order_id, o.state,
               o.order_time.label("paid_at"))
        .where(o.payment_state == "paid",
               o.state.in_(OPEN_STATES),
               ~exists().where(and_(c.order_id == o.id, c.status.in_(["confirmed", "already", "notified"]))))
        .order_by(o.id)
    )  # fmt: skip
    if channels:
        stmt = stmt.where(o.channel.in_(channels))
    return read_frame(conn, stmt)


def stock_levels_frame(conn: Connection) -> pd.DataFrame:
    sl = stock_levels.c
    return read_frame(conn, select(sl.item_code, sl.on_hand, sl.reserved, sl.damaged, sl.quarantined))


def listings_frame(conn: Connection, channels: list[str]) -> pd.DataFrame:
    cl = channel_listings.c
    return read_frame(conn, select(cl.channel, cl.item_code, cl.listing_id, cl.sku_id)
                      .where(cl.channel.in_(channels)).order_by(cl.channel, cl.item_code))


def pushed_frame(conn: Connection, channels: list[str]) -> pd.DataFrame:
    cs = channel_stock.c
    return read_frame(conn, select(cs.channel, cs.item_code, cs.pushed_quantity, cs.refused_quantity)
                      .where(cs.channel.in_(channels)))
