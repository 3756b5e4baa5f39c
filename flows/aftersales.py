"""``after-sales`` (every 15 minutes, prefect.yaml) and ``record-service-result`` (on demand, a form for the
technician's result).

``after_sales_cycle`` is the area's one step list (``flows.compose``): land what the inbound paths brought
(after-sales requests, feedback, survey replies: raw records first, unreadable ones quarantined), assess open
cases, move returned goods into stock (fulfilment's step, meeting after-sales in ``returned_goods``), send
refunds, create and book service jobs, remind and escalate feedback on its working-hour limits, send satisfaction
surveys, then the report. The flow runs it ``with_prefect``; ``yidi aftersales run --no-prefect`` and the tests
run it ``in_process``. Customer notices go through the outbox (``send-notifications`` sends them).

Transaction scope: one transaction per step (per channel folder for the inbound paths), so a failed step leaves
the earlier ones committed and is safe to run again: every step is idempotent by its keys (inbox identity, case
request key, refund idempotency key, returned-goods row, job per order line, alert per deadline, survey per
trigger). Refunds are the exception to "all or nothing": each answer is recorded as it comes, and one whose
answer was lost is sent again next run with the same request number.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine, select

from connectors.service_inbox_files import read_inbox
from flows.compose import Run, require_store, retry_on_database_error, with_prefect
from flows.naming import run_name
from tasks.aftersales.assessment import assess_open_cases
from tasks.aftersales.landing import land_requests
from tasks.aftersales.refunds import make_refund_clients, send_refunds
from tasks.aftersales.report import open_cases_by_age, satisfaction, sla_compliance
from tasks.aftersales.service import create_jobs, schedule_jobs
from tasks.feedback.queue import land_feedback, raise_alerts
from tasks.feedback.surveys import land_survey_replies, send_surveys
from tasks.fulfilment.returns import restock_returns
from yidi.bulk import read_frame, utc_now
from yidi.db import get_engine
from yidi.lifecycle import current_actor
from yidi.schema_aftersales import aftersales_cases, feedback_items, surveys
from yidi.settings import get_settings, yidi_home

FEEDBACK_CHANNEL = {"form": "phone", "phone": "phone", "email": "email", "website": "website", "taobao": "platform",
                    "woocommerce": "platform", "platform": "platform"}  # fmt: skip


def inbox_dir() -> Path:
    return yidi_home() / "aftersales" / "inbox"


_retry = {"cache_policy": NO_CACHE, "retries": 2, "retry_delay_seconds": 2,
          "retry_condition_fn": retry_on_database_error}  # fmt: skip


@task(name="land-aftersales-inbox", **_retry)
def land_inbox_task(engine: Engine, folder: Path, now: datetime, actor: str) -> dict:
    settings, counts = get_settings(), {}
    for kind, channel, records in read_inbox(folder):
        with engine.begin() as conn:
            if kind == "requests":
                got = land_requests(conn, channel, records, settings, now, actor=actor)
            elif kind == "feedback":
                got = land_feedback(conn, FEEDBACK_CHANNEL.get(channel, "website"), records, settings, now)
            else:
                got = land_survey_replies(conn, "email" if channel == "email" else "sms", records, now)
        counts[f"{kind}/{channel}"] = got
    return counts


@task(name="assess-aftersales-cases", **_retry)
def assess_task(engine: Engine, now: datetime, actor: str) -> dict:
    with engine.begin() as conn:
        return assess_open_cases(conn, get_settings(), now, actor=actor)


@task(name="restock-returns", **_retry)
def restock_task(engine: Engine, now: datetime, actor: str) -> dict:
    with engine.begin() as conn:
        return restock_returns(conn, now, actor=actor)


@task(name="send-refunds", cache_policy=NO_CACHE)
def refunds_task(engine: Engine, clients: dict | None, now: datetime) -> dict:
    settings = get_settings()
    with engine.begin() as conn:
        return send_refunds(conn, clients or make_refund_clients(settings.aftersales), settings, now)


@task(name="book-service-jobs", **_retry)
def service_task(engine: Engine, now: datetime) -> dict:
    with engine.begin() as conn:
        made = create_jobs(conn, get_settings(), now)
        booked = schedule_jobs(conn, get_settings(), now)
    return {"created": made, "booked": booked}


@task(name="feedback-deadlines", **_retry)
def feedback_alerts_task(engine: Engine, now: datetime) -> dict:
    with engine.begin() as conn:
        return raise_alerts(conn, get_settings(), now)


@task(name="send-surveys", **_retry)
def surveys_task(engine: Engine, now: datetime) -> int:
    with engine.begin() as conn:
        return send_surveys(conn, get_settings(), now)


def after_sales_cycle(run: Run, *, engine: Engine | None = None, now: datetime | None = None,
                      actor: str | None = None, inbox: Path | None = None, clients: dict | None = None) -> dict:  # fmt: skip
    """The after-sales steps in order, one transaction each; returns what each did."""
    engine = engine or get_engine()
    require_store(engine)
    now, actor = now or utc_now(), actor or current_actor()
    return {
        "inbox": run(land_inbox_task, engine, inbox or inbox_dir(), now, actor),
        "assessed": run(assess_task, engine, now, actor),
        "restocked": run(restock_task, engine, now, actor),
        "refunds": run(refunds_task, engine, clients, now),
        "service": run(service_task, engine, now),
        "feedback_alerts": run(feedback_alerts_task, engine, now),
        "surveys": run(surveys_task, engine, now),
    }


def report_tables(engine: Engine, now: datetime) -> dict[str, list[dict]]:
    with engine.connect() as conn:
        cases = read_frame(conn, select(aftersales_cases.c.kind, aftersales_cases.c.status,
                                        aftersales_cases.c.requested_at))  # fmt: skip
        items = read_frame(conn, select(feedback_items))
        sent = read_frame(conn, select(surveys.c.trigger, surveys.c.score))
    return {"open-cases-by-age": open_cases_by_age(cases, now), "feedback-sla": sla_compliance(items, now),
            "satisfaction": satisfaction(sent)}  # fmt: skip


@flow(name="after-sales", flow_run_name=run_name("after-sales"))
def after_sales(now: datetime | None = None) -> dict:
    """Scheduled after-sales cycle with its artifacts (open cases by age and type, feedback SLA, satisfaction)."""
    engine = get_engine()
    result = after_sales_cycle(with_prefect, engine=engine, now=now)
    tables = report_tables(engine, now or utc_now())
    for key, rows in tables.items():
        if rows:
            create_table_artifact(key=key, table=rows, description=f"after-sales: {key} (no personal data)")
    create_markdown_artifact(key="after-sales-summary", markdown="\n".join(
        f"- **{step}**: {value}" for step, value in result.items()), description="after-sales cycle")  # fmt: skip
    return result
