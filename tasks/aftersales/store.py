"""After-sales SQL: the facts a request is assessed on (order, customer kind, lines, the day of receipt), case
reads for the CLI and the report, and the small writes that move a case on. Reads come back as frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, bindparam, func, select, update

from yidi.bulk import read_frame, read_in, utc_now
from yidi.schema import customers, order_events, order_lines, orders, shipments
from yidi.schema_aftersales import aftersales_case_lines, aftersales_cases
from yidi.workdays import BUSINESS_TZ


def orders_by_number(conn: Connection, order_nos: Sequence[str]) -> pd.DataFrame:
    """order_no -> order_id, state, channel, payment_method, customer_id, customer_kind. A number may also be the
    channel's own, written ``channel:channel_order_id`` (a platform's refund names its trade)."""
    def stmt(where):
        return (
            select(orders.c.order_no, orders.c.id.label("order_id"), orders.c.state, orders.c.channel,
                   orders.c.channel_order_id, orders.c.payment_method, orders.c.customer_id,
                   customers.c.kind.label("customer_kind"))
            .select_from(orders.outerjoin(customers, customers.c.id == orders.c.customer_id)).where(where)
        )  # fmt: skip

    ours = sorted({n for n in order_nos if ":" not in n})
    theirs = sorted({n for n in order_nos if ":" in n})
    frame = read_in(conn, lambda chunk: stmt(orders.c.order_no.in_(chunk)), ours) if ours else pd.DataFrame()
    if theirs:
        found = read_in(conn, lambda chunk: stmt(orders.c.channel_order_id.in_(chunk)),
                        sorted({n.split(":", 1)[1] for n in theirs}))  # fmt: skip
        found["order_no"] = found["channel"] + ":" + found["channel_order_id"]
        frame = pd.concat([frame, found[found["order_no"].isin(theirs)]], ignore_index=True)
    if frame.empty:
        return pd.DataFrame(columns=["order_no", "order_id", "state", "channel", "payment_method", "customer_id",
                                     "customer_kind"])  # fmt: skip
    frame["customer_kind"] = frame["customer_kind"].where(frame["customer_kind"].notna(), "consumer")
    return frame.drop(columns=["channel_order_id"])


def product_lines(conn: Connection, order_ids: Sequence[int]) -> pd.DataFrame:
    """Goods lines (not services) of the orders: order_id, order_line_id, item_code, quantity, line_total_fen."""
    def stmt(chunk):
        return select(order_lines.c.order_id, order_lines.c.id.label("order_line_id"), order_lines.c.item_code,
                      order_lines.c.quantity, order_lines.c.line_total_fen).where(
            order_lines.c.order_id.in_(chunk), order_lines.c.item_kind != "service")  # fmt: skip

    return read_in(conn, stmt, sorted({int(i) for i in order_ids}))


def receipt_dates(conn: Connection, order_ids: Sequence[int]) -> dict[int, object]:
    """order_id -> the Asia/Shanghai date the last shipment was delivered (None: not delivered)."""
    def stmt(chunk):
        return (select(shipments.c.order_id, func.max(shipments.c.delivered_at).label("delivered_at"))
                .where(shipments.c.order_id.in_(chunk), shipments.c.delivered_at.is_not(None))
                .group_by(shipments.c.order_id))  # fmt: skip

    frame = read_in(conn, stmt, sorted({int(i) for i in order_ids}))
    return {int(o): pd.Timestamp(t).tz_convert(BUSINESS_TZ).date()
            for o, t in zip(frame.get("order_id", []), frame.get("delivered_at", []), strict=True)}  # fmt: skip


def failed_repairs(conn: Connection, order_ids: Sequence[int]) -> dict[int, int]:
    """order_id -> repairs already done under earlier cases (the contract-termination condition counts them)."""
    def stmt(chunk):
        return (select(aftersales_cases.c.order_id, func.count().label("n"))
                .where(aftersales_cases.c.order_id.in_(chunk), aftersales_cases.c.decision == "repair",
                       aftersales_cases.c.status == "closed")
                .group_by(aftersales_cases.c.order_id))  # fmt: skip

    frame = read_in(conn, stmt, sorted({int(i) for i in order_ids}))
    return {int(o): int(n) for o, n in zip(frame.get("order_id", []), frame.get("n", []), strict=True)}


def open_cases(conn: Connection) -> pd.DataFrame:
    """Cases waiting for a decision, with their order's facts."""
    return read_frame(
        conn,
        select(aftersales_cases, orders.c.order_no, orders.c.channel, orders.c.payment_method,
               orders.c.state.label("order_state"), customers.c.kind.label("customer_kind"))
        .select_from(aftersales_cases.join(orders, orders.c.id == aftersales_cases.c.order_id)
                     .outerjoin(customers, customers.c.id == orders.c.customer_id))
        .where(aftersales_cases.c.status == "open")
        .order_by(aftersales_cases.c.id),
    )  # fmt: skip


def case_lines(conn: Connection, case_ids: Sequence[int]) -> pd.DataFrame:
    def stmt(chunk):
        return select(aftersales_case_lines).where(aftersales_case_lines.c.case_id.in_(chunk))

    return read_in(conn, stmt, sorted({int(i) for i in case_ids}))


def cases(conn: Connection, *, status: str | tuple[str, ...] | None = None, case_no: str | None = None
          ) -> pd.DataFrame:  # fmt: skip
    stmt = select(aftersales_cases, orders.c.order_no, orders.c.customer_name, orders.c.customer_phone).join(
        orders, orders.c.id == aftersales_cases.c.order_id)
    if status:
        stmt = stmt.where(aftersales_cases.c.status.in_([status] if isinstance(status, str) else list(status)))
    if case_no:
        stmt = stmt.where(aftersales_cases.c.case_no == case_no)
    return read_frame(conn, stmt.order_by(aftersales_cases.c.id))


def update_cases(conn: Connection, rows: list[dict], columns: Sequence[str], now: datetime | None = None) -> None:
    """Set ``columns`` of the cases in ``rows`` (dicts with ``id`` and those columns) in one batch."""
    if not rows:
        return
    values = {c: bindparam(f"v_{c}") for c in columns}
    stmt = (update(aftersales_cases).where(aftersales_cases.c.id == bindparam("cid"))
            .values(**values, updated_at=bindparam("v_now", type_=aftersales_cases.c.updated_at.type)))  # fmt: skip
    now = now or utc_now()
    conn.execute(stmt, [{"cid": int(r["id"]), "v_now": now, **{f"v_{c}": r[c] for c in columns}} for r in rows])


def state_before_after_sales(conn: Connection, order_ids: Sequence[int]) -> dict[int, str]:
    """order_id -> the state it had when it last entered after_sales (where it goes back when nothing is
    returned)."""
    def stmt(chunk):
        return (select(order_events.c.order_id, order_events.c.from_state, order_events.c.id)
                .where(order_events.c.order_id.in_(chunk), order_events.c.kind == "state",
                       order_events.c.to_state == "after_sales"))  # fmt: skip

    frame = read_in(conn, stmt, sorted({int(i) for i in order_ids}))
    if frame.empty:
        return {}
    last = frame.sort_values("id").groupby("order_id").tail(1)
    return {int(o): s for o, s in zip(last["order_id"], last["from_state"], strict=True)}
