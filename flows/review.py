"""Review flows (V5, V6): the automated first pass after each ingest, the manual review form in the Prefect UI, and
the hourly deadline check.

``review_orders`` shows pending orders with their findings in the run's pause form and waits for the reviewer.
Programs (and ``make demo``) answer through the same path as the UI's Resume button:
``submit_review(flow_run_id, reviewer, decisions)`` → ``resume_flow_run(flow_run_id, run_input=...)``.
"""

from __future__ import annotations

import json
import time
from typing import Literal
from uuid import UUID

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field

from tasks.review.steps import (
    ChunkSummary,
    InvalidDecision,
    apply_decision,
    backlog_by_age,
    check_deadlines,
    credit_summary,
    current_findings,
    finish_run,
    latest_checks,
    merge_stats,
    pending_orders,
    review_chunk_task,
    select_candidates,
    start_run,
    validate_decision,
)
from yidi.bulk import utc_now
from yidi.db import get_engine
from yidi.masking import mask_address, mask_name, mask_phone
from yidi.settings import get_settings


def _flow_run_id() -> str | None:
    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


# --- automated review ----------------------------------------------------------------------------------------------


@flow(name="auto-review")
def auto_review(order_ids: list[int] | None = None, send: bool = True) -> dict:
    """Automated first review (V5) of every received order (or the ones given), in chunks; right after ingest."""
    logger = get_run_logger()
    settings = get_settings()
    engine = get_engine()
    with engine.connect() as conn:
        candidates = select_candidates(conn, order_ids)
    if not candidates:
        logger.info("no orders waiting for the automated review")
        return {"candidates": 0, "checked": 0, "auto_rejected": 0, "pending_review": 0}
    run_id, run_key = start_run(engine, "auto", _flow_run_id())
    size = settings.review.chunk_size
    chunks = [candidates[i : i + size] for i in range(0, len(candidates), size)]
    total, stats = ChunkSummary(), []
    try:
        for index, chunk in enumerate(chunks):
            result = review_chunk_task(chunk, run_id, run_key, index)
            part = ChunkSummary(**{k: v for k, v in result["summary"].items() if k != "by_reason"})
            part.by_reason.update(result["summary"]["by_reason"])
            total.add(part)
            stats.append(pd.DataFrame(result["stats"]))
    except Exception:
        finish_run(engine, run_id, total, merge_stats(stats), status="failed")
        raise
    docs = None
    if settings.review.build_data_docs and total.checked:
        from expectations.engine import build_data_docs

        docs = str(build_data_docs(run_key, settings=settings))
    merged = merge_stats(stats)
    finish_run(engine, run_id, total, merged, data_docs=docs)
    _review_artifacts(total, merged, docs)
    if send and total.notices:
        from flows.notifications import send_notifications

        send_notifications()
    logger.info("automated review: %s checked, %s auto-rejected, %s pending review", total.checked,
                total.auto_rejected, total.pending_review)
    return {"run_key": run_key, "candidates": len(candidates), **total.as_dict(), "data_docs": docs}


def _review_artifacts(total: ChunkSummary, stats: pd.DataFrame, docs: str | None) -> None:
    from expectations.reasons import REASONS

    create_table_artifact(
        key="review-decisions",
        table=[{"decision": "auto_rejected", "orders": total.auto_rejected},
               {"decision": "pending_review", "orders": total.pending_review},
               {"decision": "unchanged (already checked / moved meanwhile)", "orders": total.unchanged}],
        description="Automated review: orders by decision",
    )  # fmt: skip
    rows = []
    if not stats.empty:
        by_code = stats.groupby(["reason_code", "severity"], as_index=False)["unexpected_count"].sum()
        for rec in by_code.sort_values("unexpected_count", ascending=False).itertuples(index=False):
            reason = REASONS[rec.reason_code]
            rows.append({"reason_code": rec.reason_code, "area": reason.area, "severity": rec.severity,
                         "orders": int(rec.unexpected_count), "message": reason.zh})  # fmt: skip
    create_table_artifact(key="review-failures-by-reason", table=rows or [{"reason_code": "-", "orders": 0}],
                          description="Automated review: failing orders per reason code (one order can fail several)")
    _backlog_artifact()
    create_markdown_artifact(
        key="review-data-docs",
        markdown=f"Great Expectations Data Docs (offline): `{docs}`" if docs else "Data Docs not built for this run.",
        description="Validation results of the review suites",
    )


def _backlog_artifact(reminded: int | None = None, escalated: int | None = None) -> pd.DataFrame:
    settings = get_settings()
    with get_engine().connect() as conn:
        pending = pending_orders(conn)
    backlog = backlog_by_age(pending, utc_now(), settings.review.reminder_hours_before)
    note = "" if reminded is None else f"; reminded now: {reminded}, escalated now: {escalated}"
    create_table_artifact(
        key="review-backlog",
        table=backlog.to_dict("records"),
        description=(f"Pending manual reviews by age against the deadline "
                     f"({settings.review.deadline_working_days} working days){note}"),
    )  # fmt: skip
    return backlog


# --- manual review in the Prefect UI ---------------------------------------------------------------------------------


class OrderDecision(BaseModel):
    order_no: str = Field(description="Order number as shown above")
    decision: Literal["approve", "reject", "skip"] = Field("skip", description="skip: leave it pending")
    reason: str = Field("", max_length=500, description="Rejection reason told to the customer")
    proposed_solution: str = Field("", max_length=500, description="What the customer can do (required to reject)")


class ReviewForm(RunInput):
    reviewer: str = Field(..., min_length=1, max_length=100, description="Your name (recorded with each decision)")
    decisions: list[OrderDecision]


def _money(fen) -> str:
    return f"¥{int(fen) / 100:,.2f}"


def review_markdown(page: pd.DataFrame, findings: pd.DataFrame, problems: list[str] | None = None,
                    credit: dict[int, str] | None = None) -> str:
    """The form's description: each order with its (masked) customer data and every finding."""
    lines = []
    if problems:
        lines += ["### ⚠ Input refused — nothing was applied; the orders are still pending", ""]
        lines += [f"- {p}" for p in problems] + [""]
    lines += ["Decide each order: **approve**, **reject** (reason and proposed solution required: the customer "
              "receives both), or **skip** (stays pending). Personal data is masked here; `yidi review show ORDER` "
              "shows it in full.", ""]  # fmt: skip
    by_order = {oid: group for oid, group in findings.groupby("order_id")} if not findings.empty else {}
    for row in page.itertuples(index=False):
        due = pd.Timestamp(row.review_due_at).tz_convert("Asia/Shanghai").strftime("%Y-%m-%d %H:%M") \
            if row.review_due_at is not None and not pd.isna(row.review_due_at) else "—"  # fmt: skip
        address = f"{row.ship_province or ''}{row.ship_city or ''}{row.ship_district or ''}{mask_address(row.ship_detail)}"
        lines += [
            f"#### {row.order_no} · {_money(row.order_total_fen)} · {row.payment_method or '—'} · due {due}",
            f"{mask_name(row.customer_name)} · {mask_phone(row.customer_phone)} · {address} · region {row.region}",
        ]
        if (credit or {}).get(row.id):
            lines.append(f"- {credit[row.id]}")
        group = by_order.get(row.id)
        if group is None or group.empty:
            lines.append("- no findings: passed every automated check")
        else:
            for item in group.itertuples(index=False):
                extra = ""
                if isinstance(item.details, str) and item.details:  # NULL reads back as NaN
                    detail = json.loads(item.details)
                    if "lines" in detail:
                        extra = f" (lines {', '.join(map(str, detail['lines']))})"
                    elif "exposure_fen" in detail:
                        extra = (f" (exposure {_money(detail['exposure_fen'])} vs limit {_money(detail['limit_fen'])},"
                                 f" overdue {_money(detail['overdue_fen'])})")  # fmt: skip
                lines.append(f"- `{item.reason_code}` [{item.severity}] {item.message_zh} / {item.message_en}{extra}")
        lines.append("")
    return "\n".join(lines)


def check_form(form: ReviewForm, page: pd.DataFrame) -> list[str]:
    """Problems with the reviewer's input (any problem refuses the whole form)."""
    problems = []
    known = set(page["order_no"])
    seen = set()
    for item in form.decisions:
        if item.order_no not in known:
            problems.append(f"{item.order_no!r} is not one of the orders in this form")
            continue
        if item.order_no in seen:
            problems.append(f"{item.order_no} appears twice")
        seen.add(item.order_no)
        if item.decision == "skip":
            continue
        try:
            validate_decision(item.decision, form.reviewer, item.reason, item.proposed_solution)
        except InvalidDecision as exc:
            problems.append(f"{item.order_no}: {exc}")
    return problems


@flow(name="review-orders")
def review_orders(limit: int | None = None, order_nos: list[str] | None = None, poll_interval: int = 5,
                  timeout_hours: float | None = None) -> dict:
    """Manual review (V6): pending orders with their findings, page by page, in the run's pause form."""
    logger = get_run_logger()
    settings = get_settings()
    engine = get_engine()
    timeout = int((timeout_hours or settings.review.pause_timeout_hours) * 3600)
    with engine.connect() as conn:
        pending = pending_orders(conn, limit=limit, order_refs=order_nos)
    applied, refused = [], []
    page_size = settings.review.ui_batch_size
    for start in range(0, len(pending), page_size):
        page = pending.iloc[start : start + page_size]
        problems: list[str] | None = None
        while True:
            with engine.connect() as conn:
                findings = current_findings(conn, page["id"].tolist())
                checks = latest_checks(conn, page["id"].tolist())
            credit = {int(o): credit_summary(c) for o, c in zip(checks["order_id"], checks["credit"], strict=True)}
            description = review_markdown(page, findings, problems, credit)
            initial = ReviewForm.with_initial_data(
                description=description, reviewer="",
                decisions=[OrderDecision(order_no=no) for no in page["order_no"]],
            )  # fmt: skip
            try:
                form = pause_flow_run(wait_for_input=initial, timeout=timeout, poll_interval=poll_interval)
            except FlowPauseTimeout:
                logger.warning("review form not answered in time; undecided orders stay pending")
                return _finish_review(applied, refused, timed_out=True)
            problems = check_form(form, page)
            if not problems:
                break
            logger.warning("review input refused: %s", "; ".join(problems))
        versions = dict(zip(page["order_no"], page["version"], strict=True))
        for item in form.decisions:
            if item.decision == "skip":
                continue
            result = apply_decision(
                engine, item.order_no, item.decision, form.reviewer, reason=item.reason,
                proposed_solution=item.proposed_solution, source="ui", seen_version=int(versions[item.order_no]),
                flow_run_id=_flow_run_id(), settings=settings,
            )  # fmt: skip
            record = {"order_no": result.order_no, "decision": item.decision, "reviewer": form.reviewer,
                      "applied": result.applied, "state": result.state, "message": result.message}  # fmt: skip
            (applied if result.applied else refused).append(record)
            if not result.applied:
                logger.warning(result.message)
    return _finish_review(applied, refused)


def _finish_review(applied: list[dict], refused: list[dict], timed_out: bool = False) -> dict:
    rows = applied + refused
    if rows:
        create_table_artifact(key="review-manual-decisions", table=rows,
                              description="Manual review decisions in this run (refused: another reviewer won or "
                                          "the order changed)")  # fmt: skip
    if any(r["applied"] for r in rows):
        from flows.notifications import send_notifications

        send_notifications()
    return {"approved": sum(r["decision"] == "approve" for r in applied),
            "rejected": sum(r["decision"] == "reject" for r in applied),
            "refused": refused, "timed_out": timed_out}  # fmt: skip


# --- answering the form from a program (same path as the UI's Resume button) ---------------------------------------


class ReviewRunEnded(RuntimeError):
    """The review run finished (or failed) instead of pausing again."""


def wait_until_paused(flow_run_id: UUID | str, timeout: float = 60, after_state: str | None = None) -> dict:
    """Block until the review run pauses for input (in a state other than ``after_state``); returns the form:
    ``flow_run_id``, ``state_id``, ``orders`` (order numbers offered) and ``description`` (the markdown)."""
    from prefect import get_client
    from prefect.input.run_input import keyset_from_paused_state

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(UUID(str(flow_run_id)))
            state = run.state
            if state is not None and state.is_paused() and str(state.id) != after_state:
                keyset = keyset_from_paused_state(state)
                try:
                    schema = json.loads(client.read_flow_run_input(run.id, keyset["schema"]))
                    description = json.loads(client.read_flow_run_input(run.id, keyset["description"]))
                except Exception:  # noqa: BLE001 - the form is saved just after the run pauses
                    time.sleep(0.2)
                    continue
                offered = [d["order_no"] for d in schema["properties"]["decisions"].get("default", [])]
                return {"flow_run_id": str(run.id), "state_id": str(state.id), "orders": offered,
                        "description": description}  # fmt: skip
            if state is not None and state.is_final():
                raise ReviewRunEnded(f"review run ended ({state.name})")
            time.sleep(0.3)
    raise TimeoutError(f"review run {flow_run_id} did not pause within {timeout:.0f}s")


def find_paused_review_run(timeout: float = 60) -> str:
    """The id of the newest ``review-orders`` run waiting for input, waiting up to ``timeout`` seconds."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["review-orders"])),
                                         flow_run_filter=paused)  # fmt: skip
            if runs:
                return str(max(runs, key=lambda r: r.created).id)
            time.sleep(0.3)
    raise TimeoutError(f"no review-orders run paused within {timeout:.0f}s")


def run_review_session(decide, reviewer: str = "demo-reviewer", limit: int | None = None,
                       timeout: float = 120) -> dict:
    """Run ``review_orders`` and answer each of its forms through the UI's input path: ``decide(orders_offered)``
    returns the decisions (dicts with order_no, decision, reason, proposed_solution). For ``make demo``/scripts."""
    import threading

    outcome: dict = {}

    def run():
        try:
            outcome["result"] = review_orders(limit=limit, poll_interval=1)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="review-orders", daemon=True)
    thread.start()
    try:
        run_id = find_paused_review_run(timeout)
        last = None
        while True:
            form = wait_until_paused(run_id, timeout, after_state=last)
            submit_review(run_id, reviewer, decide(form["orders"]))
            last = form["state_id"]
    except (ReviewRunEnded, TimeoutError):
        pass
    thread.join(timeout)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result", {})


def demo_review(approve: int = 5, reject: int = 3, reviewer: str = "演示审核员") -> dict:
    """For ``make demo``: approve some pending orders and reject others (reason and proposed solution) through the
    review form's input path, as a reviewer in the Prefect UI would; the rest stay pending."""
    left = {"approve": approve, "reject": reject}

    def decide(offered: list[str]) -> list[dict]:
        decisions = []
        for order_no in offered:
            if left["approve"] > 0:
                left["approve"] -= 1
                decisions.append({"order_no": order_no, "decision": "approve"})
            elif left["reject"] > 0:
                left["reject"] -= 1
                decisions.append({"order_no": order_no, "decision": "reject",
                                  "reason": "收货信息需要与您核实（演示）",
                                  "proposed_solution": "请核对收货地址和联系电话后重新下单，或致电客服为您修改"})  # fmt: skip
            else:
                decisions.append({"order_no": order_no, "decision": "skip"})
        return decisions

    return run_review_session(decide, reviewer=reviewer, limit=approve + reject)


def submit_review(flow_run_id: UUID | str, reviewer: str, decisions: list[dict]) -> None:
    """Resume a paused ``review_orders`` run with decisions, exactly as the UI form does. The server validates the
    input against the form's schema and refuses invalid input (the run stays paused)."""
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(UUID(str(flow_run_id)), run_input={"reviewer": reviewer, "decisions": decisions})


# --- deadlines ----------------------------------------------------------------------------------------------------------


@flow(name="check-review-deadlines")
def check_review_deadlines(send: bool = True) -> dict:
    """Hourly: reminders before the review deadline, escalation after it (V6), backlog by age as an artifact."""
    report = check_deadlines(get_engine(), settings=get_settings())
    backlog = _backlog_artifact(len(report.reminded), len(report.escalated))
    if send and (report.reminded or report.escalated):
        from flows.notifications import send_notifications

        send_notifications()
    return {"reminded": report.reminded, "escalated": report.escalated, "backlog": backlog.to_dict("records"),
            "checked_at": utc_now().isoformat()}  # fmt: skip
