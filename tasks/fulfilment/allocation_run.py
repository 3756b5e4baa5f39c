"""The allocation run (issue 5; F3, F4, K3): approved orders to allocated stock, requests for what is short, a
carrier per shipment, customers asked when a promise cannot be kept.

``allocate_orders`` is one transaction per attempt, and stays serial (issue 17): an item's free stock is shared by
every order that wants it and an order's lines and partial-shipment choice tie items together, so the plan is not
split into chunks that could run side by side. Overlapping runs (a scheduled and an on-demand one, several
workers) take turns through the database: the attempt's first statement is ``yidi.db.serial_section``
(a transaction-scoped advisory lock on PostgreSQL; the one write lock on SQLite), so the next run plans from what
the previous one committed. The conditional reservations and the CHECK below stay the last line of defence.

1. its next statement writes (the run row), so on SQLite it holds the write lock from the start and reads
   see every committed change; on PostgreSQL it reads the latest committed state;
2. reads the candidate orders (approved, backordered, in production/procurement, and shipped orders with open
   backorders), their outstanding lines, free stock, open requests and decisions (``allocation_store``);
3. sets aside orders no carrier can take (unserved destination, items without weight or not in the catalog):
   they stay where they are with a clear 'fulfilment' exception event, once per distinct reason;
4. plans (``tasks.fulfilment.allocation``), prices carriers for the resulting shipments
   (``tasks.fulfilment.carrier_choice``);
5. reserves stock with conditional UPDATEs (``tasks.fulfilment.stock.apply_movements``): if another run took the
   stock meanwhile, ``InsufficientStock`` is raised; if another run moved the orders, the state transitions are
   skipped. Either way the whole attempt rolls back and is planned again from fresh data. The CHECK on
   ``stock_levels`` refuses any over-allocation at the database level regardless;
6. writes allocations, shipment requests (carrier, alternatives, insurance), backorders, production and
   purchase requests (``purchasing``), customer decisions with notices (``decisions``), state transitions with
   events.

Network calls (waybills, purchase orders) happen after the commit, never inside a transaction
(``waybills``, ``purchasing``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import Connection, Engine, insert
from sqlalchemy.exc import DBAPIError, IntegrityError

from tasks.fulfilment.allocation import (
    plan_allocation,
    plan_shipments,
    precheck_exceptions,
    product_lines,
    shipment_keys_for,
)
from tasks.fulfilment.allocation_store import (
    FULFIL_STATES,
    S,
    finish_run,
    load_candidates,
    record_carrier_events,
    record_exception_events,
    update_backorders,
    write_shipment_requests,
)
from tasks.fulfilment.carrier_choice import DispatchCalendar, choose_carriers
from tasks.fulfilment.decisions import offer_decisions, queue_waiting_notices
from tasks.fulfilment.purchasing import raise_requests
from tasks.fulfilment.rate_cards import fastest_transit, rate_table, served_provinces
from tasks.fulfilment.stock import (
    InsufficientStock,
    apply_movements,
    stock_position,
    sync_warehouses,
    warehouse_order,
)
from yidi.bulk import insert_rows
from yidi.carrier_routes import route_standing
from yidi.db import serial_section
from yidi.lifecycle import current_actor, record_events, transition_orders
from yidi.money import decimal_to_fen
from yidi.schema_fulfilment import QTY_EPSILON, allocation_runs, allocations
from yidi.settings import Settings, get_settings
from yidi.workdays import BUSINESS_TZ

log = logging.getLogger(__name__)


class AllocationConflict(RuntimeError):
    """Another run changed the same orders meanwhile; the attempt is rolled back and planned again."""


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
    serial: bool = True,
) -> AllocationResult:
    """One allocation run over every candidate order (see module docstring); retried on conflicts.

    ``after_plan(attempt)`` is called between planning and reserving (tests use it to line two runs up).
    ``serial=False`` skips the advisory lock: only for the test that proves the database still refuses a double
    reservation when two runs plan from the same stock.
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
                if serial:
                    serial_section(conn, "allocation")
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
    lines = product_lines(cand.lines, cand.items, QTY_EPSILON)
    order_frame = cand.orders[cand.orders["order_id"].isin(lines["order_id"])].copy()
    result.considered = len(order_frame)
    if order_frame.empty:
        finish_run(conn, run_id, result.as_dict())
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
        insurance_threshold_fen=decimal_to_fen(policy.insurance_threshold_yuan),
        insurance_provinces=policy.insurance_route_provinces,
        calendar=calendar,
        route_standing=route_standing(conn, now),
        route_penalty_pct=settings.risk.carrier.penalty_points,
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
    request_ids = write_shipment_requests(conn, ships, choices, options, info, cand.shipment_counts, run_id, now, policy)
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

    update_backorders(conn, lines, allocs, short_lines, now)
    today = now.astimezone(BUSINESS_TZ).date()
    transit = fastest_transit(table)
    new_production, new_purchase, ready = raise_requests(
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
    told_waiting: dict[int, str] = {}
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
        told_waiting.update(dict.fromkeys(movers, kind))
    result.decisions_offered = offer_decisions(conn, short, ready, info, outcomes, cand, lines, transit, calendar, policy, settings, now)
    queue_waiting_notices(conn, told_waiting, ready_of, settings)
    record_carrier_events(conn, ships, choices, request_ids, actor, now)
    result.exceptions = len(exceptions)
    result.exception_rows = record_exception_events(conn, exceptions, info, actor)
    finish_run(conn, run_id, result.as_dict())
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
