"""``after-sales`` (every 15 minutes, prefect.yaml) and ``record-service-result`` (on demand, a form for the
technician's result).

``after_sales_cycle`` is the area's one step list (``flows.compose``): land what the inbound paths brought
(after-sales requests, feedback, survey replies: raw records first, unreadable ones quarantined; the service
mailbox over IMAP, each message marked read only after it is committed; the website's refunds and the platform's buyer ratings through their APIs), assess open
cases, ask the carrier for return waybills (once per case), track the return parcels on Kuaidi100 (arrival puts the
case on the inspection list), move returned goods into stock (fulfilment's step,
meeting after-sales in ``returned_goods``), send
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

from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import Engine, select

from connectors.service_inbox_files import move_processed, read_inbox_files
from flows.compose import Run, require_store, retry_on_database_error, step_logger, with_prefect
from flows.naming import run_name
from flows.params import Day, Hours, Moment, Seconds, Url
from tasks.aftersales.assessment import assess_open_cases
from tasks.aftersales.landing import land_requests
from tasks.aftersales.refunds import make_refund_clients, send_refunds
from tasks.aftersales.report import open_cases_by_age, satisfaction, sla_compliance
from tasks.aftersales.return_tracking import apply_return_pushes, track_returns
from tasks.aftersales.return_waybills import issue_return_waybills
from tasks.aftersales.service import create_jobs, record_result, schedule_jobs
from tasks.aftersales.web_refunds import website_refunds
from tasks.feedback.order_mailbox import route_to_feedback
from tasks.feedback.queue import land_feedback, raise_alerts
from tasks.feedback.surveys import land_survey_replies, send_surveys
from tasks.fulfilment.returns import restock_returns
from yidi.bulk import read_frame, utc_now
from yidi.db import for_writing, get_engine
from yidi.lifecycle import current_actor
from yidi.schema import orders
from yidi.schema_aftersales import aftersales_cases, feedback_items, service_jobs, surveys
from yidi.settings import get_settings, yidi_home
from yidi.steps import NO_CACHE, create_markdown_artifact, create_table_artifact, flow, task
from yidi.workdays import BUSINESS_TZ

FEEDBACK_CHANNEL = {"form": "phone", "phone": "phone", "email": "email", "website": "website", "taobao": "platform",
                    "woocommerce": "platform", "platform": "platform"}  # fmt: skip


def inbox_dir() -> Path:
    return yidi_home() / "aftersales" / "inbox"


_retry = {"cache_policy": NO_CACHE, "retries": 2, "retry_delay_seconds": 2,
          "retry_condition_fn": retry_on_database_error}  # fmt: skip


@task(name="land-aftersales-inbox", **_retry)
def land_inbox_task(engine: Engine, folder: Path, now: datetime, actor: str) -> dict:
    settings, counts = get_settings(), {}
    for kind, channel, records, files in read_inbox_files(folder):
        with for_writing(engine).begin() as conn:
            if kind == "requests":
                got = land_requests(conn, channel, records, settings, now, actor=actor)
            elif kind == "feedback":
                got = land_feedback(conn, FEEDBACK_CHANNEL.get(channel, "website"), records, settings, now)
            else:
                got = land_survey_replies(conn, "email" if channel == "email" else "sms", records, now)
        move_processed(folder, files)  # committed: the next cycle need not read them again
        counts[f"{kind}/{channel}"] = got
    return counts


@task(name="land-service-mailbox", **_retry)
def service_mailbox_task(engine: Engine, source, now: datetime) -> dict:
    """The service mailbox over IMAP ([feedback.mailbox]; skipped, with a log line, while no host is set): each
    message lands as feedback or a survey reply (``tasks.feedback.mail``), ``batch_messages`` per transaction, and
    is marked only after its transaction commits, so a crash in between re-reads it harmlessly (one inbox record
    per Message-ID)."""
    import os

    from connectors.base import ChannelError
    from connectors.mailbox import ImapSource
    from connectors.service_inbox_files import mail_record, oversized_mail_record
    from flows.compose import step_logger
    from tasks.feedback.mail import land_mail
    from yidi.bulk import chunked

    settings = get_settings()
    box = settings.feedback.mailbox
    if source is None:
        if not box.host:
            step_logger(__name__).info("service mailbox: skipped, [feedback.mailbox] host is not set")
            return {"skipped": "[feedback.mailbox] host is not set"}
        user, password = os.environ.get(box.user_env, ""), os.environ.get(box.password_env, "")
        if not user or not password:
            raise ChannelError(f"service mailbox: environment variables {box.user_env} / {box.password_env} "
                               "(IMAP user and password) are not set")  # fmt: skip
        source = opened = ImapSource(box.host, box.port, user, password, mailbox=box.folder, use_ssl=box.ssl,
                            flag=box.processed_flag, timeout=box.timeout_seconds)  # fmt: skip
    else:
        opened = None  # the caller's source: the caller closes it
    counts: dict = {"messages": 0}
    limit = int(box.max_message_mb * 2**20)
    try:
        for items in chunked(list(source.items()), box.batch_messages):
            records = [mail_record(item.load()) if item.size <= limit else oversized_mail_record(
                item.headers(), item.size, box.max_message_mb) for item in items]  # fmt: skip
            with for_writing(engine).begin() as conn:
                got = land_mail(conn, records, settings, now)
            for item in items:  # committed: now they may be marked read
                item.mark()
            counts["messages"] += len(items)
            for path, numbers in got.items():
                for name, n in numbers.items():
                    counts[f"{path}:{name}"] = counts.get(f"{path}:{name}", 0) + n
    finally:
        if opened is not None:
            opened.close()
    return counts


@task(name="order-mailbox-to-feedback", **_retry)
def order_mailbox_task(engine: Engine, now: datetime) -> dict:
    """Messages in the order mailbox that hold no order (a complaint, a question) into the feedback queue."""
    with for_writing(engine).begin() as conn:
        got = route_to_feedback(conn, get_settings(), now)
    if got["routed"]:
        step_logger(__name__).info("order mailbox: %d message(s) without an order moved to the feedback queue",
                                   got["routed"])  # fmt: skip
    return got


@task(name="land-website-refunds", cache_policy=NO_CACHE)
def website_refunds_task(engine: Engine, client, now: datetime, actor: str) -> dict:
    """The website's refunds as requests; only when the website channel is enabled (or a client is given)."""
    import os

    from connectors.woocommerce_refunds import WooRefundsClient

    settings = get_settings()
    site = settings.intake.woocommerce
    if client is None:
        if not site.enabled:
            return {"skipped": "intake.woocommerce is not enabled"}
        client = WooRefundsClient(site.url, os.environ.get(site.consumer_key_env, ""),
                                  os.environ.get(site.consumer_secret_env, ""), timeout=site.timeout_seconds)  # fmt: skip
    return website_refunds(engine, client, settings, now, actor=actor)


@task(name="land-platform-ratings", cache_policy=NO_CACHE)
def platform_ratings_task(engine: Engine, client, now: datetime) -> dict:
    """Buyers' ratings on the platform (TOP taobao.traderates.get) into the feedback queue, re-read over
    ``[feedback] platform_rating_lookback_days`` (each stored once); only when the taobao channel is enabled (or
    a client is given)."""
    from datetime import timedelta

    from connectors.registry import build_connector
    from connectors.taobao_rates import fetch_rates

    settings = get_settings()
    if client is None:
        if not settings.intake.taobao.enabled:
            return {"skipped": "intake.taobao is not enabled"}
        client = build_connector("taobao", settings).client()
    records = fetch_rates(client, now - timedelta(days=settings.feedback.platform_rating_lookback_days), now)
    with for_writing(engine).begin() as conn:
        return land_feedback(conn, "platform", records, settings, now)


@task(name="assess-aftersales-cases", **_retry)
def assess_task(engine: Engine, now: datetime, actor: str) -> dict:
    with for_writing(engine).begin() as conn:
        return assess_open_cases(conn, get_settings(), now, actor=actor)


@task(name="issue-return-waybills", cache_policy=NO_CACHE)
def return_waybills_task(engine: Engine, carrier, carrier_api_url: str | None, now: datetime) -> dict:
    from connectors.carrier_shipping import CarrierShippingClient

    settings = get_settings()
    policy = settings.fulfilment
    client = carrier or CarrierShippingClient(carrier_api_url or policy.carrier_api_url,
                                              timeout=policy.carrier_api_timeout_seconds,
                                              attempts=policy.carrier_api_attempts)  # fmt: skip
    with for_writing(engine).begin() as conn:
        return issue_return_waybills(conn, client, settings, now)


@task(name="track-return-parcels", cache_policy=NO_CACHE)
def track_returns_task(engine: Engine, tracker, query_url: str | None, now: datetime) -> dict:
    """Return parcels: Kuaidi100 pushes the tracking receiver landed first, then polling with the tracking area's
    account ([tracking]; polling skipped without one)."""
    import os

    from tasks.tracking.polling import make_client

    settings = get_settings()
    policy = settings.tracking
    with for_writing(engine).begin() as conn:
        pushed = apply_return_pushes(conn, now)
    if tracker is None:
        if not all(os.environ.get(name) for name in (policy.customer_env, policy.key_env)):
            return {"pushes": pushed, "skipped": "no Kuaidi100 account ([tracking] customer_env/key_env not set)"}
        with make_client(policy, query_url=query_url) as client, for_writing(engine).begin() as conn:
            return {"pushes": pushed, **track_returns(conn, client, settings, now)}
    with for_writing(engine).begin() as conn:
        return {"pushes": pushed, **track_returns(conn, tracker, settings, now)}


@task(name="restock-returns", **_retry)
def restock_task(engine: Engine, now: datetime, actor: str) -> dict:
    with for_writing(engine).begin() as conn:
        return restock_returns(conn, now, actor=actor)


@task(name="send-refunds", cache_policy=NO_CACHE)
def refunds_task(engine: Engine, clients: dict | None, now: datetime) -> dict:
    settings = get_settings()
    with for_writing(engine).begin() as conn:
        return send_refunds(conn, clients or make_refund_clients(settings.aftersales), settings, now)


@task(name="book-service-jobs", **_retry)
def service_task(engine: Engine, now: datetime) -> dict:
    with for_writing(engine).begin() as conn:
        made = create_jobs(conn, get_settings(), now)
        booked = schedule_jobs(conn, get_settings(), now)
    return {"created": made, "booked": booked}


@task(name="feedback-deadlines", **_retry)
def feedback_alerts_task(engine: Engine, now: datetime) -> dict:
    with for_writing(engine).begin() as conn:
        return raise_alerts(conn, get_settings(), now)


@task(name="send-surveys", **_retry)
def surveys_task(engine: Engine, now: datetime) -> int:
    with for_writing(engine).begin() as conn:
        return send_surveys(conn, get_settings(), now)


def after_sales_cycle(run: Run, *, engine: Engine | None = None, now: datetime | None = None,
                      actor: str | None = None, inbox: Path | None = None, clients: dict | None = None,
                      carrier=None, carrier_api_url: str | None = None, website=None, tracker=None,
                      tracking_query_url: str | None = None, platform=None, mailbox=None) -> dict:  # fmt: skip
    """The after-sales steps in order, one transaction each; returns what each did."""
    engine = engine or get_engine()
    require_store(engine)
    now, actor = now or utc_now(), actor or current_actor()
    return {
        "inbox": run(land_inbox_task, engine, inbox or inbox_dir(), now, actor),
        "service_mailbox": run(service_mailbox_task, engine, mailbox, now),
        "order_mailbox": run(order_mailbox_task, engine, now),
        "website_refunds": run(website_refunds_task, engine, website, now, actor),
        "platform_ratings": run(platform_ratings_task, engine, platform, now),
        "assessed": run(assess_task, engine, now, actor),
        "return_waybills": run(return_waybills_task, engine, carrier, carrier_api_url, now),
        "return_parcels": run(track_returns_task, engine, tracker, tracking_query_url, now),
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
def after_sales(now: Moment = None, carrier_api_url: Url = None, tracking_query_url: Url = None) -> dict:
    """Scheduled after-sales cycle with its artifacts (open cases by age and type, feedback SLA, satisfaction).

    Args:
        now: Act as if it were this time (default: the clock).
        carrier_api_url: The carrier gateway for return waybills (default: [fulfilment].carrier_api_url).
        tracking_query_url: Kuaidi100's query URL for return parcels (default: [tracking].query_url).
    """
    engine = get_engine()
    result = after_sales_cycle(with_prefect, engine=engine, now=now, carrier_api_url=carrier_api_url,
                               tracking_query_url=tracking_query_url)
    tables = report_tables(engine, now or utc_now())
    for key, rows in tables.items():
        if rows:
            create_table_artifact(key=key, table=rows, description=f"after-sales: {key} (no personal data)")
    create_markdown_artifact(key="after-sales-summary", markdown="\n".join(
        f"- **{step}**: {value}" for step, value in result.items()), description="after-sales cycle")  # fmt: skip
    return result


# --- the technician's result form -----------------------------------------------------------------------------


class JobResult(BaseModel):
    job_no: str
    result: Literal["skip", "done", "needs_parts", "customer_absent", "rescheduled"] = "skip"
    note: str = Field("", max_length=500, description="What was done or why not")


@cache
def service_result_form() -> type:
    """The technicians' form model; made in the flow run, where Prefect is loaded (``yidi.steps``)."""
    from prefect.input import RunInput

    class ServiceResultForm(RunInput):
        technician: str = Field(..., min_length=1, max_length=100,
                                description="Who reports (recorded with the result)")  # fmt: skip
        results: list[JobResult]

    return ServiceResultForm


@flow(name="record-service-result", flow_run_name=run_name("service results", "day", when="%m-%d %H:%M"))
def record_service_results(day: Day = None, timeout_hours: Hours = 8, poll_interval: Seconds = 5) -> dict:
    """The technicians' form: the jobs booked for ``day`` wait in the run's pause form; Resume with a result per
    job (done, needs parts, customer absent, rescheduled). Also ``yidi aftersales service-result``.

    Args:
        day: The day of the booked jobs, YYYY-MM-DD. Empty: today (Asia/Shanghai).
        timeout_hours: How long the form waits for the technicians.
        poll_interval: Seconds between checks for the answer.
    """
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    require_store()
    engine = get_engine()
    when = date.fromisoformat(day) if day else utc_now().astimezone(BUSINESS_TZ).date()
    with engine.connect() as conn:
        jobs = read_frame(conn, select(service_jobs.c.job_no, service_jobs.c.kind, service_jobs.c.technician,
                                       orders.c.order_no, orders.c.ship_city, orders.c.ship_district)
                          .join(orders, orders.c.id == service_jobs.c.order_id)
                          .where(service_jobs.c.status == "scheduled", service_jobs.c.scheduled_date == when)
                          .order_by(service_jobs.c.technician, service_jobs.c.job_no))  # fmt: skip
    if jobs.empty:
        return {"day": str(when), "jobs": 0, "recorded": []}
    description = "\n".join([f"### 上门服务 {when}（北京时间）", "", "| job | kind | technician | order | area |",
                             "|---|---|---|---|---|"] + [
        f"| {r['job_no']} | {r['kind']} | {r['technician']} | {r['order_no']} | {r['ship_city']}{r['ship_district']} |"
        for r in jobs.to_dict("records")])  # fmt: skip
    initial = service_result_form().with_initial_data(description=description, technician="",
                                                  results=[JobResult(job_no=j) for j in jobs["job_no"]])  # fmt: skip
    try:
        form = pause_flow_run(wait_for_input=initial, timeout=int(timeout_hours * 3600), poll_interval=poll_interval)
    except FlowPauseTimeout:
        return {"day": str(when), "jobs": len(jobs), "recorded": [], "timed_out": True}
    recorded = []
    for item in form.results:
        if item.result == "skip" or item.job_no not in set(jobs["job_no"]):
            continue
        with for_writing(engine).begin() as conn:
            outcome = record_result(conn, item.job_no, item.result, utc_now(), note=item.note or None,
                                    actor=f"technician:{form.technician}")  # fmt: skip
        recorded.append(outcome)
    if recorded:
        create_table_artifact(key="service-results", table=recorded, description=f"service results {when}")
    return {"day": str(when), "jobs": len(jobs), "recorded": recorded}
