"""Tracking store: the SQL of the tracking steps, frames in and out (shipments, checkpoints, polling state,
incidents, claims, push receipts). One connection each; the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Connection, bindparam, func, or_, select, update

from connectors.kuaidi100 import PushNotice
from tasks.tracking.rules import FINAL, events_digest
from yidi.bulk import chunked, frame_records, insert_rows, read_frame
from yidi.schema import orders, shipments
from yidi.schema_tracking import (
    liability_claims,
    tracking_events,
    tracking_incidents,
    tracking_push_receipts,
    tracking_shipment_state,
)
from yidi.tracking_policy import TrackingPolicy

EVENT_KEY = ["shipment_id", "occurred_at", "context_hash"]
ts = tracking_shipment_state


def _chunked_frames(conn: Connection, stmt_for, ids, columns: Sequence[str]) -> pd.DataFrame:
    frames = [read_frame(conn, stmt_for(chunk)) for chunk in chunked(sorted({int(i) for i in ids}))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))


# --- shipments and checkpoints ---------------------------------------------------------------------------------


def due_shipments(
    conn: Connection,
    now: datetime,
    policy: TrackingPolicy,
    *,
    waybill: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Active shipments whose last query and last push are both older than the carrier's minimum interval,
    least recently polled first."""
    cutoff = now - timedelta(minutes=policy.min_poll_interval_minutes)
    stmt = (
        select(
            shipments.c.id.label("shipment_id"), shipments.c.order_id, shipments.c.shipment_no, shipments.c.carrier,
            shipments.c.waybill_no, shipments.c.status, shipments.c.shipped_at, shipments.c.last_polled_at,
            shipments.c.last_event_at, orders.c.customer_phone.label("phone"), orders.c.ship_province,
            orders.c.ship_city, orders.c.ship_district,
            func.coalesce(ts.c.consecutive_failures, 0).label("consecutive_failures"), ts.c.no_result_since,
            ts.c.last_outcome, ts.c.carrier_state, ts.c.events_digest,
        )
        .join(orders, orders.c.id == shipments.c.order_id)
        .outerjoin(ts, ts.c.shipment_id == shipments.c.id)
        .where(
            shipments.c.waybill_no.is_not(None),
            shipments.c.status.not_in(FINAL),
            or_(shipments.c.last_polled_at.is_(None), shipments.c.last_polled_at <= cutoff),
            or_(ts.c.last_push_at.is_(None), ts.c.last_push_at <= cutoff),
        )
        .order_by(shipments.c.last_polled_at.is_not(None), shipments.c.last_polled_at, shipments.c.id)
    )  # fmt: skip
    if waybill:
        stmt = stmt.where(shipments.c.waybill_no == waybill)
    if limit:
        stmt = stmt.limit(limit)
    return read_frame(conn, stmt)


def claim_due(conn: Connection, due: pd.DataFrame, now: datetime, policy: TrackingPolicy) -> pd.DataFrame:
    """The due shipments this cycle may query, claimed in the caller's transaction (issue 17): a conditional UPDATE
    stamps ``last_polled_at = now`` only where it is still outside the carrier's interval, so two overlapping
    cycles (workers, a manual poll beside the scheduled one) never query the same waybill twice inside it; on
    PostgreSQL the second waits for the first's commit and then finds the rows taken. A waybill whose query then
    fails or is skipped is released again (``release_unpolled``); a worker killed mid-cycle leaves its claims to
    expire with the interval, never a duplicate query."""
    if due.empty:
        return due
    cutoff = now - timedelta(minutes=policy.min_poll_interval_minutes)
    claimed: set[int] = set()
    for chunk in chunked(due["shipment_id"].astype("int64").tolist()):
        claimed.update(conn.execute(
            update(shipments)
            .where(shipments.c.id.in_(chunk),
                   or_(shipments.c.last_polled_at.is_(None), shipments.c.last_polled_at <= cutoff))
            .values(last_polled_at=now)
            .returning(shipments.c.id)
        ).scalars())  # fmt: skip
    return due[due["shipment_id"].isin(claimed)].reset_index(drop=True)


def release_unpolled(conn: Connection, batch: pd.DataFrame, shipment_ids: Sequence[int], now: datetime) -> None:
    """Claimed shipments that were not queried after all (failed, skipped): their previous ``last_polled_at``
    back, so the next cycle tries them again (unless a later claim holds them already)."""
    if not len(shipment_ids):
        return
    frame = batch if "last_polled_at" in batch else batch.assign(last_polled_at=None)  # unknown: due again now
    previous = frame.set_index("shipment_id")["last_polled_at"]
    rows = [{"sid": int(i), "prev": None if pd.isna(previous.get(i)) else pd.Timestamp(previous.get(i)).to_pydatetime()}
            for i in shipment_ids]  # fmt: skip
    if rows:
        conn.execute(update(shipments).where(shipments.c.id == bindparam("sid"), shipments.c.last_polled_at == now)
                     .values(last_polled_at=bindparam("prev")), rows)  # fmt: skip


def mark_polled(conn: Connection, shipment_ids: Sequence[int], now: datetime) -> None:
    for chunk in chunked(shipment_ids):
        conn.execute(
            update(shipments).where(shipments.c.id.in_(chunk)).values(last_polled_at=now, updated_at=now)
        )


def upsert_shipment_state(conn: Connection, frame: pd.DataFrame) -> int:
    """Rows of ``tracking_shipment_state`` by shipment: the given columns replace the stored ones."""
    return insert_rows(
        conn,
        ts,
        frame,
        on_conflict=["shipment_id"],
        update_columns=[c for c in frame.columns if c != "shipment_id"],
    )


def store_events(conn: Connection, rows: list[dict], batch: str) -> pd.DataFrame:
    """Insert checkpoints not stored yet (natural key ``EVENT_KEY``); return exactly the rows this call inserted."""
    if not rows:
        return pd.DataFrame(columns=[c.name for c in tracking_events.columns])
    frame = pd.DataFrame(rows).drop_duplicates(EVENT_KEY)
    insert_rows(conn, tracking_events, frame, on_conflict=EVENT_KEY)
    return read_frame(
        conn,
        select(tracking_events).where(tracking_events.c.ingest_batch == batch).order_by(tracking_events.c.id),
    )


def latest_events(conn: Connection, shipment_ids: Sequence[int]) -> pd.DataFrame:
    """Each shipment's newest stored checkpoint (by carrier time, then arrival)."""

    def newest(chunk):
        ranked = select(
            tracking_events.c.shipment_id, tracking_events.c.status, tracking_events.c.occurred_at,
            func.row_number().over(
                partition_by=tracking_events.c.shipment_id,
                order_by=(tracking_events.c.occurred_at.desc(), tracking_events.c.id.desc()),
            ).label("rn"),
        ).where(tracking_events.c.shipment_id.in_(chunk)).subquery()  # fmt: skip
        return select(ranked.c.shipment_id, ranked.c.status, ranked.c.occurred_at).where(ranked.c.rn == 1)

    return _chunked_frames(conn, newest, shipment_ids, ["shipment_id", "status", "occurred_at"])


def refresh_shipments(conn: Connection, shipment_ids: Sequence[int], now: datetime) -> pd.DataFrame:
    """Status and last event from each shipment's newest checkpoint (so out-of-order data never moves it back);
    returns the shipments whose status changed (shipment_id, old_status, status)."""
    if not shipment_ids:
        return pd.DataFrame(columns=["shipment_id", "old_status", "status"])
    latest = latest_events(conn, shipment_ids)
    before = read_frame(
        conn, select(shipments.c.id.label("shipment_id"), shipments.c.status.label("old_status"))
        .where(shipments.c.id.in_(list(shipment_ids)))
    )  # fmt: skip
    merged = latest.merge(before, on="shipment_id")
    rows = [
        {"sid": int(sid), "st": st, "at": at, "delivered": at if st == "delivered" else None}
        for sid, st, at in zip(
            merged["shipment_id"].tolist(),
            merged["status"].tolist(),
            merged["occurred_at"].tolist(),
            strict=True,
        )
    ]
    _store_digests(conn, shipment_ids, now)
    if rows:
        conn.execute(
            update(shipments)
            .where(shipments.c.id == bindparam("sid"))
            .values(
                status=bindparam("st"),
                last_event_at=bindparam("at"),
                delivered_at=func.coalesce(bindparam("delivered", type_=shipments.c.delivered_at.type),
                                           shipments.c.delivered_at),
                updated_at=now,
            ),
            rows,
        )  # fmt: skip
    changed = merged[merged["status"] != merged["old_status"]]
    return changed[["shipment_id", "old_status", "status"]]


def _store_digests(conn: Connection, shipment_ids: Sequence[int], now: datetime) -> None:
    keys: dict[int, list] = {}
    for chunk in chunked([int(i) for i in shipment_ids]):
        rows = conn.execute(
            select(tracking_events.c.shipment_id, tracking_events.c.occurred_at, tracking_events.c.context_hash)
            .where(tracking_events.c.shipment_id.in_(chunk))
        )  # fmt: skip
        for sid, when, digest in rows:
            keys.setdefault(int(sid), []).append((when, digest))
    upsert_shipment_state(
        conn,
        pd.DataFrame(
            {
                "shipment_id": list(keys),
                "events_digest": [events_digest(k) for k in keys.values()],
                "updated_at": now,
            }
        ),
    )


def change_carriers(conn: Connection, changes: list[dict], now: datetime) -> None:
    """``changes``: ship (its row), new (the carrier code Kuaidi100 corrected it to)."""
    conn.execute(
        update(shipments)
        .where(shipments.c.id == bindparam("sid"))
        .values(carrier=bindparam("new"), updated_at=now),
        [{"sid": int(c["ship"]["shipment_id"]), "new": c["new"]} for c in changes],
    )


def status_counts(conn: Connection, shipment_ids: Sequence[int]) -> Counter:
    counts: Counter = Counter()
    for chunk in chunked(shipment_ids):
        rows = conn.execute(
            select(shipments.c.status, func.count())
            .where(shipments.c.id.in_(chunk))
            .group_by(shipments.c.status)
        )
        counts.update({status: n for status, n in rows})
    return counts


def shipment_facts(conn: Connection, shipment_ids: Sequence[int]) -> dict[int, dict]:
    """What a customer notice says about a shipment: carrier, waybill, expected date, status."""
    frame = read_frame(
        conn,
        select(
            shipments.c.id.label("shipment_id"), shipments.c.order_id, shipments.c.carrier, shipments.c.waybill_no,
            shipments.c.expected_delivery_date, shipments.c.status,
        ).where(shipments.c.id.in_([int(i) for i in shipment_ids])),
    )  # fmt: skip
    return {int(r["shipment_id"]): r for r in frame_records(frame)}


def active_shipments(conn: Connection) -> pd.DataFrame:
    """Every shipment still tracked, with what the time-based rules need."""
    return read_frame(
        conn,
        select(
            shipments.c.id.label("shipment_id"), shipments.c.order_id, shipments.c.carrier, shipments.c.waybill_no,
            shipments.c.status, shipments.c.shipped_at, shipments.c.last_event_at, shipments.c.last_polled_at,
            shipments.c.expected_delivery_date, ts.c.no_result_since, ts.c.last_push_at,
        )
        .outerjoin(ts, ts.c.shipment_id == shipments.c.id)
        .where(shipments.c.waybill_no.is_not(None), shipments.c.status.not_in(FINAL)),
    )  # fmt: skip


def set_status(conn: Connection, shipment_ids: Sequence[int], status: str, now: datetime) -> None:
    for chunk in chunked(shipment_ids):
        conn.execute(update(shipments).where(shipments.c.id.in_(chunk)).values(status=status, updated_at=now))


def order_tracking_facts(
    conn: Connection, order_ids: Sequence[int], exception_incidents: Sequence[str]
) -> tuple[dict[int, str], dict[int, list[str]], set[int]]:
    """Each order's state, its shipments' statuses, and whether it has an open incident of the given types."""
    states: dict[int, str] = {}
    statuses: dict[int, list[str]] = {}
    open_incident: set[int] = set()
    for chunk in chunked(sorted({int(i) for i in order_ids})):
        states.update(
            dict(conn.execute(select(orders.c.id, orders.c.state).where(orders.c.id.in_(chunk))).all())
        )
        for oid, status in conn.execute(
            select(shipments.c.order_id, shipments.c.status).where(shipments.c.order_id.in_(chunk))
        ):
            statuses.setdefault(oid, []).append(status)
        open_incident.update(
            oid
            for (oid,) in conn.execute(
                select(tracking_incidents.c.order_id).where(
                    tracking_incidents.c.order_id.in_(chunk),
                    tracking_incidents.c.status == "open",
                    tracking_incidents.c.incident_type.in_(list(exception_incidents)),
                )
            )
        )
    return states, statuses, open_incident


# --- incidents and claims --------------------------------------------------------------------------------------


def known_incidents(conn: Connection, shipment_ids: Sequence[int]) -> pd.DataFrame:
    columns = ["id", "shipment_id", "incident_type", "status", "resolved_at", "occurrences"]
    known = _chunked_frames(
        conn,
        lambda chunk: select(*(tracking_incidents.c[c] for c in columns)).where(
            tracking_incidents.c.shipment_id.in_(chunk)
        ),
        shipment_ids,
        columns,
    )
    if known.empty:
        known = pd.DataFrame(columns=columns)
    known["shipment_id"] = known["shipment_id"].astype(int)
    return known


def touch_incidents(conn: Connection, incident_ids: Sequence[int], now: datetime) -> None:
    conn.execute(
        update(tracking_incidents)
        .where(tracking_incidents.c.id.in_(list(incident_ids)))
        .values(last_seen_at=now)
    )


def insert_incidents(conn: Connection, frame: pd.DataFrame) -> int:
    return insert_rows(conn, tracking_incidents, frame, on_conflict=["shipment_id", "incident_type"])


def reopen_incidents(conn: Connection, rows: list[dict], now: datetime) -> None:
    """``rows``: iid, due, ev (new evidence); the incident opens again and counts one more occurrence."""
    conn.execute(
        update(tracking_incidents)
        .where(tracking_incidents.c.id == bindparam("iid"))
        .values(
            status="open", resolved_at=None, resolution=None, resolved_by=None, opened_at=now, due_at=bindparam("due"),
            evidence=bindparam("ev"), occurrences=tracking_incidents.c.occurrences + 1, last_seen_at=now,
            updated_at=now,
        ),
        rows,
    )  # fmt: skip


def incidents_by_id(conn: Connection, incident_ids: Sequence[int]) -> pd.DataFrame:
    return read_frame(
        conn, select(tracking_incidents).where(tracking_incidents.c.id.in_([int(i) for i in incident_ids]))
    )


def claim_facts(conn: Connection, incidents: pd.DataFrame) -> pd.DataFrame:
    """Incidents joined with their shipments' declared value, insurance and freight."""
    ships = read_frame(
        conn,
        select(
            shipments.c.id.label("shipment_id"), shipments.c.declared_value_fen, shipments.c.insured,
            shipments.c.freight_fen,
        ).where(shipments.c.id.in_(incidents["shipment_id"].astype(int).tolist())),
    )  # fmt: skip
    return incidents.merge(ships, on="shipment_id")


def insert_claims(conn: Connection, rows: pd.DataFrame) -> int:
    return insert_rows(conn, liability_claims, rows, on_conflict=["incident_id"]) if not rows.empty else 0


def open_auto_resolvable(
    conn: Connection, kinds: Sequence[str], shipment_ids: Sequence[int] | None
) -> pd.DataFrame:
    """Open incidents of these kinds with their shipment's status and last event (every shipment, or these)."""
    stmt = (
        select(
            tracking_incidents.c.id, tracking_incidents.c.order_id, tracking_incidents.c.incident_type,
            tracking_incidents.c.opened_at, shipments.c.status, shipments.c.last_event_at,
        )
        .join(shipments, shipments.c.id == tracking_incidents.c.shipment_id)
        .where(tracking_incidents.c.status == "open", tracking_incidents.c.incident_type.in_(list(kinds)))
    )  # fmt: skip
    if shipment_ids is None:
        return read_frame(conn, stmt)
    frames = [
        read_frame(conn, stmt.where(tracking_incidents.c.shipment_id.in_(c))) for c in chunked(shipment_ids)
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def resolve_incidents(conn: Connection, rows: list[dict], now: datetime, actor: str) -> None:
    """``rows``: iid, why; only incidents still open are closed."""
    conn.execute(
        update(tracking_incidents)
        .where(tracking_incidents.c.id == bindparam("iid"), tracking_incidents.c.status == "open")
        .values(
            status="resolved", resolved_at=now, resolution=bindparam("why"), resolved_by=actor, updated_at=now
        ),
        rows,
    )


def incident(conn: Connection, incident_id: int) -> dict | None:
    row = (
        conn.execute(select(tracking_incidents).where(tracking_incidents.c.id == incident_id))
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


def incident_orders(conn: Connection, incident_ids: Sequence[int]) -> set[int]:
    return {
        int(o)
        for (o,) in conn.execute(
            select(tracking_incidents.c.order_id).where(tracking_incidents.c.id.in_(list(incident_ids)))
        )
    }


def set_claim_status(
    conn: Connection, incident_id: int, status: str, now: datetime, settled_amount_fen: int | None = None
) -> None:
    values = {"status": status, "updated_at": now}
    if settled_amount_fen is not None:
        values.update(settled_amount_fen=int(settled_amount_fen), settled_at=now)
    conn.execute(
        update(liability_claims).where(liability_claims.c.incident_id == incident_id).values(**values)
    )


def incident_report_rows(conn: Connection, incident_ids: Sequence[int]) -> pd.DataFrame:
    """Incidents for a report: the order number instead of any personal data."""
    return read_frame(
        conn,
        select(
            tracking_incidents.c.id, orders.c.order_no, tracking_incidents.c.incident_type, tracking_incidents.c.carrier,
            tracking_incidents.c.waybill_no, tracking_incidents.c.owner, tracking_incidents.c.due_at,
            tracking_incidents.c.evidence,
        )
        .join(orders, orders.c.id == tracking_incidents.c.order_id)
        .where(tracking_incidents.c.id.in_([int(i) for i in incident_ids]))
        .order_by(tracking_incidents.c.id),
    )  # fmt: skip


# --- pushes ----------------------------------------------------------------------------------------------------


def insert_push_receipt(conn: Connection, param: str, notice: PushNotice, now: datetime) -> int | None:
    """Keep a verified push as received (once: a re-sent push is the same receipt); returns its id if new."""
    digest = hashlib.sha256(param.encode("utf-8")).hexdigest()
    inserted = insert_rows(
        conn,
        tracking_push_receipts,
        pd.DataFrame(
            [{"received_at": now, "carrier": notice.com, "waybill_no": notice.num, "push_status": notice.status,
              "content": param, "content_hash": digest, "status": "landed"}]
        ),
        on_conflict=["content_hash"],
    )  # fmt: skip
    if not inserted:
        return None
    return conn.execute(
        select(tracking_push_receipts.c.id).where(tracking_push_receipts.c.content_hash == digest)
    ).scalar_one()


def landed_pushes(conn: Connection, receipt_ids: Sequence[int] | None = None, limit: int | None = None
                  ) -> pd.DataFrame:
    stmt = select(tracking_push_receipts).where(tracking_push_receipts.c.status == "landed")
    if receipt_ids is not None:
        stmt = stmt.where(tracking_push_receipts.c.id.in_(list(receipt_ids)))
    stmt = stmt.order_by(tracking_push_receipts.c.id)
    return read_frame(conn, stmt.limit(limit) if limit else stmt)


def mark_pushes(conn: Connection, marks: list[dict], now: datetime) -> None:
    """Mark receipts as applied or unmatched in one statement (``receipt_id``, ``status``, ``shipment_id``,
    ``error`` per mark)."""
    if not marks:
        return
    conn.execute(
        update(tracking_push_receipts)
        .where(tracking_push_receipts.c.id == bindparam("receipt_id"))
        .values(applied_at=now, status=bindparam("status"), shipment_id=bindparam("shipment_id"),
                error=bindparam("error")),
        marks,
    )  # fmt: skip


def shipments_for_waybills(conn: Connection, waybill_nos: Sequence[str]) -> pd.DataFrame:
    """The shipments with any of these waybill numbers (any carrier; the caller matches the carrier), in one
    query per batch, oldest shipment first."""
    if not waybill_nos:
        return pd.DataFrame(columns=["shipment_id", "order_id", "shipment_no", "carrier", "waybill_no", "status"])
    return read_frame(
        conn,
        select(
            shipments.c.id.label("shipment_id"), shipments.c.order_id, shipments.c.shipment_no, shipments.c.carrier,
            shipments.c.waybill_no, shipments.c.status,
        ).where(shipments.c.waybill_no.in_(sorted({w for w in waybill_nos if w}))).order_by(shipments.c.id),
    )  # fmt: skip


def record_push_failure(conn: Connection, receipt_id: int, error: str, give_up_after: int, now: datetime) -> str:
    """One more failed try to apply a landed push; after ``give_up_after`` tries it is marked ``failed`` (kept,
    with the reason, for a person). Returns the receipt's status."""
    attempts = conn.execute(
        update(tracking_push_receipts).where(tracking_push_receipts.c.id == receipt_id)
        .values(attempts=tracking_push_receipts.c.attempts + 1, error=error[:2000])
        .returning(tracking_push_receipts.c.attempts)
    ).scalar_one()
    if attempts < give_up_after:
        return "landed"
    conn.execute(update(tracking_push_receipts).where(tracking_push_receipts.c.id == receipt_id)
                 .values(status="failed", applied_at=now))
    return "failed"


def failed_pushes(conn: Connection) -> pd.DataFrame:
    """Pushes given up on (status ``failed``), oldest first, with their reason."""
    t = tracking_push_receipts
    return read_frame(conn, select(t.c.id, t.c.received_at, t.c.carrier, t.c.waybill_no, t.c.attempts, t.c.error)
                      .where(t.c.status == "failed").order_by(t.c.id))


def unsubscribed_shipments(conn: Connection, limit: int) -> pd.DataFrame:
    return read_frame(
        conn,
        select(
            shipments.c.id.label("shipment_id"), shipments.c.carrier, shipments.c.waybill_no,
            orders.c.customer_phone.label("phone"), orders.c.ship_province, orders.c.ship_city, orders.c.ship_district,
        )
        .join(orders, orders.c.id == shipments.c.order_id)
        .outerjoin(ts, ts.c.shipment_id == shipments.c.id)
        .where(shipments.c.waybill_no.is_not(None), shipments.c.status.not_in(FINAL), ts.c.subscription_status.is_(None))
        .order_by(shipments.c.id)
        .limit(limit),
    )  # fmt: skip
