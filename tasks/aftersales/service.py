"""Service jobs (S2, A3): the service lines of approved orders (installation, commissioning 调试, maintenance,
repair) become jobs, scheduled on working days in the customer's service region with the technicians' daily
capacity from the policy, after the order's goods are delivered when the job depends on them. The customer is told
the appointment; the technician's result (done, needs parts, customer absent, rescheduled) is recorded through
the CLI or the Prefect form; a service-only order is delivered once all its jobs are done.

The scheduling rule (``plan_appointments``) is pure; the rest is load → plan → write, in batches.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
from sqlalchemy import Connection, bindparam, func, select, update

from yidi.aftersales_policy import ServicePolicy
from yidi.bulk import insert_rows, read_frame
from yidi.lifecycle import transition_orders
from yidi.outbox import enqueue_customer_notices
from yidi.schema import order_lines, orders, shipments
from yidi.schema_aftersales import service_jobs
from yidi.settings import Settings
from yidi.workdays import BUSINESS_TZ, add_working_days, is_working_day

RESULTS = ("done", "needs_parts", "customer_absent", "rescheduled")
# States in which an order's service lines are due: approved and everything after it but closing states.
ACTIVE_STATES = ("approved", "allocated", "backordered", "in_production", "in_procurement", "shipped", "in_transit",
                 "delivered", "settled", "after_sales")  # fmt: skip
KIND_TEXT = {"installation": "上门安装", "commissioning": "设备调试", "maintenance": "维保服务", "repair": "上门维修"}


def region_of(city: str | None, province: str | None, policy: ServicePolicy) -> str | None:
    for name, region in policy.regions.items():
        if city in region.cities or province in region.cities:
            return name
    return None


def plan_appointments(jobs: pd.DataFrame, booked: pd.DataFrame, today: date, policy: ServicePolicy) -> pd.DataFrame:
    """Pure: each job (id, region, ready_on) gets the earliest working day from ``lead_working_days`` after
    ``max(today, ready_on)`` with a technician of its region under capacity. ``booked``: technician,
    scheduled_date, n (jobs already booked). Returns id, technician, scheduled_date (NaT when nothing is free
    within ``horizon_working_days``)."""
    load = {(t, d): int(n) for t, d, n in zip(booked.get("technician", []), booked.get("scheduled_date", []),
                                              booked.get("n", []), strict=True)}  # fmt: skip
    out = []
    for job in jobs.sort_values("id").to_dict("records"):
        region = policy.regions[job["region"]]
        start = max(today, job["ready_on"] or today)
        day = add_working_days(start, policy.lead_working_days) if policy.lead_working_days else start
        while not is_working_day(day):
            day = add_working_days(day, 1)
        chosen = None
        for _ in range(policy.horizon_working_days):
            for tech, capacity in region.technicians.items():
                if load.get((tech, day), 0) < capacity:
                    chosen = tech
                    break
            if chosen:
                break
            day = add_working_days(day, 1)
        if chosen:
            load[(chosen, day)] = load.get((chosen, day), 0) + 1
        out.append({"id": int(job["id"]), "technician": chosen, "scheduled_date": day if chosen else None})
    return pd.DataFrame(out, columns=["id", "technician", "scheduled_date"])


def create_jobs(conn: Connection, settings: Settings, now: datetime) -> int:
    """One job per service line of an active order (the line id is its key: re-runs make none twice)."""
    policy = settings.service
    lines = read_frame(
        conn,
        select(order_lines.c.id.label("order_line_id"), order_lines.c.order_id, order_lines.c.item_code,
               orders.c.ship_city, orders.c.ship_province)
        .join(orders, orders.c.id == order_lines.c.order_id)
        .outerjoin(service_jobs, service_jobs.c.order_line_id == order_lines.c.id)
        .where(order_lines.c.item_kind == "service", orders.c.state.in_(ACTIVE_STATES), service_jobs.c.id.is_(None))
        .order_by(order_lines.c.id),
    )  # fmt: skip
    if lines.empty:
        return 0
    goods = read_frame(conn, select(order_lines.c.order_id).where(
        order_lines.c.order_id.in_(lines["order_id"].astype(int).unique().tolist()),
        order_lines.c.item_kind != "service").distinct())  # fmt: skip
    with_goods = set(goods["order_id"])
    kinds = [policy.item_kinds.get(code, "installation") for code in lines["item_code"]]
    regions = [region_of(c, p, policy) for c, p in zip(lines["ship_city"], lines["ship_province"], strict=True)]
    needs = [int(k in policy.needs_goods and o in with_goods) for k, o in zip(kinds, lines["order_id"], strict=True)]
    frame = pd.DataFrame({
        "job_no": [f"SJ{int(i):08d}" for i in lines["order_line_id"]], "order_id": lines["order_id"],
        "order_line_id": lines["order_line_id"], "kind": kinds, "region": regions, "needs_goods": needs,
        "status": ["no_region" if r is None else ("waiting_goods" if n else "unscheduled")
                   for r, n in zip(regions, needs, strict=True)], "updated_at": now})  # fmt: skip
    return insert_rows(conn, service_jobs, frame, on_conflict=["order_line_id"])


def schedule_jobs(conn: Connection, settings: Settings, now: datetime) -> int:
    """Release jobs whose goods arrived, then book every unscheduled job; the customer is told the appointment."""
    policy = settings.service
    delivered = read_frame(conn, select(shipments.c.order_id, func.max(shipments.c.delivered_at).label("at"))
                           .where(shipments.c.delivered_at.is_not(None)).group_by(shipments.c.order_id))  # fmt: skip
    delivered_on = {int(o): pd.Timestamp(t).tz_convert(BUSINESS_TZ).date()
                    for o, t in zip(delivered["order_id"], delivered["at"], strict=True)}  # fmt: skip
    waiting = read_frame(conn, select(service_jobs.c.id, service_jobs.c.order_id).where(
        service_jobs.c.status == "waiting_goods"))  # fmt: skip
    ready = [int(i) for i, o in zip(waiting["id"], waiting["order_id"], strict=True) if int(o) in delivered_on]
    if ready:
        conn.execute(update(service_jobs).where(service_jobs.c.id.in_(ready)).values(status="unscheduled"))
    jobs = read_frame(conn, select(service_jobs.c.id, service_jobs.c.job_no, service_jobs.c.order_id,
                                   service_jobs.c.kind, service_jobs.c.region)
                      .where(service_jobs.c.status == "unscheduled"))  # fmt: skip
    if jobs.empty:
        return 0
    jobs["ready_on"] = [delivered_on.get(int(o)) for o in jobs["order_id"]]
    today = now.astimezone(BUSINESS_TZ).date()
    booked = read_frame(conn, select(service_jobs.c.technician, service_jobs.c.scheduled_date,
                                     func.count().label("n")).where(service_jobs.c.status == "scheduled",
                                                                    service_jobs.c.scheduled_date >= today)
                        .group_by(service_jobs.c.technician, service_jobs.c.scheduled_date))  # fmt: skip
    plan = plan_appointments(jobs, booked, today, policy).merge(jobs, on="id")
    plan = plan[plan["technician"].notna()]
    if plan.empty:
        return 0
    conn.execute(update(service_jobs).where(service_jobs.c.id == bindparam("jid")).values(
        status="scheduled", technician=bindparam("tech"), scheduled_date=bindparam("day"),
        updated_at=bindparam("now", type_=service_jobs.c.updated_at.type)),
        [{"jid": int(i), "tech": t, "day": d, "now": now}
         for i, t, d in zip(plan["id"], plan["technician"], plan["scheduled_date"], strict=True)])  # fmt: skip
    enqueue_customer_notices(conn, [
        {"order_id": int(r["order_id"]), "template": "service_appointment",
         "dedupe": f"service:appointment:{r['id']}:{r['scheduled_date']}",
         "context": {"job_no": r["job_no"], "job_kind_text": KIND_TEXT[r["kind"]], "technician": r["technician"],
                     "service_date": str(r["scheduled_date"])}} for r in plan.to_dict("records")
    ], settings.aftersales.notice_media, settings.general.company_name)  # fmt: skip
    return len(plan)


def record_result(conn: Connection, job_no: str, result: str, now: datetime, *, note: str | None = None,
                  actor: str | None = None) -> dict:  # fmt: skip
    """The technician's result: done; needs_parts (waits for a person to reschedule); customer_absent and
    rescheduled (booked again by the next run). Then service-only orders whose jobs are all done are delivered."""
    if result not in RESULTS:
        raise ValueError(f"result {result!r} is not one of {', '.join(RESULTS)}")
    job = read_frame(conn, select(service_jobs).where(service_jobs.c.job_no == job_no))
    if job.empty:
        raise ValueError(f"no service job {job_no}")
    status = {"done": "done", "needs_parts": "needs_parts"}.get(result, "unscheduled")
    values = {"status": status, "result_note": note, "updated_at": now}
    if result == "done":
        values["done_at"] = now
    else:
        values.update(technician=None, scheduled_date=None)
    conn.execute(update(service_jobs).where(service_jobs.c.job_no == job_no).values(**values))
    completed = complete_service_orders(conn, [int(job["order_id"].iloc[0])], actor=actor)
    return {"job_no": job_no, "status": status, "orders_completed": completed}


def complete_service_orders(conn: Connection, order_ids: list[int], *, actor: str | None = None) -> int:
    """Approved orders with no goods lines whose service jobs are all done move to delivered (S2)."""
    lines = read_frame(conn, select(order_lines.c.order_id, order_lines.c.item_kind).where(
        order_lines.c.order_id.in_(order_ids)))  # fmt: skip
    service_only = [o for o, g in lines.groupby("order_id") if (g["item_kind"] == "service").all()]
    if not service_only:
        return 0
    jobs = read_frame(conn, select(service_jobs.c.order_id, service_jobs.c.status).where(
        service_jobs.c.order_id.in_([int(o) for o in service_only])))  # fmt: skip
    done = [int(o) for o, g in jobs.groupby("order_id") if (g["status"] == "done").all()]
    if not done:
        return 0
    return len(transition_orders(conn, done, "delivered", reason="上门服务已全部完成", actor=actor,
                                 skip_illegal=True).moved)  # fmt: skip
