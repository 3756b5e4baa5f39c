"""The KPIs' inputs (E2) in a few whole-store queries: one row of facts per order received in the window (its
milestones from the event log, its carrier and dates from the shipment), incidents, receivables, payment lines,
complaints and survey scores. The KPI definitions themselves are pure functions in ``tasks/risk/kpi.py``."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from sqlalchemy import Connection, and_, case, func, select, text

from yidi.bulk import fetch_columns, result_frame, text_times
from yidi.db import for_reading
from yidi.schema import order_events, orders
from yidi.schema_aftersales import feedback_items, surveys
from yidi.schema_settlement import payment_lines, payment_matches, receivables
from yidi.schema_tracking import tracking_incidents

FACT_COLUMNS = ["order_id", "channel", "province", "carrier", "received_at", "review_due_at", "decided_at",
                "manual_decided_at", "approved_at", "shipped_at", "delivered_at", "returned", "exception",
                "promised_date", "expected_date", "refunded"]  # fmt: skip

# An order's milestones from its state events, defined once here and read by both loaders below: the time of the
# first state event into one of ``to`` (coming from ``from_state`` when one is named), and flags (any state event
# into that state).
MILESTONE_EVENTS = {
    "decided_at": (("approved", "rejected", "auto_rejected"), None),
    "manual_decided_at": (("approved", "rejected"), "pending_review"),
    "approved_at": (("approved",), None),
    "shipped_at": (("shipped",), None),
    "delivered_at": (("delivered",), None),
}
FLAG_EVENTS = {"returned": "returned", "exception": "exception"}
MILESTONES = list(MILESTONE_EVENTS)
TO_STATES = sorted({s for to, _f in MILESTONE_EVENTS.values() for s in to} | set(FLAG_EVENTS.values()))
FROM_STATES = sorted({f for _t, f in MILESTONE_EVENTS.values() if f})
# A state event as one small integer: its to-state's position in TO_STATES, plus len(TO_STATES) times (1 + the
# from-state's position in FROM_STATES) when it comes from one of those.
EVENT_CODE = (
    "CASE to_state " + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(TO_STATES)) + " END"
    + "".join(f" + CASE WHEN from_state = '{s}' THEN {len(TO_STATES) * (i + 1)} ELSE 0 END"
              for i, s in enumerate(FROM_STATES))
)  # fmt: skip
# A window covering at least this share of all order ids reads the events and shipments by scanning their tables
# (SQLite), not through the order-id index: following the index costs a table lookup per row, which beyond about
# a third of the table is slower than reading all of it in storage order (measured at 1M orders: 4.4 s against 2.9 s).
SCAN_SHARE = 0.5
# SQLite exports the state events as text in pieces of this many event ids (a table scan) or order ids (through
# the index): about 36 MB of text each, far below SQLite's 1 GB limit on one value.
EVENT_CHUNK = 1_000_000
ORDER_CHUNK = 250_000


def _first(to_state: tuple, from_state: str | None):
    condition = order_events.c.to_state.in_(to_state)
    if from_state:
        condition = and_(condition, order_events.c.from_state == from_state)
    return func.min(case((condition, order_events.c.occurred_at)))


def load_facts(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """``FACT_COLUMNS`` for every order received in [start, end), ordered by order id.

    A few plain queries whose rows are put together here by order id, not one SQL join (SQLite would build a
    temporary index on each grouped subquery to join it, which cost more than the grouping itself). The events,
    shipments and refunds are read for the id range of the window's orders (ids grow with arrival, so the range is
    the window or little more; rows of orders outside the window are dropped here).

    PostgreSQL groups the state events itself (hash aggregate, in parallel) and returns one row of milestones per
    order (``_milestones_grouped``). SQLite does not group them: its GROUP BY with seven conditional aggregates
    cost more than reading the rows (1M orders: 5.4 s of CPU against 2.9 s); it exports each relevant state event
    as a line of text and numpy takes each milestone's minimum per order (``_milestones_scanned``). Both read
    ``MILESTONE_EVENTS``; a test checks that they agree. On a SQLite file the export runs in a second thread on
    its own connection while this one reads the orders and shipments: SQLite builds the text in its C loop
    without holding the GIL, so the two reads use two cores (as the DuckDB baseline of ``bench/kpi.py`` does).
    That connection only reads (``for_reading``: no write lock even when the caller's engine takes it first), and
    its snapshot may be a moment newer than this one's: events of orders it does not know are dropped, and an
    order's events may include one committed in between."""
    sqlite = conn.dialect.name == "sqlite"
    apart = sqlite and _file_database(conn)
    with ThreadPoolExecutor(1, thread_name_prefix="kpi-events") if apart else nullcontext() as pool:
        exported = pool.submit(_exported_events, None, for_reading(conn.engine), start, end) if apart else None
        window = and_(orders.c.received_at >= start, orders.c.received_at < end)
        head = fetch_columns(conn, select(
            orders.c.id, orders.c.channel, orders.c.ship_province, orders.c.received_at, orders.c.review_due_at,
            orders.c.promised_date).where(window).order_by(orders.c.id))  # fmt: skip
        ids = head["id"].astype(np.int64)
        if len(ids) == 0:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in FACT_COLUMNS})
        first, last = int(ids[0]), int(ids[-1])
        scan = sqlite and _scan(conn, first, last)
        carrier, expected = _shipments(conn, ids, scan, sqlite)
        refunded = fetch_columns(conn, select(payment_matches.c.order_id).where(
            payment_matches.c.amount_fen < 0, payment_matches.c.order_id.between(first, last)).distinct())["order_id"]
        if not sqlite:
            milestones = _milestones_grouped(conn, ids)
        else:
            milestones = _milestones_scanned(ids, *(exported.result() if apart else _exported_events(conn, None, start, end)))
    facts = pd.DataFrame({
        "order_id": ids, **{name: pd.Series(values, dtype=object) for name, values in (  # as read: no Arrow copy
            ("channel", head["channel"]), ("province", head["ship_province"]), ("carrier", carrier))},
        "received_at": _utc(head["received_at"], sqlite), "review_due_at": _utc(head["review_due_at"], sqlite),
        **{name: _utc(milestones[name], sqlite) for name in MILESTONES},
        **{name: milestones[name].astype(np.int64) for name in FLAG_EVENTS},
        "promised_date": _days(head["promised_date"], sqlite), "expected_date": expected,
        "refunded": np.isin(ids, refunded.astype(np.int64)).astype(np.int64),
    })  # fmt: skip
    return facts[FACT_COLUMNS]


def _file_database(conn: Connection) -> bool:
    """A SQLite database in a file (another connection sees the same data; an in-memory one is private)."""
    database = conn.engine.url.database or ""
    return database not in ("", ":memory:") and not database.startswith("file::memory:") and (
        "mode=memory" not in str(conn.engine.url))  # fmt: skip


def _scan(conn: Connection, first: int, last: int) -> bool:
    """Whether order ids first..last cover ``SCAN_SHARE`` of all orders (read the tables whole, not by index)."""
    return (last - first + 1) >= SCAN_SHARE * (conn.execute(select(func.max(orders.c.id))).scalar_one() or 0)


def _utc(values: np.ndarray, sqlite: bool) -> pd.Series:
    """Times as read (SQLite: text, naive UTC; PostgreSQL: aware datetimes, or already datetime64) as UTC."""
    if values.dtype.kind == "M":
        return pd.Series(values).dt.tz_localize("UTC")
    if sqlite:
        return pd.Series(text_times(values)).dt.tz_localize("UTC")
    return pd.Series(pd.to_datetime(values, utc=True))


def _days(values: np.ndarray, sqlite: bool) -> np.ndarray:
    """Calendar dates as read (SQLite: ``2026-11-06`` text; PostgreSQL: dates; None for NULL) as datetime64[s]."""
    if sqlite:
        try:
            return values.astype("datetime64[D]").astype("datetime64[s]")
        except ValueError:
            pass
    return pd.to_datetime(pd.Series(values, dtype=object)).to_numpy(dtype="datetime64[s]")


def _positions(ids: np.ndarray, order_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows keyed by order id: each row's position in the sorted ``ids`` and whether its order is there."""
    first, span = int(ids[0]), int(ids[-1]) - int(ids[0]) + 1
    if span <= 4 * len(ids):  # ids nearly dense (they grow with arrival): a direct lookup table
        lookup = np.full(span, -1, dtype=np.int64)
        lookup[ids - first] = np.arange(len(ids))
        offset = order_ids - first
        inside = (offset >= 0) & (offset < span)
        pos = np.full(len(order_ids), -1, dtype=np.int64)
        pos[inside] = lookup[offset[inside]]
        return pos, pos >= 0
    pos = np.searchsorted(ids, order_ids)
    inside = pos < len(ids)
    inside[inside] = ids[pos[inside]] == order_ids[inside]
    return pos, inside


def _exported_events(conn: Connection | None, engine, start: datetime, end: datetime) -> tuple:
    """SQLite: the relevant state events of the orders received in [start, end) as arrays (order id, event code,
    time as datetime64[us]), on ``conn`` or on a connection of its own from ``engine`` (in a second thread).

    SQLite writes them as lines of text (``group_concat`` of ``order id,code,time``) in chunks of ids, in its own
    C loop: no Python object per row; Arrow's CSV reader parses each chunk. Reading the same rows through the
    cursor created three Python objects per event (1M orders: 3.6 s against 2.7 s, and this one leaves the GIL
    free for the thread reading the orders)."""
    if conn is None:
        with engine.connect() as own:
            return _exported_events(own, None, start, end)
    window = and_(orders.c.received_at >= start, orders.c.received_at < end)
    first, last = conn.execute(select(func.min(orders.c.id), func.max(orders.c.id)).where(window)).one()
    if first is None:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, "datetime64[us]")
    line = f"order_id || ',' || ({EVENT_CODE}) || ',' || occurred_at"
    where = f"kind = 'state' AND to_state IN ({', '.join(repr(s) for s in TO_STATES)})"
    if _scan(conn, first, last):  # the table in storage order, a chunk of event ids at a time
        top = conn.execute(select(func.max(order_events.c.id))).scalar_one() or 0
        sql = (f"SELECT group_concat({line}, char(10)) FROM order_events NOT INDEXED WHERE id > :lo AND id <= :hi "
               f"AND order_id BETWEEN :first AND :last AND {where}")  # fmt: skip
        chunks = [{"lo": lo, "hi": lo + EVENT_CHUNK, "first": first, "last": last}
                  for lo in range(0, top, EVENT_CHUNK)]  # fmt: skip
    else:  # through the order-id index, a chunk of orders at a time
        sql = f"SELECT group_concat({line}, char(10)) FROM order_events WHERE order_id BETWEEN :first AND :last AND {where}"
        chunks = [{"first": lo, "last": min(lo + ORDER_CHUNK - 1, last)} for lo in range(first, last + 1, ORDER_CHUNK)]
    tables = []
    options = (pa_csv.ReadOptions(column_names=["order_id", "code", "at"], use_threads=False),
               pa_csv.ParseOptions(), pa_csv.ConvertOptions(column_types={
                   "order_id": pa.int64(), "code": pa.int64(), "at": pa.timestamp("us")}))  # fmt: skip
    for params in chunks:
        lines = conn.execute(text(sql), params).scalar()
        if lines:
            tables.append(pa_csv.read_csv(io.BytesIO(lines.encode()), *options))
    if not tables:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, "datetime64[us]")
    table = pa.concat_tables(tables)
    return tuple(table.column(name).to_numpy() for name in ("order_id", "code", "at"))


def _milestones_scanned(ids: np.ndarray, order_ids: np.ndarray, code: np.ndarray, at: np.ndarray) -> dict:
    """Each milestone's minimum and each flag per order of ``ids``, from the exported events (numpy)."""
    pos, inside = _positions(ids, order_ids)
    pos, code, at = pos[inside], code[inside], at[inside].view(np.int64)
    to_state, from_state = code % len(TO_STATES), code // len(TO_STATES)
    out: dict[str, np.ndarray] = {}
    never = np.iinfo(np.int64).max
    for name, (to, frm) in MILESTONE_EVENTS.items():
        wanted = np.zeros(len(TO_STATES), dtype=bool)
        wanted[[TO_STATES.index(s) for s in to]] = True
        match = wanted[to_state]
        if frm:
            match &= from_state == FROM_STATES.index(frm) + 1
        earliest = np.full(len(ids), never, dtype=np.int64)
        np.minimum.at(earliest, pos[match], at[match])
        out[name] = np.where(earliest == never, np.iinfo(np.int64).min, earliest).view("datetime64[us]")
    for name, state in FLAG_EVENTS.items():
        flag = np.zeros(len(ids), dtype=np.int64)
        flag[pos[to_state == TO_STATES.index(state)]] = 1
        out[name] = flag
    return out


def _milestones_grouped(conn: Connection, ids: np.ndarray) -> dict[str, np.ndarray]:
    """PostgreSQL: one row per order with each milestone's minimum, grouped by the database."""
    grouped = fetch_columns(conn, select(
        order_events.c.order_id,
        *[_first(to, frm).label(name) for name, (to, frm) in MILESTONE_EVENTS.items()],
        *[func.max(case((order_events.c.to_state == state, 1), else_=0)).label(name)
          for name, state in FLAG_EVENTS.items()],
    ).where(order_events.c.kind == "state", order_events.c.order_id.between(int(ids[0]), int(ids[-1])))
     .group_by(order_events.c.order_id))  # fmt: skip
    pos, inside = _positions(ids, grouped["order_id"].astype(np.int64))
    out: dict[str, np.ndarray] = {}
    for name in MILESTONES:
        column = np.full(len(ids), None, dtype=object)
        column[pos[inside]] = grouped[name][inside]
        out[name] = column
    for name in FLAG_EVENTS:
        flag = np.zeros(len(ids), dtype=np.int64)
        flag[pos[inside]] = grouped[name][inside].astype(np.int64)
        out[name] = flag
    return out


def _shipments(conn: Connection, ids: np.ndarray, scan: bool, sqlite: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per order of ``ids``: its shipments' first carrier (alphabetically) and latest expected delivery date."""
    hint = "NOT INDEXED " if scan else ""
    rows = fetch_columns(conn, f"SELECT order_id, carrier, expected_delivery_date FROM shipments {hint}"
                               "WHERE order_id BETWEEN :first AND :last",
                         {"first": int(ids[0]), "last": int(ids[-1])})  # fmt: skip
    order_ids, carrier = rows["order_id"].astype(np.int64), rows["carrier"]
    expected = _days(rows["expected_delivery_date"], sqlite)
    if not pd.Index(order_ids).is_unique:  # an order with several shipments: one row per order
        grouped = pd.DataFrame({"order_id": order_ids, "carrier": pd.Series(carrier, dtype="str"),
                                "expected": expected}).groupby("order_id").agg(
            carrier=("carrier", "min"), expected=("expected", "max"))  # fmt: skip
        order_ids = grouped.index.to_numpy(dtype=np.int64)
        carrier = grouped["carrier"].astype(object).where(grouped["carrier"].notna(), None).to_numpy()
        expected = grouped["expected"].to_numpy()
    pos, inside = _positions(ids, order_ids)
    out_carrier = np.full(len(ids), None, dtype=object)
    out_carrier[pos[inside]] = carrier[inside]
    out_expected = np.full(len(ids), np.datetime64("NaT"), dtype=expected.dtype)
    out_expected[pos[inside]] = expected[inside]
    return out_carrier, out_expected


def load_incidents(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Incidents on orders received in the window: ``order_id``, ``incident_type``."""
    return result_frame(conn.execute(
        select(tracking_incidents.c.order_id, tracking_incidents.c.incident_type)
        .join(orders, orders.c.id == tracking_incidents.c.order_id)
        .where(orders.c.received_at >= start, orders.c.received_at < end).distinct()))  # fmt: skip


def load_money(conn: Connection, start_day, end_day, start: datetime, end: datetime) -> dict:
    """Receivables due in the period (collection rate), outstanding at its end (DSO) and payment lines in it."""
    due = conn.execute(select(func.coalesce(func.sum(receivables.c.amount_fen), 0),
                              func.coalesce(func.sum(receivables.c.paid_fen), 0))
                       .where(receivables.c.due_date >= start_day, receivables.c.due_date < end_day,
                              receivables.c.status != "void")).one()  # fmt: skip
    outstanding = conn.execute(select(func.coalesce(func.sum(receivables.c.outstanding_fen), 0))
                               .where(receivables.c.status == "open")).scalar_one()  # fmt: skip
    sales = conn.execute(select(func.coalesce(func.sum(orders.c.order_total_fen), 0))
                         .where(orders.c.received_at >= start, orders.c.received_at < end,
                                orders.c.state.not_in(("auto_rejected", "rejected", "cancelled")))).scalar_one()  # fmt: skip
    lines = conn.execute(select(func.count(), func.coalesce(func.sum(case((payment_lines.c.match_status == "matched", 1),
                                                                         else_=0)), 0))
                         .where(payment_lines.c.txn_time >= start, payment_lines.c.txn_time < end,
                                payment_lines.c.match_status != "ignored")).one()  # fmt: skip
    return {"due_fen": int(due[0]), "paid_fen": int(due[1]), "outstanding_fen": int(outstanding),
            "sales_fen": int(sales), "payment_lines": int(lines[0]), "matched_lines": int(lines[1])}  # fmt: skip


def load_feedback(conn: Connection, start: datetime, end: datetime) -> dict:
    """Complaints and their response/resolution hours, and survey scores, received in the window (after-sales)."""
    complaints = result_frame(conn.execute(
        select(feedback_items.c.received_at, feedback_items.c.first_responded_at, feedback_items.c.resolved_at)
        .where(feedback_items.c.category == "complaint", feedback_items.c.received_at >= start,
               feedback_items.c.received_at < end)))  # fmt: skip
    scores = result_frame(conn.execute(select(surveys.c.score).where(
        surveys.c.score.is_not(None), surveys.c.replied_at >= start, surveys.c.replied_at < end)))  # fmt: skip
    return {
        "complaints": complaints,
        "scores": scores["score"].astype("float64") if not scores.empty else pd.Series(dtype="float64"),
    }
