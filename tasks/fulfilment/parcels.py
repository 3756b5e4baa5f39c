"""Orders shipped together (issue 18, item 4): merging planned shipments into parcels, undoing a merge, and what
the waybill step needs to ask one waybill for a parcel.

Why fulfilment owns this: a parcel is formed where shipments are planned and handed to the carrier. Allocation
writes one shipment request per order and warehouse; ``merge_parcels`` (a step between allocation and waybills)
groups the requests that may travel together (``parcel_rules.merge_groups``) and prices the carrier for the
combined goods (``carrier_choice``); ``waybills.create_waybills`` asks one waybill per parcel and records it on
every member request. Each order keeps its own request, allocations, ``shipments`` row (so tracking, the
channels' confirmation and settlement see nothing new: several shipments share a waybill, as a pushed waybill
already finds all its shipments), lines and state. The channels and tracking areas read those tables; nothing
else changes for them.

Undo: a merged parcel waits ``hold_minutes`` before its waybill is asked for; until the first call
(``requested_at``), ``undo_merge`` splits it back: each member gets back its own carrier choice (kept on its
request) and is marked never to merge again. After the first call a waybill may exist at the carrier, so the
merge stays.

Transactions: ``merge_parcels`` is one transaction (conditional updates: a request joins at most one parcel);
``undo_merge`` is one (conditional on the parcel still unasked).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, select, update

from tasks.fulfilment.carrier_choice import DispatchCalendar, choose_carriers, options_as_records
from tasks.fulfilment.parcel_rules import merge_groups, split_fen
from tasks.fulfilment.rate_cards import rate_table
from yidi.bulk import chunked, insert_rows, json_text, read_frame, read_in, utc_now
from yidi.carrier_routes import route_standing
from yidi.lifecycle import current_actor, record_events
from yidi.money import decimal_to_fen
from yidi.schema import orders
from yidi.schema_fulfilment import parcels, shipment_requests
from yidi.settings import Settings, get_settings


class _MergeConflict(RuntimeError):
    """Another run planned or merged some of these requests meanwhile: this run's merge is rolled back whole."""


class ParcelNotUndoable(ValueError):
    """The merge cannot be undone (unknown parcel, already undone, or its waybill was asked for)."""


@dataclass
class MergeResult:
    parcels: int = 0
    orders: int = 0
    no_carrier: int = 0  # groups whose combined goods no carrier takes: they ship apart
    rows: list[dict] = field(default_factory=list)  # parcel_no, warehouse, carrier, orders (order numbers)

    def as_dict(self) -> dict:
        return asdict(self)


def _candidates(conn: Connection) -> pd.DataFrame:
    sr, o = shipment_requests.c, orders.c
    return read_frame(conn, select(
        sr.id.label("request_id"), sr.shipment_no, sr.order_id, sr.warehouse, sr.weight_kg, sr.volume_m3,
        sr.declared_value_fen, sr.no_merge, o.order_no, o.customer_id, o.customer_name, o.customer_phone,
        o.ship_province, o.ship_city, o.ship_district, o.ship_detail, o.order_time, o.payment_method,
        o.promised_date,
    ).join(orders, o.id == sr.order_id)
     .where(sr.status == "pending", sr.parcel_no.is_(None), sr.cod_amount_fen == 0)
     .order_by(sr.id))  # fmt: skip


def merge_parcels(engine: Engine, *, settings: Settings | None = None, now: datetime | None = None,
                  actor: str | None = None) -> MergeResult:
    """Merge the pending shipment requests that may travel together into parcels (see the module docstring)."""
    settings = settings or get_settings()
    policy, now, actor = settings.fulfilment, now or utc_now(), actor or current_actor()
    result = MergeResult()
    if not policy.parcels.merge:
        return result
    try:
        return _merge(engine, settings, now, actor, result)
    except _MergeConflict:  # rolled back: the requests are merged (or shipped alone) by the next run
        return MergeResult()


def _merge(engine: Engine, settings: Settings, now: datetime, actor: str, result: MergeResult) -> MergeResult:
    policy = settings.fulfilment
    with engine.begin() as conn:
        cand = _candidates(conn)
        groups = merge_groups(cand, policy.parcels)
        if groups.empty:
            return result
        members = groups.merge(cand, on="request_id").sort_values(["parcel", "order_time", "request_id"])
        combined = members.groupby("parcel", sort=True).agg(
            warehouse=("warehouse", "first"), province=("ship_province", "first"),
            weight_kg=("weight_kg", lambda w: w.sum() if w.notna().all() else np.nan),
            volume_m3=("volume_m3", "sum"), declared_value_fen=("declared_value_fen", "sum"),
            promised_date=("promised_date", "min"), lead=("shipment_no", "first"),
        ).reset_index().rename(columns={"parcel": "shipment_key"})  # fmt: skip
        combined["cod_amount_fen"] = 0
        calendar = DispatchCalendar(policy.calendar_fallback_weekdays)
        choice = choose_carriers(
            combined[["shipment_key", "province", "weight_kg", "volume_m3", "declared_value_fen", "cod_amount_fen",
                      "promised_date"]],
            rate_table(policy), dispatch_day=calendar.dispatch_day(now, policy.dispatch_cutoff),
            insurance_threshold_fen=decimal_to_fen(policy.insurance_threshold_yuan),
            insurance_provinces=policy.insurance_route_provinces, calendar=calendar,
            route_standing=route_standing(conn, now), route_penalty_pct=settings.risk.carrier.penalty_points,
        )  # fmt: skip
        chosen = choice.choices.set_index("shipment_key")
        ok = chosen["exception"].isna()
        result.no_carrier = int((~ok).sum())
        keep = combined[combined["shipment_key"].map(ok)].copy()
        if keep.empty:
            return result
        keep["parcel_no"] = _parcel_numbers(conn, keep["lead"].astype(str).tolist())
        alternatives = options_as_records(choice.options[choice.options["shipment_key"].isin(keep["shipment_key"])])
        c = chosen.loc[keep["shipment_key"]]
        hold_until = now + timedelta(minutes=policy.parcels.hold_minutes)
        count = members.groupby("parcel")["order_id"].nunique()
        insert_rows(conn, parcels, pd.DataFrame({
            "parcel_no": keep["parcel_no"].to_numpy(), "idempotency_key": ("yidi-parcel-" + keep["parcel_no"]).to_numpy(),
            "warehouse": keep["warehouse"].to_numpy(), "orders": count.reindex(keep["shipment_key"]).to_numpy(),
            "carrier": c["carrier"].astype(object).to_numpy(), "service": c["service"].to_numpy(),
            "weight_kg": keep["weight_kg"].round(3).to_numpy(), "chargeable_weight_kg": c["chargeable_weight_kg"].to_numpy(),
            "volume_m3": keep["volume_m3"].round(6).to_numpy(), "declared_value_fen": keep["declared_value_fen"].to_numpy(),
            "insured": c["insured"].to_numpy(dtype=bool), "insurance_fee_fen": c["insurance_fee_fen"].to_numpy(),
            "freight_fen": c["freight_fen"].to_numpy(),
            "expected_delivery_date": pd.to_datetime(c["expected_delivery_date"]).dt.date.to_numpy(),
            "choice_reason": c["reason"].to_numpy(),
            "alternatives": [json_text(alternatives.get(k, [])) for k in keep["shipment_key"]],
            "status": "planned", "hold_until": hold_until, "created_at": now, "updated_at": now,
        }))  # fmt: skip
        parcel_of = dict(zip(keep["shipment_key"], keep["parcel_no"], strict=True))
        joining = members[members["parcel"].isin(parcel_of)]
        sr = shipment_requests.c
        moved = conn.execute(
            update(shipment_requests)
            .where(sr.id == bindparam("rid"), sr.status == "pending", sr.parcel_no.is_(None))
            .values(parcel_no=bindparam("pno"), updated_at=now),
            [{"rid": int(r), "pno": parcel_of[p]} for r, p in zip(joining["request_id"], joining["parcel"], strict=True)],
        ).rowcount  # fmt: skip
        if moved != len(joining):  # another run planned these meanwhile: roll back, merge next run from fresh data
            raise _MergeConflict(f"parcel merge conflicted: {moved} of {len(joining)} requests still free")
        numbers = joining.groupby("parcel")["order_no"].apply(list)
        record_events(conn, pd.DataFrame({
            "order_id": joining["order_id"].astype(int).to_numpy(), "kind": "fulfilment", "occurred_at": now,
            "reason": [f"ships in parcel {parcel_of[p]} with order(s) "
                       + ", ".join(n for n in numbers[p] if n != own) for p, own in
                       zip(joining["parcel"], joining["order_no"], strict=True)],
            "details": [{"parcel_no": parcel_of[p], "shipment_no": s} for p, s in
                        zip(joining["parcel"], joining["shipment_no"], strict=True)],
        }), actor=actor)  # fmt: skip
        for k, row in zip(keep["shipment_key"], c.itertuples(), strict=True):
            result.rows.append({"parcel_no": parcel_of[k], "warehouse": keep.set_index("shipment_key").loc[k, "warehouse"],
                                "carrier": row.carrier, "orders": numbers[k]})  # fmt: skip
        result.parcels, result.orders = len(keep), int(joining["order_id"].nunique())
    return result


def _parcel_numbers(conn: Connection, leads: list[str]) -> list[str]:
    """``P<first member's shipment number>``, then ``…-2``, ``…-3`` for the next parcels that member leads (a parcel
    dissolved when one of its orders left may be merged again from the rest)."""
    p = parcels.c
    numbers = []
    for lead in leads:
        led = conn.execute(select(p.parcel_no).where((p.parcel_no == f"P{lead}") | p.parcel_no.like(f"P{lead}-%")))
        count = len(led.scalars().all())
        numbers.append(f"P{lead}" if count == 0 else f"P{lead}-{count + 1}")
    return numbers


def dissolve_broken_parcels(conn: Connection, parcel_nos: list[str], now: datetime) -> list[str]:
    """Planned parcels not yet asked for whose members are no longer all waiting (an order was cancelled or
    re-planned meanwhile): dissolved, so the rest ship on their own or are merged again with the right figures."""
    if not parcel_nos:
        return []
    p, sr = parcels.c, shipment_requests.c
    planned = read_in(conn, lambda nos: select(p.parcel_no, p.orders).where(
        p.parcel_no.in_(nos), p.status == "planned", p.requested_at.is_(None)), sorted(set(parcel_nos)))
    if planned.empty:
        return []
    waiting = read_in(conn, lambda nos: select(sr.parcel_no, sr.order_id).where(
        sr.parcel_no.in_(nos), sr.status == "pending"), planned["parcel_no"].tolist())  # fmt: skip
    count = waiting.groupby("parcel_no")["order_id"].nunique() if len(waiting) else pd.Series(dtype=int)
    broken = [n for n, k in zip(planned["parcel_no"], planned["orders"], strict=True) if int(count.get(n, 0)) != int(k)]
    for chunk in chunked(broken):
        conn.execute(update(parcels).where(p.parcel_no.in_(chunk), p.status == "planned")
                     .values(status="undone", undone_at=now, undone_by="yidi: an order left the parcel",
                             updated_at=now))  # fmt: skip
        conn.execute(update(shipment_requests).where(sr.parcel_no.in_(chunk)).values(parcel_no=None, updated_at=now))
    return broken


def undo_merge(engine: Engine, parcel_no: str, *, now: datetime | None = None, actor: str | None = None,
               reason: str = "") -> list[str]:
    """Split a merged parcel back into its orders' own shipments before its waybill was asked for; returns the
    member shipment numbers. Raises ``ParcelNotUndoable`` saying why otherwise."""
    now, actor = now or utc_now(), actor or current_actor()
    p, sr = parcels.c, shipment_requests.c
    with engine.begin() as conn:
        row = conn.execute(select(p.status, p.requested_at, p.waybill_no).where(p.parcel_no == parcel_no)).first()
        if row is None:
            raise ParcelNotUndoable(f"no parcel {parcel_no}")
        undone = conn.execute(
            update(parcels).where(p.parcel_no == parcel_no, p.status == "planned", p.requested_at.is_(None))
            .values(status="undone", undone_at=now, undone_by=actor, updated_at=now)
        ).rowcount  # fmt: skip
        if not undone:
            why = (f"its waybill {row.waybill_no} exists" if row.waybill_no else
                   "its waybill was already asked for" if row.requested_at is not None else f"it is {row.status}")
            raise ParcelNotUndoable(f"parcel {parcel_no} cannot be split: {why}")
        members = read_frame(conn, select(sr.id, sr.order_id, sr.shipment_no).where(sr.parcel_no == parcel_no))
        conn.execute(update(shipment_requests).where(sr.parcel_no == parcel_no)
                     .values(parcel_no=None, no_merge=True, updated_at=now))  # fmt: skip
        record_events(conn, pd.DataFrame({
            "order_id": members["order_id"].astype(int).to_numpy(), "kind": "fulfilment", "occurred_at": now,
            "reason": f"merge into parcel {parcel_no} undone: ships on its own" + (f" ({reason})" if reason else ""),
            "details": [{"parcel_no": parcel_no, "shipment_no": s} for s in members["shipment_no"]],
        }), actor=actor)  # fmt: skip
    return sorted(members["shipment_no"].tolist())


def parcels_frame(conn: Connection, status: str | None = None) -> pd.DataFrame:
    """Parcels with their orders (order numbers, comma-separated), newest first."""
    p, sr, o = parcels.c, shipment_requests.c, orders.c
    stmt = select(p.parcel_no, p.status, p.warehouse, p.carrier, p.orders, p.weight_kg, p.freight_fen, p.hold_until,
                  p.requested_at, p.waybill_no, p.created_at).order_by(p.id.desc())  # fmt: skip
    if status:
        stmt = stmt.where(p.status == status)
    frame = read_frame(conn, stmt)
    if frame.empty:
        return frame.assign(order_nos=[])
    members = read_in(conn, lambda nos: select(sr.parcel_no, o.order_no).join(orders, o.id == sr.order_id)
                      .where(sr.parcel_no.in_(nos)).order_by(o.order_no), frame["parcel_no"].tolist())  # fmt: skip
    listed = members.groupby("parcel_no")["order_no"].apply(", ".join) if len(members) else pd.Series(dtype=object)
    frame["order_nos"] = frame["parcel_no"].map(listed).fillna("")
    return frame


# --- the waybill step's side ------------------------------------------------------------------------------------


def claim_parcels_for_waybills(conn: Connection, parcel_nos: list[str], now: datetime) -> dict[str, dict]:
    """The planned parcels among ``parcel_nos`` whose hold is over, stamped ``requested_at`` (from now on the
    merge cannot be undone); returns parcel_no -> the parcel's row."""
    if not parcel_nos:
        return {}
    dissolve_broken_parcels(conn, parcel_nos, now)
    p = parcels.c
    for chunk in chunked(sorted(set(parcel_nos))):
        conn.execute(
            update(parcels).where(p.parcel_no.in_(chunk), p.status == "planned",
                                  (p.hold_until.is_(None)) | (p.hold_until <= now), p.requested_at.is_(None))
            .values(requested_at=now, updated_at=now)
        )  # fmt: skip
    rows = read_in(conn, lambda nos: select(parcels).where(p.parcel_no.in_(nos), p.status == "planned",
                                                           p.requested_at.is_not(None)), sorted(set(parcel_nos)))
    return {r["parcel_no"]: r for r in rows.to_dict("records")}


def member_rows(parcel: dict, members: list[dict]) -> list[dict]:
    """Each member request as it ships in the parcel: the parcel's carrier, service and date; its share of the
    parcel's freight, insurance fee and chargeable weight (by weight, adding up to the parcel's exactly)."""
    weights = [float(m["weight_kg"] or 0) for m in members]
    freight = split_fen(int(parcel["freight_fen"] or 0), weights)
    insurance = split_fen(int(parcel["insurance_fee_fen"] or 0), weights)
    total_weight = sum(weights) or 1.0
    return [m | {"carrier": parcel["carrier"], "service": parcel["service"], "freight_fen": f,
                 "insurance_fee_fen": i, "insured": bool(parcel["insured"]),
                 "chargeable_weight_kg": round(float(parcel["chargeable_weight_kg"] or 0) * w / total_weight, 3),
                 "expected_delivery_date": parcel["expected_delivery_date"], "parcel_no": parcel["parcel_no"]}
            for m, f, i, w in zip(members, freight, insurance, weights, strict=True)]  # fmt: skip


def parcel_request_row(parcel: dict, members: list[dict]) -> dict:
    """The row the carrier's request body is built from: the first member's sender and recipient, the parcel's
    carrier and figures, the parcel number as our reference."""
    first = members[0]
    notes = "；".join(dict.fromkeys(m["buyer_note"] for m in members if isinstance(m.get("buyer_note"), str)))
    return first | {
        "shipment_no": parcel["parcel_no"], "carrier": parcel["carrier"], "service": parcel["service"],
        "weight_kg": parcel["weight_kg"], "volume_m3": parcel["volume_m3"],
        "declared_value_fen": parcel["declared_value_fen"], "insured": parcel["insured"], "cod_amount_fen": 0,
        "buyer_note": notes or None,
    }  # fmt: skip


def mark_parcels(conn: Connection, created: dict[str, str], rejected: set[str], now: datetime) -> None:
    """Parcels whose waybill was recorded (parcel_no -> waybill) or that the carrier refused."""
    p = parcels.c
    if created:
        conn.execute(update(parcels).where(p.parcel_no == bindparam("pno"), p.status == "planned")
                     .values(status="created", waybill_no=bindparam("wb"), updated_at=now),
                     [{"pno": k, "wb": v} for k, v in created.items()])  # fmt: skip
    for chunk in chunked(sorted(rejected)):
        conn.execute(update(parcels).where(p.parcel_no.in_(chunk), p.status == "planned")
                     .values(status="rejected", updated_at=now))  # fmt: skip
