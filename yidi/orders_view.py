"""One order as staff and customers see it: header, lines, shipments and the full timeline (T1, P3)."""

from __future__ import annotations

from sqlalchemy import Connection, select

from yidi.bulk import frame_records, read_frame
from yidi.lifecycle import timeline
from yidi.money import fen_to_yuan
from yidi.schema import order_lines, orders, shipments


class OrderNotFound(LookupError):
    pass


def find_order_id(conn: Connection, ref: str) -> int:
    """Resolve an order id, order number, or ``channel:channel_order_id``."""
    ref = ref.strip()
    if ":" in ref:
        channel, channel_order_id = ref.split(":", 1)
        clause = (orders.c.channel == channel) & (orders.c.channel_order_id == channel_order_id)
    elif ref.isdigit():
        clause = orders.c.id == int(ref)
    else:
        clause = orders.c.order_no == ref
    found = conn.execute(select(orders.c.id).where(clause)).scalar_one_or_none()
    if found is None:
        raise OrderNotFound(f"no order {ref!r}")
    return found


def order_view(conn: Connection, ref: str) -> dict:
    order_id = find_order_id(conn, ref)
    order = dict(conn.execute(select(orders).where(orders.c.id == order_id)).mappings().one())
    for column in [c for c in order if c.endswith("_fen")]:
        order[column.removesuffix("_fen")] = fen_to_yuan(order.pop(column))
    lines = read_frame(
        conn, select(order_lines).where(order_lines.c.order_id == order_id).order_by("line_no")
    )
    line_rows = frame_records(lines)
    for row in line_rows:
        for column in [c for c in row if c.endswith("_fen")]:
            row[column.removesuffix("_fen")] = fen_to_yuan(row.pop(column))
    ships = read_frame(
        conn, select(shipments).where(shipments.c.order_id == order_id).order_by(shipments.c.id)
    )
    return {
        "order": order,
        "lines": line_rows,
        "shipments": frame_records(ships),
        "timeline": frame_records(timeline(conn, order_id)),
    }
