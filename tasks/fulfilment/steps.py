"""Fulfilment handoff (issue 5; F1-F5, K3, P2, T1, T2): approved orders to allocated stock, requests for what is
short, a carrier per shipment, waybills from the carrier, documents for the warehouse, notices to the customer.

Plain functions over one engine/connection each; ``flows/fulfill.py`` wraps them in Prefect tasks.

``allocate_orders`` is one transaction per attempt:

1. its first statement writes (the run row), so on SQLite it holds the write lock from the start and reads
   see every committed change; on PostgreSQL it reads the latest committed state;
2. reads the candidate orders (approved, backordered, in production/procurement, and shipped orders with open
   backorders), their outstanding lines, free stock, open requests and decisions;
3. sets aside orders no carrier can take (unserved destination, items without weight or not in the catalog):
   they stay where they are with a clear 'fulfilment' exception event, once per distinct reason;
4. plans (``tasks.fulfilment.allocation``), prices carriers for the resulting shipments (``tasks.fulfilment.carrier_choice``);
5. reserves stock with conditional UPDATEs (``tasks.fulfilment.stock.apply_movements``): if another run took the stock
   meanwhile, ``InsufficientStock`` is raised; if another run moved the orders, the state transitions are
   skipped. Either way the whole attempt rolls back and is planned again from fresh data. The CHECK on
   ``stock_levels`` refuses any over-allocation at the database level regardless;
6. writes allocations, shipment requests (carrier, alternatives, insurance), backorders, production and
   purchase requests, customer decisions with notices, state transitions with events.

Network calls (waybills, purchase orders) happen after the commit, never inside a transaction; each creation
carries an idempotency key, so a lost answer or a crash before recording it can never create a second one.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from tasks.fulfilment.allocation import choose_suppliers, plan_allocation, plan_shipments, shipment_keys_for
from tasks.fulfilment.carrier_choice import (
    PROVINCE_INDEX,
    DispatchCalendar,
    RateTable,
    choose_carriers,
    options_as_records,
    rate_table,
)
from tasks.fulfilment.stock import (
    InsufficientStock,
    apply_movements,
    fefo_issue_plan,
    stock_position,
    sync_warehouses,
    warehouse_order,
)
from yidi.bulk import frame_records, insert_rows, read_frame, upsert_returning_ids, utc_now
from yidi.lifecycle import OrderState, current_actor, record_events, transition_orders
from yidi.masking import mask_name, mask_phone
from yidi.outbox import enqueue
from yidi.schema import catalog_items, customers, order_events, order_lines, orders, shipments
from yidi.schema_fulfilment import (
    QTY_EPSILON,
    allocation_runs,
    allocations,
    backorders,
    customer_decisions,
    production_requests,
    purchase_requests,
    shipment_requests,
    supplier_prices,
    suppliers,
    warehouses,
)
from yidi.settings import PROVINCE_SHORT_NAMES, FulfilmentPolicy, Settings, get_settings, province_short_name
from yidi.workdays import BUSINESS_TZ

log = logging.getLogger(__name__)

S = OrderState
FULFIL_STATES = (S.APPROVED, S.BACKORDERED, S.IN_PRODUCTION, S.IN_PROCUREMENT)
# Orders that shipped part already and still have open backorders get follow-up shipments (no state change).
FOLLOW_UP_STATES = (S.ALLOCATED, S.SHIPPED, S.IN_TRANSIT, S.DELIVERED)
OPEN_PRODUCTION = ("planned", "qc_pending")
OPEN_PURCHASE = ("draft", "sent")
CHUNK = 900


class AllocationConflict(RuntimeError):
    """Another run changed the same orders meanwhile; the attempt is rolled back and planned again."""


def _chunks(values: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT or value is pd.NA


def _today(now: datetime) -> date:
    return now.astimezone(BUSINESS_TZ).date()


# --- reading the work ----------------------------------------------------------------------------------------


@dataclass
class Candidates:
    orders: pd.DataFrame
    lines: pd.DataFrame  # product lines with ``outstanding``
    items: pd.DataFrame
    requested: pd.DataFrame  # order_line_id -> requested_qty, ready_date, kinds
    decisions: pd.DataFrame  # latest decision per order
    shipment_counts: dict[int, int]


def _candidate_condition():
    open_backorders = select(backorders.c.order_id).where(backorders.c.status == "open")
    return or_(
        orders.c.state.in_([s.value for s in FULFIL_STATES]),
        and_(orders.c.state.in_([s.value for s in FOLLOW_UP_STATES]), orders.c.id.in_(open_backorders)),
    )


def load_candidates(conn: Connection) -> Candidates:
    condition = _candidate_condition()
    o, c = orders.c, customers.c
    order_frame = read_frame(
        conn,
        select(
            o.id.label("order_id"), o.order_no, o.state, o.promised_date, o.order_time, o.ship_province,
            o.payment_method, o.order_total_fen, o.goods_total_fen,
            c.allow_partial_shipment,
        )
        .select_from(orders.outerjoin(customers, customers.c.id == o.customer_id))
        .where(condition),
    )  # fmt: skip
    ol = order_lines.c
    line_frame = read_frame(
        conn,
        select(
            ol.id.label("order_line_id"), ol.order_id, ol.line_no, ol.item_code, ol.item_kind, ol.quantity,
            ol.line_total_fen,
        )
        .join(orders, orders.c.id == ol.order_id)
        .where(condition),
    )  # fmt: skip
    a = allocations.c
    allocated = read_frame(
        conn,
        select(a.order_line_id, func.sum(a.quantity).label("allocated"))
        .join(orders, orders.c.id == a.order_id)
        .where(condition, a.status.in_(["reserved", "shipped"]))
        .group_by(a.order_line_id),
    )
    pr, pq = production_requests.c, purchase_requests.c
    produced = read_frame(
        conn,
        select(pr.order_line_id, func.sum(pr.quantity).label("qty"), func.max(pr.available_date).label("ready"))
        .where(pr.status.in_(OPEN_PRODUCTION), pr.order_line_id.is_not(None))
        .group_by(pr.order_line_id),
    ).assign(kind="production")
    bought = read_frame(
        conn,
        select(pq.order_line_id, func.sum(pq.quantity).label("qty"), func.max(pq.expected_date).label("ready"))
        .where(pq.status.in_(OPEN_PURCHASE), pq.order_line_id.is_not(None))
        .group_by(pq.order_line_id),
    ).assign(kind="purchase")
    requested = pd.concat([produced, bought], ignore_index=True)
    cd = customer_decisions.c
    latest = select(cd.order_id, func.max(cd.id).label("id")).group_by(cd.order_id).subquery()
    decisions = read_frame(
        conn,
        select(cd.id, cd.order_id, cd.choice, cd.decided_at).join(latest, latest.c.id == cd.id),
    )
    counts = read_frame(
        conn,
        select(shipment_requests.c.order_id, func.count().label("n")).group_by(shipment_requests.c.order_id),
    )
    items = read_frame(
        conn,
        select(
            catalog_items.c.code.label("item_code"), catalog_items.c.kind, catalog_items.c.name, catalog_items.c.unit,
            catalog_items.c.weight_kg, catalog_items.c.volume_m3, catalog_items.c.sourcing,
            catalog_items.c.lead_time_days, catalog_items.c.preferred_supplier,
        ),
    )  # fmt: skip
    done = allocated.set_index("order_line_id")["allocated"] if len(allocated) else pd.Series(dtype=float)
    line_frame["allocated"] = done.reindex(line_frame["order_line_id"]).fillna(0.0).to_numpy()
    line_frame["outstanding"] = (line_frame["quantity"].astype(float) - line_frame["allocated"]).clip(lower=0)
    return Candidates(
        orders=order_frame,
        lines=line_frame,
        items=items,
        requested=requested,
        decisions=decisions,
        shipment_counts=dict(zip(counts["order_id"].tolist(), counts["n"].tolist(), strict=True)),
    )


def product_lines(lines: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Lines that need goods: not service lines (by the line or the catalog), with outstanding quantity."""
    kind = items.set_index("item_code")["kind"].reindex(lines["item_code"]).to_numpy(dtype=object)
    service = (lines["item_kind"].to_numpy(dtype=object) == "service") | (kind == "service")
    return lines[~service & (lines["outstanding"].to_numpy(dtype=float) > QTY_EPSILON)]


def served_provinces(table: RateTable) -> set[str]:
    served = (table.zone_lookup >= 0).any(axis=0)
    return {PROVINCE_SHORT_NAMES[i] for i in np.flatnonzero(served)}


def fastest_transit(table: RateTable) -> dict[str, int]:
    """Province short name -> the fewest transit working days any carrier offers."""
    result = {}
    transit = table.zones["transit_days"].to_numpy() if len(table.zones) else np.zeros(0)
    for province, index in PROVINCE_INDEX.items():
        rows = table.zone_lookup[:, index]
        rows = rows[rows >= 0]
        if len(rows):
            result[province] = int(transit[rows].min())
    return result


def precheck_exceptions(order_frame: pd.DataFrame, lines: pd.DataFrame, items: pd.DataFrame, served: set[str]) -> dict[int, str]:
    """Orders no carrier could take, whatever the stock: order_id -> readable reason."""
    reasons: dict[int, list[str]] = {}
    known = items.set_index("item_code")
    in_catalog = lines["item_code"].isin(known.index)
    for oid, code in zip(lines.loc[~in_catalog, "order_id"].tolist(), lines.loc[~in_catalog, "item_code"].tolist(), strict=True):
        reasons.setdefault(oid, []).append(f"item {code} is not in the catalog")
    weight = known["weight_kg"].reindex(lines["item_code"]).to_numpy(dtype=float)
    weightless = in_catalog.to_numpy() & np.isnan(weight)
    for oid, code in zip(lines.loc[weightless, "order_id"].tolist(), lines.loc[weightless, "item_code"].tolist(), strict=True):
        reasons.setdefault(oid, []).append(f"item {code} has no weight: no carrier can be priced")
    provinces = order_frame["ship_province"].map(lambda p: province_short_name(p) if isinstance(p, str) else None)
    unserved = ~provinces.isin(served)
    for oid, raw in zip(order_frame.loc[unserved, "order_id"].tolist(), order_frame.loc[unserved, "ship_province"].tolist(), strict=True):
        where = raw if isinstance(raw, str) and raw else "an empty province"
        reasons.setdefault(oid, []).append(f"no carrier serves {where}")
    return {oid: "; ".join(dict.fromkeys(parts)) for oid, parts in reasons.items()}


# --- allocation run --------------------------------------------------------------------------------------------


@dataclass
class AllocationResult:
    run_id: int
    attempts: int
    considered: int = 0
    allocated: int = 0  # orders that got stock in this run (fully or partly)
    partial: int = 0
    backordered: int = 0
    exceptions: int = 0
    shipments_planned: int = 0
    production_requests: int = 0
    purchase_requests: int = 0
    decisions_offered: int = 0
    exception_rows: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("exception_rows")
        return data


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, AllocationConflict | InsufficientStock | IntegrityError):
        return True
    if isinstance(exc, DBAPIError):
        text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
        return any(word in text for word in ("deadlock", "could not serialize", "database is locked", "busy"))
    return False


def allocate_orders(
    engine: Engine,
    *,
    now: datetime | None = None,
    settings: Settings | None = None,
    actor: str | None = None,
    max_attempts: int = 6,
    after_plan: Callable[[int], None] | None = None,
) -> AllocationResult:
    """One allocation run over every candidate order (see module docstring); retried on conflicts.

    ``after_plan(attempt)`` is called between planning and reserving (tests use it to line two runs up).
    """
    settings = settings or get_settings()
    actor = actor or current_actor()
    with engine.begin() as conn:
        sync_warehouses(conn, settings.fulfilment)
    last: BaseException | None = None
    for attempt in range(1, max_attempts + 1):
        moment = now or datetime.now(UTC)
        try:
            with engine.begin() as conn:
                result = _allocate_once(conn, moment, settings, actor, attempt, after_plan)
            return result
        except Exception as exc:  # noqa: BLE001 - only conflicts are retried, the rest re-raised below
            if not _is_retryable(exc) or attempt == max_attempts:
                raise
            last = exc
            log.info("allocation attempt %s conflicted (%s); planning again", attempt, exc)
            time.sleep(0.05 * attempt + random.random() * 0.1)
    raise RuntimeError(f"allocation did not settle: {last}")  # pragma: no cover


def _allocate_once(
    conn: Connection,
    now: datetime,
    settings: Settings,
    actor: str,
    attempt: int,
    after_plan: Callable[[int], None] | None,
) -> AllocationResult:
    policy = settings.fulfilment
    # First statement writes: on SQLite this takes the write lock now, so every read below is current.
    run_id = conn.execute(
        insert(allocation_runs).values(started_at=now, actor=actor, status="running", attempts=attempt)
        .returning(allocation_runs.c.id)
    ).scalar_one()  # fmt: skip
    result = AllocationResult(run_id=run_id, attempts=attempt)
    calendar = DispatchCalendar(policy.calendar_fallback_weekdays)
    table = rate_table(policy)
    cand = load_candidates(conn)
    lines = product_lines(cand.lines, cand.items)
    order_frame = cand.orders[cand.orders["order_id"].isin(lines["order_id"])].copy()
    result.considered = len(order_frame)
    if order_frame.empty:
        _finish_run(conn, run_id, result, now)
        return result

    exceptions = precheck_exceptions(order_frame, lines, cand.items, served_provinces(table))
    chose_partial = set(cand.decisions.loc[cand.decisions["choice"] == "partial", "order_id"].tolist())
    order_frame["allow_partial"] = (
        order_frame["allow_partial_shipment"].fillna(True).astype(bool) | order_frame["order_id"].isin(chose_partial)
    )
    plannable = order_frame[~order_frame["order_id"].isin(exceptions.keys())]
    plan_lines = lines[lines["order_id"].isin(plannable["order_id"])]
    stock = stock_position(conn)
    plan = plan_allocation(
        plannable,
        plan_lines.rename(columns={"outstanding": "quantity_to_allocate"})[
            ["order_id", "order_line_id", "item_code", "quantity_to_allocate"]
        ].rename(columns={"quantity_to_allocate": "quantity"}),
        stock[["warehouse", "item_code", "available"]],
        warehouse_order(conn),
    )
    allocs = plan.allocations
    ships = plan_shipments(allocs, plannable, cand.lines, cand.items)
    dispatch = calendar.dispatch_day(now, policy.dispatch_cutoff)
    choice = choose_carriers(
        ships[["shipment_key", "province", "weight_kg", "volume_m3", "declared_value_fen", "cod_amount_fen", "promised_date"]],
        table,
        dispatch_day=dispatch,
        insurance_threshold_fen=int(policy.insurance_threshold_yuan * 100),
        insurance_provinces=policy.insurance_route_provinces,
        calendar=calendar,
    )
    failed = choice.choices["exception"].notna().to_numpy()
    if failed.any():
        for oid, why in zip(ships.loc[failed, "order_id"].tolist(), choice.choices.loc[failed, "exception"].tolist(), strict=True):
            exceptions.setdefault(oid, why)
        dropped = set(ships.loc[failed, "order_id"].tolist())
        keep_ships = ~ships["order_id"].isin(dropped).to_numpy()
        ships, choices = ships[keep_ships], choice.choices[keep_ships]
        options = choice.options[choice.options["shipment_key"].isin(ships["shipment_key"])]
        allocs = allocs[~allocs["order_id"].isin(dropped)]
        outcomes = plan.outcomes[~plan.outcomes["order_id"].isin(dropped)]
        short_lines = plan.short_lines[~plan.short_lines["order_id"].isin(dropped)]
    else:
        choices, options, outcomes, short_lines = choice.choices, choice.options, plan.outcomes, plan.short_lines
    if after_plan is not None:
        after_plan(attempt)

    # Reserve first: this is where two runs meet. All rows move or the attempt rolls back.
    if len(allocs):
        apply_movements(
            conn,
            pd.DataFrame(
                {
                    "warehouse": allocs["warehouse"].to_numpy(),
                    "item_code": allocs["item_code"].to_numpy(),
                    "kind": "reservation",
                    "reserved_delta": allocs["quantity"].to_numpy(dtype=float),
                    "order_id": allocs["order_id"].to_numpy(),
                    "reason": "allocated to order",
                    "reference": f"RUN-{run_id}",
                }
            ),
            actor=actor,
            now=now,
        )

    state_of = dict(zip(order_frame["order_id"].tolist(), order_frame["state"].tolist(), strict=True))
    info = order_frame.set_index("order_id")
    request_ids = _write_shipment_requests(conn, ships, choices, options, info, cand.shipment_counts, run_id, now, policy)
    if len(allocs):
        keys = shipment_keys_for(allocs, ships)
        key_to_request = dict(zip(ships["shipment_key"].tolist(), request_ids, strict=True))
        insert_rows(
            conn,
            allocations,
            allocs.assign(
                status="reserved",
                run_id=run_id,
                shipment_request_id=[key_to_request[k] for k in keys.tolist()],
                created_at=now,
                updated_at=now,
            ),
        )
    result.shipments_planned = len(ships)

    _update_backorders(conn, lines, allocs, short_lines, now)
    today = _today(now)
    transit = fastest_transit(table)
    new_production, new_purchase, ready = _raise_requests(
        conn, short_lines, plan.free_after, info, cand, lines, today, calendar, transit, policy, run_id, now, actor
    )
    result.production_requests, result.purchase_requests = new_production, new_purchase

    by_outcome = outcomes.groupby("outcome")["order_id"].apply(list).to_dict()
    got_stock = sorted(by_outcome.get("full", []) + by_outcome.get("partial", []))
    result.allocated, result.partial = len(got_stock), len(by_outcome.get("partial", []))
    short = sorted(by_outcome.get("short", []))
    result.backordered = len(short)
    ship_nos: dict[int, list[int]] = {}
    for oid, rid in zip(ships["order_id"].tolist(), request_ids, strict=True):
        ship_nos.setdefault(oid, []).append(rid)
    partial_set = set(by_outcome.get("partial", []))
    short_set = set(short)
    ready_of = dict(zip(ready.index.tolist(), ready["ready"].tolist(), strict=True)) if len(ready) else {}
    _transition(
        conn,
        [o for o in got_stock if state_of[o] in FULFIL_STATES],
        S.ALLOCATED,
        reason="stock allocated",
        actor=actor,
        details=lambda o: {"run": run_id, "partial": o in partial_set,
                           "shipment_requests": ship_nos.get(o, [])},
    )  # fmt: skip
    follow_ups = [o for o in got_stock if state_of[o] not in FULFIL_STATES]
    if follow_ups:
        record_events(
            conn,
            pd.DataFrame({"order_id": follow_ups, "kind": "fulfilment",
                          "reason": "backordered items allocated for a follow-up shipment",
                          "details": [{"run": run_id, "shipment_requests": ship_nos.get(o, [])} for o in follow_ups]}),
            actor=actor,
        )  # fmt: skip
    _transition(
        conn, [o for o in short if state_of[o] == S.APPROVED], S.BACKORDERED,
        reason="short of stock: backordered", actor=actor, details=lambda o: {"run": run_id},
    )  # fmt: skip
    waiting = {o: kinds for o, kinds in zip(ready.index.tolist(), ready["kinds"].tolist(), strict=True)
               if o in short_set} if len(ready) else {}  # fmt: skip
    for target, kind in ((S.IN_PRODUCTION, "production"), (S.IN_PROCUREMENT, "purchase")):
        movers = [
            o for o, kinds in waiting.items()
            if state_of[o] in (S.APPROVED, S.BACKORDERED)
            and (kind in kinds if target == S.IN_PRODUCTION else ("purchase" in kinds and "production" not in kinds))
        ]  # fmt: skip
        _transition(
            conn, sorted(movers), target,
            reason=f"short items covered by a {'production' if kind == 'production' else 'purchase'} request",
            actor=actor, details=lambda o: {"ready_date": str(ready_of.get(o))},
        )  # fmt: skip
    result.decisions_offered = _offer_decisions(conn, short, ready, info, outcomes, cand, lines, transit, calendar, policy, settings, now)
    _carrier_events(conn, ships, choices, request_ids, actor, now)
    result.exceptions = len(exceptions)
    result.exception_rows = _exception_events(conn, exceptions, info, actor)
    _finish_run(conn, run_id, result, now)
    return result


def _transition(conn, order_ids, to_state, *, reason, actor, details) -> None:
    if not order_ids:
        return
    outcome = transition_orders(
        conn, order_ids, to_state, reason=reason, actor=actor, details=[details(o) for o in order_ids],
        skip_illegal=True,
    )  # fmt: skip
    if outcome.skipped:
        sample = list(outcome.skipped.items())[:3]
        raise AllocationConflict(f"{len(outcome.skipped)} order(s) changed meanwhile, e.g. {sample}")


def _finish_run(conn: Connection, run_id: int, result: AllocationResult, now: datetime) -> None:
    conn.execute(
        update(allocation_runs).where(allocation_runs.c.id == run_id)
        .values(status="done", finished_at=utc_now(), summary=_json(result.as_dict()))
    )  # fmt: skip


def _write_shipment_requests(conn, ships, choices, options, info, counts, run_id, now, policy) -> list[int]:
    if ships.empty:
        return []
    order_ids = ships["order_id"].tolist()
    seq: dict[int, int] = {}
    numbers = []
    for oid in order_ids:
        seq[oid] = seq.get(oid, counts.get(oid, 0)) + 1
        numbers.append(f"{info.loc[oid, 'order_no']}-{seq[oid]}")
    threshold = int(policy.insurance_threshold_yuan * 100)
    declared = ships["declared_value_fen"].tolist()
    provinces = choices["province"].tolist()
    insured = choices["insured"].tolist()
    insurance_reason = [
        None if not ins else (
            f"declared value ¥{d / 100:.2f} ≥ ¥{threshold / 100:.2f}" if d >= threshold
            else f"route to {p} is insured by policy"
        )
        for ins, d, p in zip(insured, declared, provinces, strict=True)
    ]  # fmt: skip
    alternatives = options_as_records(options) if len(options) < 200_000 else {}
    frame = pd.DataFrame(
        {
            "shipment_no": numbers,
            "idempotency_key": [f"yidi-shipment-{n}" for n in numbers],
            "order_id": order_ids,
            "warehouse": ships["warehouse"].tolist(),
            "carrier": choices["carrier"].astype(object).tolist(),
            "service": choices["service"].tolist(),
            "weight_kg": ships["weight_kg"].round(3).tolist(),
            "chargeable_weight_kg": choices["chargeable_weight_kg"].tolist(),
            "volume_m3": ships["volume_m3"].round(6).tolist(),
            "declared_value_fen": declared,
            "insured": insured,
            "insurance_fee_fen": choices["insurance_fee_fen"].tolist(),
            "cod_amount_fen": ships["cod_amount_fen"].tolist(),
            "cod_fee_fen": choices["cod_fee_fen"].tolist(),
            "freight_fen": choices["freight_fen"].tolist(),
            "expected_delivery_date": pd.to_datetime(choices["expected_delivery_date"]).dt.date.tolist(),
            "eta_estimated": choices["eta_estimated"].tolist(),
            "choice_reason": choices["reason"].tolist(),
            "alternatives": [_json(alternatives.get(k, [])) for k in choices["shipment_key"].tolist()],
            "insurance_reason": insurance_reason,
            "status": "pending",
            "run_id": run_id,
            "created_at": now,
            "updated_at": now,
        }
    )
    ids = upsert_returning_ids(conn, shipment_requests, frame, ["shipment_no"])
    return ids.set_index("shipment_no")["id"].reindex(numbers).astype(int).tolist()


def _update_backorders(conn, lines, allocs, short_lines, now) -> None:
    """Short lines open (or update) a backorder; lines now covered close theirs."""
    if len(short_lines):
        frame = pd.DataFrame(
            {
                "order_id": short_lines["order_id"].to_numpy(),
                "order_line_id": short_lines["order_line_id"].to_numpy(),
                "item_code": short_lines["item_code"].to_numpy(),
                "quantity": short_lines["short_qty"].to_numpy(dtype=float),
                "status": "open",
                "updated_at": now,
                "created_at": now,
            }
        )
        insert_rows(conn, backorders, frame, on_conflict=["order_line_id"], update_columns=["quantity", "status", "updated_at"])
    short_ids = set(short_lines["order_line_id"].tolist())
    filled = [int(i) for i in allocs["order_line_id"].unique().tolist() if i not in short_ids]
    stmt = (
        update(backorders)
        .where(backorders.c.order_line_id.in_(bindparam("ids", expanding=True)), backorders.c.status == "open")
        .values(status="filled", filled_at=now, updated_at=now, quantity=0.0)
    )
    for chunk in _chunks(filled):
        conn.execute(stmt, {"ids": list(chunk)})


def _raise_requests(conn, short_lines, free_after, info, cand, lines, today, calendar, transit, policy, run_id, now, actor):
    """Production (make-to-order) and purchase (bought-in, and stocked items to replenish) requests for short
    quantities not yet covered by an open request. Returns (#production, #purchase, ready) where ``ready`` is
    indexed by order id: the latest ready date of its short lines (NaT when some line has no source) and the
    request kinds."""
    empty_ready = pd.DataFrame(columns=["ready", "kinds"])
    if short_lines.empty:
        return 0, 0, empty_ready
    items = cand.items.set_index("item_code")
    requested = cand.requested.groupby("order_line_id").agg(qty=("qty", "sum"), ready=("ready", "max"))
    requested["kinds"] = pd.Series(_kinds_by(cand.requested["order_line_id"], cand.requested["kind"]))
    sl = short_lines.copy()
    sl["already"] = requested["qty"].reindex(sl["order_line_id"]).fillna(0.0).to_numpy()
    # Stock still free after the plan (left by orders that may not ship partially) covers short lines first,
    # in ranking order: only what neither stock nor an open request covers is requested.
    free = dict(free_after)
    cover = []
    for code, need in zip(sl["item_code"].tolist(), (sl["short_qty"] - sl["already"]).clip(lower=0).tolist(), strict=True):
        take = min(free.get(code, 0.0), need)
        free[code] = free.get(code, 0.0) - take
        cover.append(take)
    sl["from_stock"] = cover
    sl["to_request"] = (sl["short_qty"] - sl["already"] - sl["from_stock"]).clip(lower=0)
    sl["sourcing"] = items["sourcing"].reindex(sl["item_code"]).fillna("stock").to_numpy(dtype=object)
    sl["lead"] = items["lead_time_days"].reindex(sl["item_code"]).fillna(0).astype(int).to_numpy()
    sl["preferred_supplier"] = items["preferred_supplier"].reindex(sl["item_code"]).to_numpy(dtype=object)
    sl["promised_date"] = info["promised_date"].reindex(sl["order_id"]).to_numpy(dtype=object)
    sl["province"] = info["ship_province"].reindex(sl["order_id"]).map(
        lambda p: province_short_name(p) if isinstance(p, str) else None
    ).to_numpy(dtype=object)
    warehouse = policy.warehouses[0].code if policy.warehouses else None
    ready_rows: list[tuple[int, date | None, str]] = []
    for oid, _line_id, ready_date, kinds in zip(
        sl["order_id"].tolist(), sl["order_line_id"].tolist(),
        requested["ready"].reindex(sl["order_line_id"]).tolist(),
        requested["kinds"].reindex(sl["order_line_id"]).tolist(), strict=True,
    ):  # fmt: skip
        if isinstance(kinds, set):
            for kind in kinds:
                ready_rows.append((oid, ready_date, kind))

    in_stock = sl[(sl["from_stock"] > QTY_EPSILON) & (sl["to_request"] <= QTY_EPSILON)]
    ready_rows.extend(zip(in_stock["order_id"].tolist(), [today] * len(in_stock), ["stock"] * len(in_stock), strict=True))
    need = sl[sl["to_request"] > QTY_EPSILON]
    made = need[need["sourcing"] == "make_to_order"]
    n_production = 0
    if len(made):
        planned = [calendar.add(today, int(d))[0] for d in made["lead"].tolist()]
        available = [calendar.add(p, policy.production_qc_working_days)[0] for p in planned]
        frame = pd.DataFrame(
            {
                "request_no": [f"MO-{run_id:06d}-{i:05d}" for i in range(1, len(made) + 1)],
                "order_id": made["order_id"].to_numpy(),
                "order_line_id": made["order_line_id"].to_numpy(),
                "item_code": made["item_code"].to_numpy(),
                "warehouse": warehouse,
                "quantity": made["to_request"].to_numpy(dtype=float),
                "planned_date": planned,
                "available_date": available,
                "status": "planned",
                "created_at": now,
                "updated_at": now,
            }
        )
        insert_rows(conn, production_requests, frame)
        n_production = len(frame)
        ready_rows.extend(zip(made["order_id"].tolist(), available, ["production"] * len(made), strict=True))

    bought = need[need["sourcing"] != "make_to_order"]
    n_purchase = 0
    no_source: list[int] = []
    if len(bought):
        prices = _supplier_prices(conn, bought["item_code"].unique().tolist(), today)
        if len(prices):
            arrival_by_lead = {
                lead: calendar.add(calendar.add(today, lead)[0], policy.receiving_working_days)[0]
                for lead in prices["lead_time_days"].unique().tolist()
            }
            prices["arrival_date"] = prices["lead_time_days"].map(arrival_by_lead)
        else:
            prices = prices.assign(arrival_date=pd.Series(dtype=object))
        latest = []
        for promised, province in zip(bought["promised_date"].tolist(), bought["province"].tolist(), strict=True):
            if _is_missing(promised) or province not in transit:
                latest.append(None)
            else:
                latest.append(calendar.add(promised, -transit[province])[0])
        needs = pd.DataFrame(
            {
                "need_id": np.arange(len(bought)),
                "item_code": bought["item_code"].to_numpy(),
                "quantity": bought["to_request"].to_numpy(dtype=float),
                "latest_arrival": latest,
                "preferred_supplier": bought["preferred_supplier"].to_numpy(dtype=object),
            }
        )
        chosen = choose_suppliers(needs, prices, premium_pct=policy.preferred_supplier_premium_pct)
        ok = chosen["supplier_code"].notna().to_numpy()
        no_source = bought.loc[~ok, "order_id"].tolist()
        if ok.any():
            picked = chosen[ok]
            rows = bought.iloc[picked["need_id"].astype(int).to_numpy()]
            po_of = {s: f"PO-{today:%Y%m%d}-{run_id:06d}-{s}"[:40] for s in picked["supplier_code"].unique().tolist()}
            frame = pd.DataFrame(
                {
                    "request_no": [f"PR-{run_id:06d}-{i:05d}" for i in range(1, len(picked) + 1)],
                    "po_no": picked["supplier_code"].map(po_of).to_numpy(),
                    "order_id": rows["order_id"].to_numpy(),
                    "order_line_id": rows["order_line_id"].to_numpy(),
                    "item_code": rows["item_code"].to_numpy(),
                    "warehouse": warehouse,
                    "quantity": picked["order_qty"].to_numpy(dtype=float),
                    "supplier_code": picked["supplier_code"].to_numpy(),
                    "unit_price_fen": picked["unit_price_fen"].astype(np.int64).to_numpy(),
                    "freight_fen": picked["freight_fen"].astype(np.int64).to_numpy(),
                    "landed_cost_fen": picked["landed_cost_fen"].astype(np.int64).to_numpy(),
                    "required_date": [d if d is not None else None for d in needs["latest_arrival"].iloc[picked["need_id"].astype(int)].tolist()],
                    "expected_date": picked["expected_date"].tolist(),
                    "status": "draft",
                    "choice_reason": picked["reason"].tolist(),
                    "alternatives": [_json(a) for a in picked["alternatives"].tolist()],
                    "created_at": now,
                    "updated_at": now,
                }
            )
            insert_rows(conn, purchase_requests, frame)
            n_purchase = len(frame)
            ready_rows.extend(zip(rows["order_id"].tolist(), picked["expected_date"].tolist(), ["purchase"] * len(rows), strict=True))
        reasons = chosen.loc[~ok, "reason"].tolist()
        if no_source:
            record_events(
                conn,
                pd.DataFrame({"order_id": no_source, "kind": "fulfilment",
                              "reason": [f"cannot replenish {c}: {r}" for c, r in zip(bought.loc[~ok, "item_code"].tolist(), reasons, strict=True)]}),
                actor=actor,
            )  # fmt: skip
    ready = pd.DataFrame(ready_rows, columns=["order_id", "ready", "kind"])
    if ready.empty:
        return n_production, n_purchase, empty_ready
    ready["ready"] = pd.to_datetime(ready["ready"], errors="coerce")
    grouped = ready.groupby("order_id").agg(ready=("ready", "max"))
    grouped["kinds"] = pd.Series(_kinds_by(ready["order_id"], ready["kind"]))
    # A short line without any source (no price list) makes the order's ready date unknown.
    lacking = set(no_source)
    grouped.loc[grouped.index.isin(lacking), "ready"] = pd.NaT
    grouped["ready"] = grouped["ready"].dt.date
    return n_production, n_purchase, grouped


def _kinds_by(keys: pd.Series, kinds: pd.Series) -> dict:
    """key -> set of kinds (a dict pass: a groupby with a Python lambda costs a Series per group)."""
    result: dict = {}
    for key, kind in zip(keys.tolist(), kinds.tolist(), strict=True):
        result.setdefault(key, set()).add(kind)
    return result


def _supplier_prices(conn: Connection, item_codes: list[str], today: date) -> pd.DataFrame:
    sp, sup = supplier_prices.c, suppliers.c
    frames = []
    for chunk in _chunks(item_codes):
        frames.append(
            read_frame(
                conn,
                select(sp.supplier_code, sp.item_code, sp.unit_price_fen, sp.freight_per_order_fen, sp.lead_time_days,
                       sp.min_order_qty)
                .join(suppliers, suppliers.c.code == sp.supplier_code)
                .where(sp.item_code.in_(list(chunk)), sup.active,
                       or_(sp.valid_from.is_(None), sp.valid_from <= today),
                       or_(sp.valid_to.is_(None), sp.valid_to >= today)),
            )  # fmt: skip
        )
    if not frames:
        return pd.DataFrame(columns=["supplier_code", "item_code", "unit_price_fen", "freight_per_order_fen",
                                     "lead_time_days", "min_order_qty"])  # fmt: skip
    return pd.concat(frames, ignore_index=True)


DECISION_OPTIONS = {
    "wait": "等待全部到货后一次发货",
    "partial": "先发有货部分，其余到货后再发",
    "cancel": "取消订单（已付款项按原路退回）",
}


def _offer_decisions(conn, short, ready, info, outcomes, cand, lines, transit, calendar, policy, settings, now) -> int:
    """Orders that cannot be delivered by their promised date get a notice with options (once per order)."""
    if not short:
        return 0
    decided = set(cand.decisions["order_id"].tolist())
    could = dict(zip(outcomes["order_id"].tolist(), outcomes["could_ship_partially"].tolist(), strict=True))
    promised_of = dict(zip(info.index.tolist(), info["promised_date"].tolist(), strict=True))
    province_of = dict(zip(info.index.tolist(), info["ship_province"].tolist(), strict=True))
    ready_of = dict(zip(ready.index.tolist(), ready["ready"].tolist(), strict=True)) if len(ready) else {}
    rows, notices = [], []
    reply_due = datetime.combine(
        calendar.add(_today(now), policy.decision_reply_working_days)[0], datetime.min.time(), tzinfo=BUSINESS_TZ
    ).replace(hour=18)
    names = dict(zip(cand.items["item_code"].tolist(), cand.items["name"].tolist(), strict=True))
    short_items = lines[lines["order_id"].isin(short)].groupby("order_id")["item_code"].apply(list).to_dict()
    for oid in short:
        promised = promised_of.get(oid)
        if oid in decided or _is_missing(promised):
            continue
        ready_date = ready_of.get(oid)
        province = province_short_name(province_of.get(oid))
        earliest = None
        if not _is_missing(ready_date) and province in transit:
            earliest = calendar.add(ready_date, transit[province])[0]
        if earliest is not None and earliest <= promised:
            continue
        partial_possible = bool(could.get(oid, False))
        options = [{"choice": c, "meaning": m} for c, m in DECISION_OPTIONS.items() if c != "partial" or partial_possible]
        rows.append({"order_id": oid, "offered_at": now, "reply_due_at": reply_due.astimezone(UTC),
                     "promised_date": promised, "earliest_date": earliest, "partial_possible": partial_possible,
                     "options": _json(options)})  # fmt: skip
        notices.append(
            {
                "order_id": oid,
                "template": "fulfilment_delay_options",
                "dedupe": f"fulfil-options:{oid}",
                "context": {
                    "promised_date": str(promised),
                    "earliest_date": str(earliest) if earliest else "待定（正在确认货源）",
                    "items": "、".join(str(names.get(c, c)) for c in short_items.get(oid, [])),
                    "options": "；".join(f"回复“{o['choice']}”：{o['meaning']}" for o in options),
                    "reply_due": reply_due.strftime("%Y-%m-%d %H:%M"),
                },
            }
        )
    if not rows:
        return 0
    insert_rows(conn, customer_decisions, pd.DataFrame(rows))
    record_events(
        conn,
        pd.DataFrame({"order_id": [r["order_id"] for r in rows], "kind": "fulfilment",
                      "reason": "cannot meet the promised date: customer asked to choose wait / partial / cancel",
                      "details": [{"promised_date": str(r["promised_date"]), "earliest_date": str(r["earliest_date"])}
                                  for r in rows]}),
    )  # fmt: skip
    enqueue(conn, notice_rows(conn, notices, policy, settings))
    return len(rows)


def notice_rows(conn: Connection, rows: list[dict], policy: FulfilmentPolicy, settings: Settings) -> pd.DataFrame:
    """Outbox rows (one per medium with a contact) for ``rows`` of order_id, template, dedupe, context."""
    columns = ["order_id", "medium", "recipient", "template", "context", "dedupe_key"]
    if not rows:
        return pd.DataFrame(columns=columns)
    ids = sorted({int(r["order_id"]) for r in rows})
    frames = [
        read_frame(conn, select(orders.c.id.label("order_id"), orders.c.order_no, orders.c.customer_name,
                                orders.c.customer_phone, orders.c.customer_email).where(orders.c.id.in_(list(chunk))))
        for chunk in _chunks(ids)
    ]  # fmt: skip
    contacts = {int(r["order_id"]): r for r in frame_records(pd.concat(frames, ignore_index=True))}
    out = []
    for row in rows:
        contact = contacts.get(int(row["order_id"]))
        if contact is None:
            continue
        context = {"order_no": contact["order_no"], "customer_name": contact["customer_name"] or "客户",
                   "company_name": settings.general.company_name, **row["context"]}  # fmt: skip
        for medium in policy.notice_media:
            recipient = contact["customer_phone"] if medium == "sms" else contact["customer_email"]
            if isinstance(recipient, str) and recipient.strip():
                out.append({"order_id": int(row["order_id"]), "medium": medium, "recipient": recipient.strip(),
                            "template": row["template"], "context": context,
                            "dedupe_key": f"{row['dedupe']}:{medium}"})  # fmt: skip
    return pd.DataFrame(out, columns=columns)


def _carrier_events(conn, ships, choices, request_ids, actor, now) -> None:
    if ships.empty:
        return
    record_events(
        conn,
        pd.DataFrame(
            {
                "order_id": ships["order_id"].to_numpy(),
                "kind": "fulfilment",
                "reason": ("carrier chosen: " + choices["carrier"].astype(str) + " — " + choices["reason"].astype(str)).to_numpy(),
                "details": [
                    {"shipment_request": rid, "warehouse": w, "carrier": c, "eta": str(pd.Timestamp(e).date()),
                     "insured": bool(i)}
                    for rid, w, c, e, i in zip(request_ids, ships["warehouse"].tolist(), choices["carrier"].astype(object).tolist(),
                                               choices["expected_delivery_date"].tolist(), choices["insured"].tolist(), strict=True)
                ],
                "occurred_at": now,
            }
        ),
        actor=actor,
    )  # fmt: skip


def _exception_events(conn, exceptions: dict[int, str], info: pd.DataFrame, actor: str) -> list[dict]:
    """One 'fulfilment' event per order and distinct reason (re-runs do not repeat it)."""
    if not exceptions:
        return []
    oe = order_events.c
    seen = set()
    ids = sorted(exceptions)
    for chunk in _chunks(ids):
        rows = conn.execute(
            select(oe.order_id, oe.reason).where(oe.order_id.in_(list(chunk)), oe.kind == "fulfilment",
                                                 oe.reason.like("exception:%"))
        )  # fmt: skip
        seen.update((r.order_id, r.reason) for r in rows)
    fresh = [(o, f"exception: {why}") for o, why in exceptions.items() if (o, f"exception: {why}") not in seen]
    if fresh:
        record_events(
            conn,
            pd.DataFrame({"order_id": [o for o, _ in fresh], "kind": "fulfilment", "reason": [r for _, r in fresh],
                          "details": [{"state_kept": str(info.loc[o, "state"]) if o in info.index else None} for o, _ in fresh]}),
            actor=actor,
        )  # fmt: skip
    return [{"order_id": o, "order_no": info.loc[o, "order_no"] if o in info.index else None, "exception": why}
            for o, why in exceptions.items()]  # fmt: skip


# --- waybills: shipments created exactly once through the carrier connector --------------------------------


@dataclass
class WaybillResult:
    created: int = 0
    replayed: int = 0  # the carrier had it already (a lost answer, or another run): same waybill, no duplicate
    failed: int = 0  # transient: retried next run with the same key
    rejected: int = 0  # the carrier refused the request: a person looks
    documents: list[str] = field(default_factory=list)
    pick_lists: list[str] = field(default_factory=list)
    shipments: list[dict] = field(default_factory=list)  # created this run (for artifacts)
    problems: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("shipments", "problems", "documents")} | {
            "documents": len(self.documents)
        }


def pending_shipment_requests(conn: Connection, limit: int | None = None) -> pd.DataFrame:
    sr, o, w = shipment_requests.c, orders.c, warehouses.c
    stmt = (
        select(
            sr.id, sr.shipment_no, sr.idempotency_key, sr.order_id, sr.warehouse, sr.carrier, sr.service,
            sr.weight_kg, sr.chargeable_weight_kg, sr.volume_m3, sr.declared_value_fen, sr.insured,
            sr.insurance_fee_fen, sr.cod_amount_fen, sr.freight_fen, sr.expected_delivery_date, sr.choice_reason,
            sr.attempts, sr.last_error,
            o.order_no, o.customer_name, o.customer_phone, o.ship_province, o.ship_city, o.ship_district,
            o.ship_detail, o.ship_postcode, o.buyer_note,
            w.name.label("wh_name"), w.province.label("wh_province"), w.city.label("wh_city"),
            w.district.label("wh_district"), w.address.label("wh_address"), w.contact.label("wh_contact"),
            w.phone.label("wh_phone"),
        )
        .join(orders, o.id == sr.order_id)
        .outerjoin(warehouses, w.code == sr.warehouse)
        .where(sr.status == "pending")
        .order_by(sr.id)
    )  # fmt: skip
    if limit:
        stmt = stmt.limit(limit)
    return read_frame(conn, stmt)


def shipment_goods(conn: Connection, request_ids: Sequence[int]) -> pd.DataFrame:
    a, ol, ci = allocations.c, order_lines.c, catalog_items.c
    frames = [
        read_frame(
            conn,
            select(a.id.label("allocation_id"), a.shipment_request_id, a.order_id, a.warehouse, a.item_code, a.quantity,
                   ol.item_name, ol.spec, ci.unit, ci.weight_kg, ci.name.label("catalog_name"))
            .join(order_lines, ol.id == a.order_line_id)
            .outerjoin(catalog_items, ci.code == a.item_code)
            .where(a.shipment_request_id.in_(list(chunk)), a.status == "reserved")
            .order_by(a.id),
        )  # fmt: skip
        for chunk in _chunks([int(i) for i in request_ids])
    ]
    if not frames:
        return pd.DataFrame(columns=["allocation_id", "shipment_request_id", "item_code", "quantity"])
    goods = pd.concat(frames, ignore_index=True)
    goods["name"] = goods["item_name"].fillna(goods["catalog_name"]).fillna(goods["item_code"])
    return goods


def waybill_request_body(row: dict, goods: list[dict]) -> dict:
    """The carrier gateway's JSON (``connectors/carrier_shipping.py``): full contact data, yuan strings."""
    def yuan(fen) -> str:
        return f"{int(fen or 0) / 100:.2f}"

    # Missing values read back from the store as NaN (pandas 3): make them None so `or ""` defaults apply.
    row = {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in row.items()}
    return {
        "carrier": row["carrier"],
        "service": row["service"],
        "order_ref": row["shipment_no"],
        "sender": {"name": row["wh_contact"] or row["wh_name"] or "", "phone": row["wh_phone"] or "",
                   "province": row["wh_province"] or "", "city": row["wh_city"] or "",
                   "district": row["wh_district"] or "", "address": row["wh_address"] or ""},
        "recipient": {"name": row["customer_name"] or "", "phone": row["customer_phone"] or "",
                      "province": row["ship_province"] or "", "city": row["ship_city"] or "",
                      "district": row["ship_district"] or "", "address": row["ship_detail"] or "",
                      "postcode": row["ship_postcode"] or ""},
        "parcel": {"weight_kg": round(float(row["weight_kg"] or 0), 3), "volume_m3": round(float(row["volume_m3"] or 0), 6),
                   "pieces": 1},
        "goods": [{"name": g["name"], "quantity": g["quantity"], "unit": g.get("unit") or "件"} for g in goods],
        "declared_value": yuan(row["declared_value_fen"]),
        "insured": bool(row["insured"]),
        "cod_amount": yuan(row["cod_amount_fen"]),
        "remark": (row.get("buyer_note") or "")[:100],
    }  # fmt: skip


def create_waybills(
    engine: Engine,
    client,
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
    actor: str | None = None,
    limit: int | None = None,
    chunk_size: int = 200,
    write_documents: bool = True,
) -> WaybillResult:
    """Ask the carrier for a waybill for every pending shipment request, and record each answer exactly once.

    Each call carries the request's idempotency key: a retry after a lost answer, a crash between the call and
    the commit, or two runs at once all get the same waybill back, and only the first recording (``status =
    'pending'`` still) writes the shipment, issues the stock and moves the order to shipped.
    """
    from connectors.carrier_shipping import CarrierRejected, CarrierUnavailable

    settings = settings or get_settings()
    actor = actor or current_actor()
    result = WaybillResult()
    with engine.connect() as conn:
        pending = pending_shipment_requests(conn, limit)
        goods = shipment_goods(conn, pending["id"].tolist()) if len(pending) else pd.DataFrame()
    if pending.empty:
        return result
    goods_by_request = {k: frame_records(g) for k, g in goods.groupby("shipment_request_id")} if len(goods) else {}
    created_rows: list[dict] = []

    def call(row: dict):
        body = waybill_request_body(row, goods_by_request.get(row["id"], []))
        try:
            return row, client.create_waybill(body, row["idempotency_key"]), None, False
        except CarrierRejected as exc:
            return row, None, f"rejected by carrier: {exc}", True
        except CarrierUnavailable as exc:
            return row, None, f"carrier unavailable: {exc}", False

    workers = max(1, settings.fulfilment.carrier_api_concurrency)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="waybills") as pool:
        chunks = [list(c) for c in _chunks(frame_records(pending), chunk_size)]
        for chunk in chunks:
            outcomes = list(pool.map(call, chunk))
            answers = [(row, waybill) for row, waybill, _, _ in outcomes if waybill is not None]
            failures = [(row, error, rejected, client.attempts) for row, waybill, error, rejected in outcomes
                        if waybill is None]  # fmt: skip
            created_rows.extend(_record_chunk(engine, answers, failures, goods_by_request, settings, now, actor, result))
    # For the UI and logs: personal data masked (documents for the warehouse keep it whole).
    result.shipments = [
        {k: r[k] for k in ("shipment_no", "order_no", "carrier", "waybill_no", "expected_delivery_date", "warehouse")}
        | {"recipient": mask_name(r["customer_name"]), "phone": mask_phone(r["customer_phone"]),
           "destination": f"{r['ship_province'] or ''}{r['ship_city'] or ''}"}
        for r in created_rows
    ]  # fmt: skip
    if write_documents and created_rows:
        docs, picks = _write_documents(engine, created_rows, goods_by_request, settings, now or utc_now())
        result.documents, result.pick_lists = docs, picks
    return result


def _record_chunk(engine, answers, failures, goods_by_request, settings, now, actor, result) -> list[dict]:
    """One transaction per chunk of answers: shipments, stock issues, states, notices (or the failures)."""
    with engine.begin() as conn:
        recorded = _record_waybills(conn, answers, goods_by_request, settings, now or utc_now(), actor)
        _record_failures(conn, failures, actor)
    result.created += len(recorded)
    result.replayed += sum(1 for _, w in answers if w.replayed)
    result.failed += sum(1 for f in failures if not f[2])
    result.rejected += sum(1 for f in failures if f[2])
    result.problems.extend({"shipment_no": r["shipment_no"], "order_no": r["order_no"], "error": e} for r, e, _, _ in failures)
    return recorded


def _record_waybills(conn, answers, goods_by_request, settings, now, actor) -> list[dict]:
    sr = shipment_requests.c
    claim = (
        update(shipment_requests)
        .where(sr.id == bindparam("rid"), sr.status == "pending")
        .values(status="created", waybill_no=bindparam("wb"), attempts=sr.attempts + bindparam("n"),
                last_error=None, updated_at=now)
    )  # fmt: skip
    claimed: list[dict] = []
    for row, waybill in answers:
        if conn.execute(claim, {"rid": row["id"], "wb": waybill.waybill_no, "n": waybill.attempts}).rowcount == 1:
            claimed.append(row | {"waybill_no": waybill.waybill_no, "sort_code": waybill.sort_code,
                                  "replayed": waybill.replayed, "attempts_used": waybill.attempts})  # fmt: skip
    if not claimed:
        return []
    frame = pd.DataFrame(
        {
            "shipment_no": [r["shipment_no"] for r in claimed],
            "order_id": [r["order_id"] for r in claimed],
            "warehouse": [r["warehouse"] for r in claimed],
            "carrier": [r["carrier"] for r in claimed],
            "service": [r["service"] for r in claimed],
            "waybill_no": [r["waybill_no"] for r in claimed],
            "idempotency_key": [r["idempotency_key"] for r in claimed],
            "status": "info_received",
            "weight_kg": [r["weight_kg"] for r in claimed],
            "chargeable_weight_kg": [r["chargeable_weight_kg"] for r in claimed],
            "volume_m3": [r["volume_m3"] for r in claimed],
            "declared_value_fen": [r["declared_value_fen"] for r in claimed],
            "insured": [bool(r["insured"]) for r in claimed],
            "insurance_fee_fen": [r["insurance_fee_fen"] for r in claimed],
            "cod_amount_fen": [r["cod_amount_fen"] for r in claimed],
            "freight_fen": [r["freight_fen"] for r in claimed],
            "expected_delivery_date": [r["expected_delivery_date"] for r in claimed],
            "created_at": now,
            "shipped_at": now,
            "updated_at": now,
        }
    )
    ids = upsert_returning_ids(conn, shipments, frame, ["shipment_no"]).set_index("shipment_no")["id"]
    conn.execute(
        update(shipment_requests).where(sr.id == bindparam("rid")).values(shipment_id=bindparam("sid")),
        [{"rid": r["id"], "sid": int(ids[r["shipment_no"]])} for r in claimed],
    )
    # Issue the reserved stock, batch by batch (first expiry first out).
    request_ids = [r["id"] for r in claimed]
    goods = pd.DataFrame([g for rid in request_ids for g in goods_by_request.get(rid, [])])
    if len(goods):
        plan = fefo_issue_plan(
            conn, goods.rename(columns={"allocation_id": "pick_id"})[["pick_id", "warehouse", "item_code", "quantity"]]
        )
        order_of = dict(zip(goods["allocation_id"].tolist(), goods["order_id"].tolist(), strict=True))
        apply_movements(
            conn,
            plan.assign(
                kind="issue",
                on_hand_delta=-plan["quantity"],
                reserved_delta=-plan["quantity"],
                allocation_id=plan["pick_id"],
                order_id=plan["pick_id"].map(order_of),
                reason="shipped",
                reference=plan["pick_id"].map(dict(zip(goods["allocation_id"].tolist(),
                                                       goods["shipment_request_id"].tolist(), strict=True))).map(
                    {r["id"]: r["shipment_no"] for r in claimed}),
            ).drop(columns=["pick_id", "quantity"]),
            actor=actor,
            now=now,
        )  # fmt: skip
        batches = plan.groupby("pick_id")["batch_no"].apply(lambda b: ",".join(x for x in b if isinstance(x, str)))
        for rid in request_ids:
            for g in goods_by_request.get(rid, []):
                g["batch_no"] = batches.get(g["allocation_id"], "") or None
        a = allocations.c
        for chunk in _chunks(request_ids):
            conn.execute(
                update(allocations).where(a.shipment_request_id.in_(list(chunk)), a.status == "reserved")
                .values(status="shipped", updated_at=now)
            )  # fmt: skip
    carrier_names = {code: card.name for code, card in settings.fulfilment.rate_cards.items()}
    details = [
        {"shipment_no": r["shipment_no"], "carrier": r["carrier"], "waybill_no": r["waybill_no"],
         "expected_delivery_date": str(r["expected_delivery_date"])}
        for r in claimed
    ]  # fmt: skip
    first_per_order: dict[int, dict] = {}
    for r, d in zip(claimed, details, strict=True):
        first_per_order.setdefault(r["order_id"], d)
    transition_orders(
        conn, sorted(first_per_order), S.SHIPPED, reason="handed to the carrier with a waybill",
        actor=actor, details=[first_per_order[o] for o in sorted(first_per_order)], skip_illegal=True,
    )  # fmt: skip
    record_events(
        conn,
        pd.DataFrame({"order_id": [r["order_id"] for r in claimed], "kind": "fulfilment",
                      "reason": [f"waybill {r['waybill_no']} issued by {r['carrier']} for shipment {r['shipment_no']}"
                                 + (" (answer had been lost: same waybill returned)" if r["replayed"] else "")
                                 for r in claimed],
                      "details": details, "occurred_at": now}),
        actor=actor,
    )  # fmt: skip
    open_backorder = _orders_with_open_backorders(conn, list(first_per_order))
    notices = [
        {
            "order_id": r["order_id"],
            "template": "fulfilment_shipped",
            "dedupe": f"fulfil-shipped:{r['shipment_no']}",
            "context": {
                "carrier_name": carrier_names.get(r["carrier"], r["carrier"]),
                "waybill_no": r["waybill_no"],
                "expected_delivery_date": str(r["expected_delivery_date"]),
                "items": "、".join(f"{g['name']}×{g['quantity']:g}" for g in goods_by_request.get(r["id"], [])),
                "remainder_note": "其余商品到货后将另行发出。" if r["order_id"] in open_backorder else "",
            },
        }
        for r in claimed
    ]
    enqueue(conn, notice_rows(conn, notices, settings.fulfilment, settings))
    return claimed


def _orders_with_open_backorders(conn: Connection, order_ids: list[int]) -> set[int]:
    found: set[int] = set()
    for chunk in _chunks(sorted(order_ids)):
        rows = conn.execute(
            select(backorders.c.order_id).where(backorders.c.order_id.in_(list(chunk)), backorders.c.status == "open")
        )
        found.update(r.order_id for r in rows)
    return found


def _record_failures(conn, failures, actor) -> None:
    if not failures:
        return
    sr = shipment_requests.c
    conn.execute(
        update(shipment_requests)
        .where(sr.id == bindparam("rid"), sr.status == "pending")
        .values(attempts=sr.attempts + bindparam("n"), last_error=bindparam("err"), status=bindparam("st"),
                updated_at=utc_now()),
        [{"rid": r["id"], "n": n, "err": e[:2000], "st": "rejected" if rejected else "pending"}
         for r, e, rejected, n in failures],
    )  # fmt: skip
    first_time = [(r, e) for r, e, rejected, _ in failures if rejected or not r["last_error"]]
    if first_time:
        record_events(
            conn,
            pd.DataFrame({"order_id": [r["order_id"] for r, _ in first_time], "kind": "fulfilment",
                          "reason": [f"waybill for {r['shipment_no']} not created yet: {e[:300]}" for r, e in first_time]}),
            actor=actor,
        )  # fmt: skip


def _write_documents(engine, created, goods_by_request, settings, now) -> tuple[list[str], list[str]]:
    from tasks.fulfilment.documents import write_pick_lists, write_shipping_document

    cards = settings.fulfilment.rate_cards
    ship_date = _today(now)
    docs, picks, paths = [], [], {}
    for r in created:
        goods = goods_by_request.get(r["id"], [])
        doc = {
            "shipment_no": r["shipment_no"], "order_no": r["order_no"], "waybill_no": r["waybill_no"],
            "carrier": r["carrier"], "carrier_name": cards[r["carrier"]].name if r["carrier"] in cards else r["carrier"],
            "service": r["service"], "sort_code": r.get("sort_code"), "ship_date": ship_date,
            "expected_delivery_date": r["expected_delivery_date"],
            "sender": {"warehouse": r["warehouse"], "name": r["wh_contact"] or r["wh_name"], "phone": r["wh_phone"],
                       "province": r["wh_province"], "city": r["wh_city"], "district": r["wh_district"],
                       "address": r["wh_address"]},
            "recipient": {"name": r["customer_name"], "phone": r["customer_phone"], "province": r["ship_province"],
                          "city": r["ship_city"], "district": r["ship_district"], "address": r["ship_detail"],
                          "postcode": r["ship_postcode"]},
            "goods": [{"item_code": g["item_code"], "name": g["name"], "spec": g.get("spec"), "unit": g.get("unit"),
                       "quantity": g["quantity"], "batch_no": g.get("batch_no"),
                       "weight_kg": (g.get("weight_kg") or 0) * g["quantity"]} for g in goods],
            "weight_kg": float(r["weight_kg"] or 0), "chargeable_weight_kg": float(r["chargeable_weight_kg"] or 0),
            "volume_m3": float(r["volume_m3"] or 0), "declared_value_fen": int(r["declared_value_fen"] or 0),
            "insured": bool(r["insured"]), "insurance_fee_fen": int(r["insurance_fee_fen"] or 0),
            "cod_amount_fen": int(r["cod_amount_fen"] or 0), "freight_fen": int(r["freight_fen"] or 0),
            "liability": cards[r["carrier"]].liability if r["carrier"] in cards else "",
            "choice_reason": r["choice_reason"],
        }  # fmt: skip
        path = write_shipping_document(doc)
        paths[r["id"]] = str(path)
        docs.append(str(path))
        for g in goods:
            picks.append({"warehouse": r["warehouse"], "item_code": g["item_code"], "item_name": g["name"],
                          "spec": g.get("spec"), "batch_no": g.get("batch_no"), "expiry_date": None,
                          "quantity": g["quantity"], "unit": g.get("unit"), "shipment_no": r["shipment_no"],
                          "order_no": r["order_no"], "carrier": r["carrier"], "waybill_no": r["waybill_no"]})  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            update(shipment_requests).where(shipment_requests.c.id == bindparam("rid"))
            .values(document_path=bindparam("path")),
            [{"rid": rid, "path": p} for rid, p in paths.items()],
        )  # fmt: skip
        pick_frame = pd.DataFrame(picks)
        if len(pick_frame):
            from yidi.schema_fulfilment import stock_batches

            expiry = read_frame(conn, select(stock_batches.c.warehouse, stock_batches.c.item_code,
                                             stock_batches.c.batch_no, stock_batches.c.expiry_date))  # fmt: skip
            lookup = {(w, i, b): e for w, i, b, e in zip(expiry["warehouse"], expiry["item_code"], expiry["batch_no"],
                                                          expiry["expiry_date"], strict=True)}  # fmt: skip
            pick_frame["expiry_date"] = [
                lookup.get((w, i, b)) if isinstance(b, str) and "," not in b else None
                for w, i, b in zip(pick_frame["warehouse"], pick_frame["item_code"], pick_frame["batch_no"], strict=True)
            ]
    label = now.astimezone(BUSINESS_TZ).strftime("%Y%m%d-%H%M%S")
    pick_paths = [str(p) for p in write_pick_lists(pick_frame, label)] if picks else []
    return docs, pick_paths


# --- purchase orders to suppliers ----------------------------------------------------------------------------


@dataclass
class PurchaseOrderResult:
    sent: int = 0
    failed: int = 0
    rejected: int = 0
    orders: list[dict] = field(default_factory=list)


def send_purchase_orders(engine: Engine, client, *, settings: Settings | None = None, actor: str | None = None) -> PurchaseOrderResult:
    """Send every draft purchase order (one per supplier per run) once: the PO number is the idempotency key."""
    from connectors.supplier import SupplierRejected, SupplierUnavailable

    settings = settings or get_settings()
    result = PurchaseOrderResult()
    pq, w = purchase_requests.c, warehouses.c
    with engine.connect() as conn:
        drafts = read_frame(
            conn,
            select(pq.id, pq.request_no, pq.po_no, pq.order_id, pq.item_code, pq.quantity, pq.unit_price_fen,
                   pq.supplier_code, pq.warehouse, pq.required_date, pq.expected_date,
                   w.name.label("wh_name"), w.province, w.city, w.district, w.address, w.contact, w.phone)
            .outerjoin(warehouses, w.code == pq.warehouse)
            .where(pq.status == "draft").order_by(pq.po_no, pq.id),
        )  # fmt: skip
    if drafts.empty:
        return result
    general = settings.general
    for po_no, lines in drafts.groupby("po_no", sort=True):
        first = lines.iloc[0]
        body = {
            "po_no": po_no,
            "supplier_code": first["supplier_code"],
            "buyer": {"company": general.company_name, "contact": first["contact"] or "", "phone": first["phone"] or ""},
            "ship_to": {"warehouse": first["warehouse"], "name": first["wh_name"] or "", "province": first["province"] or "",
                        "city": first["city"] or "", "district": first["district"] or "", "address": first["address"] or "",
                        "contact": first["contact"] or "", "phone": first["phone"] or ""},
            "currency": general.currency,
            "lines": [
                {"line_no": i, "item_code": code, "quantity": float(q), "unit_price": f"{int(p) / 100:.2f}",
                 "required_date": str(d if not _is_missing(d) else e)}
                for i, (code, q, p, d, e) in enumerate(zip(lines["item_code"], lines["quantity"], lines["unit_price_fen"],
                                                           lines["required_date"], lines["expected_date"], strict=True), 1)
            ],
        }  # fmt: skip
        status, error, supplier_order = "draft", None, None
        try:
            ack = client.send_purchase_order(body)
            status, supplier_order = "sent", ack.supplier_order_id
            result.sent += 1
        except SupplierRejected as exc:
            status, error = "failed", f"rejected by supplier: {exc}"
            result.rejected += 1
        except SupplierUnavailable as exc:
            error = f"supplier unavailable: {exc}"
            result.failed += 1
        with engine.begin() as conn:
            conn.execute(
                update(purchase_requests).where(pq.po_no == po_no, pq.status == "draft")
                .values(status=status, supplier_order_id=supplier_order, last_error=error,
                        sent_at=utc_now() if status == "sent" else None, updated_at=utc_now())
            )  # fmt: skip
            record_events(
                conn,
                pd.DataFrame({"order_id": sorted(set(lines["order_id"].dropna().astype(int))), "kind": "fulfilment",
                              "reason": f"purchase order {po_no} to {first['supplier_code']}: "
                                        + (f"sent ({supplier_order})" if status == "sent" else error)}),
                actor=actor,
            )  # fmt: skip
        result.orders.append({"po_no": po_no, "supplier": first["supplier_code"], "lines": len(lines), "status": status,
                              "error": error})  # fmt: skip
    return result


# --- customer decisions: wait / partial / cancel -------------------------------------------------------------

CHOICES = ("wait", "partial", "cancel")


class DecisionError(ValueError):
    pass


def record_customer_decision(
    conn: Connection,
    order_id: int,
    choice: str,
    *,
    actor: str | None = None,
    note: str | None = None,
    settings: Settings | None = None,
) -> dict:
    """Record the customer's answer on the order; 'cancel' cancels it (reservations and open requests
    released), 'partial' lets the next run ship what is in stock, 'wait' keeps it waiting for all goods."""
    if choice not in CHOICES:
        raise DecisionError(f"choice must be one of {CHOICES}")
    settings = settings or get_settings()
    actor = actor or current_actor()
    now = utc_now()
    state = conn.execute(select(orders.c.state).where(orders.c.id == order_id)).scalar_one_or_none()
    if state is None:
        raise DecisionError(f"no order {order_id}")
    cd = customer_decisions.c
    open_id = conn.execute(
        select(cd.id).where(cd.order_id == order_id, cd.choice.is_(None)).order_by(cd.id.desc()).limit(1)
    ).scalar_one_or_none()
    if open_id is None:
        open_id = conn.execute(
            insert(customer_decisions).values(order_id=order_id, offered_at=now, options=_json(list(CHOICES)))
            .returning(cd.id)
        ).scalar_one()  # fmt: skip
    conn.execute(
        update(customer_decisions).where(cd.id == open_id)
        .values(choice=choice, decided_at=now, decided_by=actor, note=note)
    )  # fmt: skip
    record_events(
        conn,
        pd.DataFrame([{"order_id": order_id, "kind": "fulfilment", "reason": f"customer chose: {choice}",
                       "details": {"decision": open_id, "note": note}}]),
        actor=actor,
    )  # fmt: skip
    if choice == "cancel":
        cancel_fulfilment(conn, order_id, reason="customer chose to cancel (short items)", actor=actor, now=now)
    enqueue(
        conn,
        notice_rows(
            conn,
            [{"order_id": order_id, "template": "fulfilment_decision", "dedupe": f"fulfil-decision:{open_id}",
              "context": {"choice": {"wait": "等待全部到货后发货", "partial": "先发有货部分",
                                     "cancel": "取消订单"}[choice]}}],
            settings.fulfilment,
            settings,
        ),
    )  # fmt: skip
    return {"order_id": order_id, "decision_id": open_id, "choice": choice}


def cancel_fulfilment(conn: Connection, order_id: int, *, reason: str, actor: str, now: datetime) -> None:
    """Release everything fulfilment holds for an order and cancel it (shipped goods are not recalled)."""
    a = allocations.c
    held = read_frame(
        conn, select(a.id, a.warehouse, a.item_code, a.quantity).where(a.order_id == order_id, a.status == "reserved")
    )
    if len(held):
        apply_movements(
            conn,
            held.rename(columns={"id": "allocation_id"}).assign(
                kind="release", reserved_delta=-held["quantity"], order_id=order_id, reason=reason
            ).drop(columns="quantity"),
            actor=actor,
            now=now,
        )  # fmt: skip
        conn.execute(update(allocations).where(a.order_id == order_id, a.status == "reserved")
                     .values(status="released", updated_at=now))  # fmt: skip
    conn.execute(update(shipment_requests).where(shipment_requests.c.order_id == order_id,
                                                 shipment_requests.c.status.in_(["pending", "rejected"]))
                 .values(status="cancelled", updated_at=now))  # fmt: skip
    conn.execute(update(backorders).where(backorders.c.order_id == order_id, backorders.c.status == "open")
                 .values(status="cancelled", updated_at=now))  # fmt: skip
    conn.execute(update(purchase_requests).where(purchase_requests.c.order_id == order_id,
                                                 purchase_requests.c.status == "draft")
                 .values(status="cancelled", updated_at=now))  # fmt: skip
    conn.execute(update(production_requests).where(production_requests.c.order_id == order_id,
                                                   production_requests.c.status == "planned")
                 .values(status="cancelled", updated_at=now))  # fmt: skip
    transition_orders(conn, [order_id], S.CANCELLED, reason=reason, actor=actor)
