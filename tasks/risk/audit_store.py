"""The internal audit's reads (E1): events, orders, notices, cases, refunds, receipts, raw records and survey
scores of a set of orders, each one query (large sets through a temporary key table)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, func, select

from tasks.risk.audit import COMPARED_FIELDS
from yidi.bulk import read_in, result_frame
from yidi.schema import intake_records, notification_outbox, order_events, orders
from yidi.schema_aftersales import aftersales_cases, refund_requests, surveys
from yidi.schema_fulfilment import stocktakes
from yidi.schema_review import review_decisions
from yidi.schema_risk import risk_findings
from yidi.schema_settlement import payment_matches, settlement_case_events, settlement_cases


def audited_orders(conn: Connection, start: datetime, end: datetime, checks: list[str]) -> list[int]:
    """Orders received in the period, and the orders of open audit findings of ``checks`` (to re-check them)."""
    fresh = conn.execute(select(orders.c.id).where(orders.c.received_at >= start, orders.c.received_at < end))
    reopen = conn.execute(select(risk_findings.c.order_id).where(
        risk_findings.c.source == "audit", risk_findings.c.check_code.in_(checks),
        risk_findings.c.state.in_(("open", "rectifying")), risk_findings.c.order_id.is_not(None)))  # fmt: skip
    return sorted({int(i) for i in fresh.scalars()} | {int(i) for i in reopen.scalars()})


def open_finding_orders(conn: Connection, checks: list[str]) -> list[int]:
    return [
        int(i)
        for i in conn.execute(
            select(risk_findings.c.order_id).where(
                risk_findings.c.source == "audit",
                risk_findings.c.check_code.in_(checks),
                risk_findings.c.state.in_(("open", "rectifying")),
                risk_findings.c.order_id.is_not(None),
            )
        ).scalars()
    ]


def load_events(conn: Connection, ids: list[int]) -> pd.DataFrame:
    return read_in(conn, lambda c: select(order_events.c.id, order_events.c.order_id, order_events.c.occurred_at,
                                          order_events.c.kind, order_events.c.from_state, order_events.c.to_state)
                   .where(order_events.c.order_id.in_(c)), ids)  # fmt: skip


def load_orders(conn: Connection, ids: list[int]) -> pd.DataFrame:
    columns = ["channel", "channel_order_id", "region", "review_due_at", "payment_state", "raw_record_id",
               *COMPARED_FIELDS]  # fmt: skip
    frame = read_in(conn, lambda c: select(orders.c.id.label("order_id"), *[orders.c[x] for x in dict.fromkeys(columns)])
                    .where(orders.c.id.in_(c)), ids)  # fmt: skip
    return frame


def _ids(conn, stmt_of, ids) -> set[int]:
    frame = read_in(conn, stmt_of, ids)
    return {int(i) for i in frame.iloc[:, 0]} if not frame.empty else set()


def noticed(conn: Connection, ids: list[int]) -> set[int]:
    return _ids(conn, lambda c: select(notification_outbox.c.order_id).where(notification_outbox.c.order_id.in_(c))
                .distinct(), ids)  # fmt: skip


def with_case(conn: Connection, ids: list[int]) -> set[int]:
    return _ids(conn, lambda c: select(aftersales_cases.c.order_id).where(aftersales_cases.c.order_id.in_(c))
                .distinct(), ids)  # fmt: skip


def refunded(conn: Connection, ids: list[int]) -> set[int]:
    matched = _ids(conn, lambda c: select(payment_matches.c.order_id).where(
        payment_matches.c.order_id.in_(c), payment_matches.c.amount_fen < 0).distinct(), ids)  # fmt: skip
    requested = _ids(conn, lambda c: select(refund_requests.c.order_id).where(refund_requests.c.order_id.in_(c))
                     .distinct(), ids)  # fmt: skip
    return matched | requested


def received(conn: Connection, ids: list[int]) -> pd.Series:
    frame = read_in(conn, lambda c: select(payment_matches.c.order_id, func.sum(payment_matches.c.amount_fen).label("fen"))
                    .where(payment_matches.c.order_id.in_(c), payment_matches.c.amount_fen > 0)
                    .group_by(payment_matches.c.order_id), ids)  # fmt: skip
    return frame.set_index("order_id")["fen"] if not frame.empty else pd.Series(dtype="int64")


def raw_records(conn: Connection, record_ids: list[int]) -> pd.DataFrame:
    return read_in(conn, lambda c: select(intake_records.c.id, intake_records.c.channel, intake_records.c.source_ref,
                                          intake_records.c.source_key, intake_records.c.content,
                                          intake_records.c.content_type, intake_records.c.content_hash,
                                          intake_records.c.received_at)
                   .where(intake_records.c.id.in_(c)), record_ids)  # fmt: skip


def survey_scores(conn: Connection, start: datetime, end: datetime) -> pd.Series:
    frame = result_frame(conn.execute(select(surveys.c.score).where(
        surveys.c.score.is_not(None), surveys.c.replied_at >= start, surveys.c.replied_at < end)))  # fmt: skip
    return frame["score"].astype("float64") if not frame.empty else pd.Series(dtype="float64")


def verified_stocktakes(conn: Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Stocktakes verified in the period (issue 20: separated duties), with their verifier."""
    st = stocktakes.c
    return result_frame(conn.execute(select(st.id.label("stocktake_id"), st.stocktake_no, st.verified_by).where(
        st.verified_at >= start, st.verified_at < end, st.verified_by.is_not(None))))  # fmt: skip


def duty_actors(conn: Connection, ids: list[int]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Who keyed each order in (a form record ``form:NAME``), who approved it, who resolved its payment cases
    (issue 20: separated duties); each frame order_id, actor."""
    ir, rd, ce, sc = intake_records.c, review_decisions.c, settlement_case_events.c, settlement_cases.c
    by_order = read_in(conn, lambda c: select(ir.order_id, ir.source_ref.label("actor"))
                       .where(ir.order_id.in_(c), ir.source_ref.like("form:%")), ids)  # fmt: skip
    by_raw = read_in(conn, lambda c: select(orders.c.id.label("order_id"), ir.source_ref.label("actor"))
                     .join(intake_records, ir.id == orders.c.raw_record_id)
                     .where(orders.c.id.in_(c), ir.source_ref.like("form:%")), ids)  # fmt: skip
    keyed = pd.concat([by_order, by_raw], ignore_index=True).drop_duplicates()
    keyed = keyed[~keyed["actor"].isin(["form:", "form:staff"])]
    keyed = keyed.assign(actor=[str(ref)[5:] for ref in keyed["actor"]])  # an empty read has no text column
    approved = read_in(conn, lambda c: select(rd.order_id, rd.reviewer.label("actor"))
                       .where(rd.order_id.in_(c), rd.decision == "approve"), ids)  # fmt: skip
    resolved = read_in(conn, lambda c: select(sc.order_id, ce.actor).join(settlement_cases, sc.id == ce.case_id)
                       .where(sc.order_id.in_(c), ce.action == "resolved"), ids)  # fmt: skip
    return keyed, approved, resolved
