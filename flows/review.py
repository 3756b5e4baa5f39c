"""Review flows (V5, V6): the automated first pass after each ingest, the manual review form in the Prefect UI, and
the hourly deadline check.

One composition: ``automated_review(run, ...)`` is the automated review's only step list. The ``auto-review`` flow
runs it with ``flows.compose.with_prefect`` (each chunk a Prefect task run with retries) and adds the artifacts and
the prompt sending of customer notices; ``yidi review run`` and the tests run the same list with ``in_process``.

Transaction scope: one transaction per chunk. A chunk's inputs are read, evaluated and written (checks, findings,
state changes, deadlines, customer notices) in one transaction, so a failed chunk leaves nothing behind and its
retry starts clean; chunks already written stay (re-running the review skips them: a check is unique by order and
content). Selecting the candidates reads outside any write; the run record is opened and closed in short
transactions of their own. ``check-review-deadlines`` is one step (``tasks.review.deadlines.check_deadlines``) in
one transaction; the CLI's ``yidi review deadlines`` calls the same step. A reviewer's decision (form or CLI) is one
transaction per order (``tasks.review.decisions.apply_decision``).

``review_orders`` shows pending orders with their findings in the run's form and waits for the reviewer; it is
answered through the UI's Resume button, or from a program through the same input path
(``resume_flow_run(flow_run_id, run_input=...)``, as ``demo/review.py`` does for ``make demo`` and the tests).
A deployment's run (the ``review-orders`` Run button) is suspended while it waits: no worker process is held, and
Resume reschedules it; it then starts again from the top and reads back what it kept with the run (``RunMemory``:
the slice, each page as shown, each answer, each page's outcome), so nothing is decided twice. A run that cannot be
suspended (a subflow, as in ``make demo``; a run without a deployment) pauses and waits in its process.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Annotated, Literal

import pandas as pd
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from expectations.reasons import REASONS
from flows.compose import (
    Run,
    all_settled,
    configured_runner_option,
    require_store,
    side_by_side,
    store_for_steps,
    with_prefect,
)
from flows.naming import run_name
from flows.params import OptionalCount, OrderChannel, Seconds
from tasks.review.automated import build_data_docs, review_chunk_task
from tasks.review.deadlines import check_deadlines
from tasks.review.decisions import DecisionResult, apply_decision
from tasks.review.rules import (
    ChunkSummary,
    InvalidDecision,
    backlog_by_age,
    credit_amounts,
    credit_summary,
    merge_stats,
    validate_decision,
)
from tasks.review.store import (
    current_findings,
    finish_run,
    latest_checks,
    pending_orders,
    run_stats,
    select_candidates,
    start_run,
)
from yidi.bulk import chunked, utc_now
from yidi.db import get_engine
from yidi.masking import mask_address, mask_name, mask_phone
from yidi.money import yuan_text
from yidi.settings import Settings, get_settings
from yidi.staff import NotPermitted, StaffPolicy, act_as
from yidi.steps import create_markdown_artifact, create_table_artifact, flow, flow_run_id, get_run_logger
from yidi.workdays import BUSINESS_TZ

# --- automated review ----------------------------------------------------------------------------------------------


def automated_review(run: Run, *, engine: Engine, settings: Settings, order_ids: Sequence[int] | None = None,
                     now: datetime | None = None, flow_run_id: str | None = None, build_docs: bool | None = None,
                     keep_results: bool = True) -> dict:
    """The automated review's steps, in order (V5): candidates, a run record, each chunk, Data Docs, the record
    closed. The ``auto-review`` flow runs them with ``with_prefect``; ``yidi review run`` and the tests with
    ``in_process``. Nothing to review leaves no run record. A failing chunk marks the run failed and re-raises."""
    with engine.connect() as conn:
        candidates = run(select_candidates, conn, order_ids)
    if not candidates:
        return {"run_id": None, "run_key": None, "candidates": 0, **ChunkSummary().as_dict(), "data_docs": None}
    run_id, run_key = run(start_run, engine, "auto", flow_run_id)
    total, stats = ChunkSummary(), []
    # Chunks side by side on PostgreSQL (issue 17): their orders are disjoint, a check is unique by order and
    # content, and state changes are conditional, so two chunks (or two overlapping runs) never decide twice.
    chunk_run, store = side_by_side(run, engine), store_for_steps(engine)
    try:
        started = [chunk_run(review_chunk_task, store, chunk, run_id, run_key, index, settings=settings, now=now,
                             keep_results=keep_results)
                   for index, chunk in enumerate(chunked(candidates, settings.review.chunk_size))]  # fmt: skip
        for result in all_settled(started):
            total.add(ChunkSummary.from_dict(result["summary"]))
            stats.append(pd.DataFrame(result["stats"]))
    except Exception:
        run(finish_run, engine, run_id, total, merge_stats(stats), status="failed")
        raise
    docs = None
    if (settings.review.build_data_docs if build_docs is None else build_docs) and total.checked and keep_results:
        docs = run(build_data_docs, run_key, settings)
    run(finish_run, engine, run_id, total, merge_stats(stats), data_docs=docs)
    return {"run_id": run_id, "run_key": run_key, "candidates": len(candidates), **total.as_dict(),
            "data_docs": docs}  # fmt: skip


@flow(name="auto-review", flow_run_name=run_name("auto-review"), task_runner=configured_runner_option())
def auto_review(order_ids: Annotated[list[int] | None, Field(examples=[[101, 102]])] = None,
                send: bool = True) -> dict:
    """Automated first review (V5) of every received order (or the ones given), in chunks; right after ingest.

    Args:
        order_ids: Only these orders (ids, as `yidi order show` prints them). Empty: every received order.
        send: Send the customer notices of auto-rejected orders right away (off: the next send-notifications run).
    """
    require_store()
    logger = get_run_logger()
    engine = get_engine()
    result = automated_review(with_prefect, engine=engine, settings=get_settings(), order_ids=order_ids,
                              flow_run_id=flow_run_id())  # fmt: skip
    if not result["candidates"]:
        logger.info("no orders waiting for the automated review")
        return result
    total = ChunkSummary.from_dict(result)
    with engine.connect() as conn:
        stats = run_stats(conn, result["run_id"])
    _review_artifacts(total, stats, result["data_docs"])
    if send and total.notices:
        from flows.notifications import send_notifications

        send_notifications(return_state=True)  # a dead relay fails that run, not this one's decisions
    logger.info("automated review: %s checked, %s auto-rejected, %s pending review%s", total.checked,
                total.auto_rejected, total.pending_review,
                f", {total.auto_approved} approved by policy ([review] auto_approve_clean)"
                if total.auto_approved else "")  # fmt: skip
    return result


def _review_artifacts(total: ChunkSummary, stats: pd.DataFrame, docs: str | None) -> None:

    create_table_artifact(
        key="review-decisions",
        table=[{"decision": "auto_rejected", "orders": total.auto_rejected},
               {"decision": "pending_review", "orders": total.pending_review},
               *([{"decision": "approved by policy (auto_approve_clean)", "orders": total.auto_approved}]
                 if get_settings().review.auto_approve_clean else []),
               {"decision": "unchanged (already checked / moved meanwhile)", "orders": total.unchanged}],
        description="Automated review: orders by decision",
    )  # fmt: skip
    rows = failures_by_reason(stats)
    create_table_artifact(key="review-failures-by-reason", table=rows or [{"reason_code": "-", "orders": 0}],
                          description="Automated review: failing orders per reason code (one order can fail several; "
                                      "codes no order failed are left out)")  # fmt: skip
    _backlog_artifact()
    create_markdown_artifact(
        key="review-data-docs",
        markdown=f"Great Expectations Data Docs (offline): `{docs}`" if docs else "Data Docs not built for this run.",
        description="Validation results of the review suites",
    )


def failures_by_reason(stats: pd.DataFrame) -> list[dict]:
    """Rows of the review-failures-by-reason artifact, most failing first; codes with no failing order left out
    (seen: 38 rows, most of them 0, the few that matter lost among them)."""
    if stats.empty:
        return []
    by_code = stats.groupby(["reason_code", "severity"], as_index=False)["unexpected_count"].sum()
    by_code = by_code[by_code["unexpected_count"] > 0].sort_values(["unexpected_count", "reason_code"],
                                                                   ascending=[False, True])  # fmt: skip
    return [{"reason_code": rec.reason_code, "area": REASONS[rec.reason_code].area, "severity": rec.severity,
             "orders": int(rec.unexpected_count), "message": REASONS[rec.reason_code].zh}
            for rec in by_code.itertuples(index=False)]  # fmt: skip


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


@cache
def review_form_base() -> type:
    """The pause form's input model; made in the flow run, where Prefect is loaded (``yidi.steps``)."""
    from prefect.input import RunInput

    class ReviewForm(RunInput):
        reviewer: str = Field(..., min_length=1, max_length=100,
                              description="Your name (recorded with each decision)")  # fmt: skip
        decisions: list[OrderDecision]

    return ReviewForm


# What markdown reads inside a line (emphasis, code, links, html, tables, strike-through); our text never starts one.
_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|~"})


def md(text) -> str:
    """Text from an order or a reviewer, safe inside markdown: ``199****3662`` stays ``199****3662`` when rendered
    (unescaped, markdown reads the asterisks as emphasis and shows ``1993662``)."""
    return "" if text is None or (not isinstance(text, str) and pd.isna(text)) else str(text).translate(_MARKDOWN_SPECIAL)


def refused_banner(problems: list[str] | None) -> str:
    """The reason a submission was refused, for the top of the form (markdown)."""
    if not problems:
        return ""
    return "⚠ **Input refused — nothing was applied; the orders are still pending.** " + " ".join(
        f"({i}) {md(p)}" for i, p in enumerate(problems, 1))


def review_markdown(page: pd.DataFrame, findings: pd.DataFrame, problems: list[str] | None = None,
                    credit: dict[int, str] | None = None, waiting_since: datetime | None = None) -> str:
    """The form's text: each order with its (masked, markdown-escaped) customer data and every finding."""
    lines = []
    if problems:
        lines += ["### ⚠ Input refused — nothing was applied; the orders are still pending", ""]
        lines += [f"- {md(p)}" for p in problems] + [""]
    if waiting_since is not None:
        lines += [f"Waiting for a reviewer since {waiting_label(waiting_since)}.", ""]
    lines += ["Decide each order: **approve**, **reject** (reason and proposed solution required: the customer "
              "receives both), or **skip** (stays pending). Personal data is masked here; `yidi review show ORDER` "
              "shows it in full.", ""]  # fmt: skip
    by_order = {oid: group for oid, group in findings.groupby("order_id")} if not findings.empty else {}
    for row in page.itertuples(index=False):
        due = pd.Timestamp(row.review_due_at).tz_convert("Asia/Shanghai").strftime("%Y-%m-%d %H:%M") \
            if row.review_due_at is not None and not pd.isna(row.review_due_at) else "—"  # fmt: skip
        address = f"{row.ship_province or ''}{row.ship_city or ''}{row.ship_district or ''}{mask_address(row.ship_detail)}"
        total = yuan_text(row.order_total_fen, grouping=True, symbol=True)
        lines += [
            f"#### {md(row.order_no)} · {md(total)} · {md(row.channel)} · {md(row.payment_method or '—')} · "
            f"due {due} (Asia/Shanghai)",
            f"{md(mask_name(row.customer_name))} · {md(mask_phone(row.customer_phone))} · {md(address)} · "
            f"region {md(row.region)}",
        ]
        if (credit or {}).get(row.id):
            lines.append(f"- {md(credit[row.id])}")
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
                        exposure, limit, overdue = credit_amounts(detail)
                        extra = f" (exposure {exposure} vs limit {limit}, overdue {overdue})"
                lines.append(f"- `{item.reason_code}` \\[{item.severity}\\] {md(item.message_zh)} / "
                             f"{md(item.message_en)}{md(extra)}")
    # one paragraph per line: the Resume dialog's markdown would join single lines into one run-on paragraph
    return "\n\n".join(line for line in lines if line)


def waited(since: datetime) -> str:
    """``2 h 5 min``: how long since ``since``."""
    minutes = max(0, int((utc_now() - since).total_seconds() // 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def waiting_label(since: datetime) -> str:
    """``2026-12-05 09:30 (Asia/Shanghai), 2 h 5 min ago``."""
    return f"{pd.Timestamp(since).tz_convert(BUSINESS_TZ):%Y-%m-%d %H:%M} (Asia/Shanghai), {waited(since)} ago"


def review_form(orders_text: str, order_nos: Sequence[str], problems: list[str] | None = None) -> type:
    """The form for one page, with its initial data. Seen (issue 15): the Prefect UI's Resume dialog does not show
    the input's description (and ``RunInput.with_initial_data`` drops the fields' own descriptions), so what the
    reviewer decides on goes where the dialog shows it, in the fields' descriptions: the refusal reason (if any) on
    the first field, at the top of the form; every order's details and findings on the decisions."""
    from pydantic import create_model

    reviewer_help = "Your staff name or login (a listed reviewer; recorded with each decision)"
    if problems:
        reviewer_help = f"{refused_banner(problems)}\n\n{reviewer_help}"
    model = create_model(
        "ReviewForm", __base__=review_form_base(),
        reviewer=(str, Field("", min_length=1, max_length=100, description=reviewer_help)),
        decisions=(list[OrderDecision], Field([OrderDecision(order_no=no) for no in order_nos],
                                              description=orders_text)),
    )  # fmt: skip
    model._description = orders_text  # the input's description too (API readers, `demo.review`)
    return model


def check_form(form, page: pd.DataFrame, staff: StaffPolicy | None = None) -> list[str]:
    """Problems with the reviewer's input (any problem refuses the whole form)."""
    problems = []
    try:  # the reviewer must be listed staff with the reviewer role (issue 20)
        act_as(staff or get_settings().staff, "review", form.reviewer or "-")
    except NotPermitted as exc:
        problems.append(str(exc))
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


ReasonCode = Literal[tuple(REASONS)]  # type: ignore[valid-type]  (the Run form offers every reason code)


def review_slice(conn, pending: pd.DataFrame, *, channel: str | None = None, min_age_hours: float | None = None,
                 min_total_yuan: float | None = None, max_total_yuan: float | None = None,
                 reason_code: str | None = None) -> pd.DataFrame:
    """The pending orders a reviewer asked for: one channel, waiting at least so long, an amount band, one finding."""
    keep = pd.Series(True, index=pending.index)
    if channel:
        keep &= pending["channel"] == channel
    if min_age_hours:
        keep &= pd.to_datetime(pending["order_time"], utc=True) <= pd.Timestamp(utc_now()) - pd.Timedelta(
            hours=min_age_hours)
    if min_total_yuan is not None:
        keep &= pending["order_total_fen"] >= round(min_total_yuan * 100)
    if max_total_yuan is not None:
        keep &= pending["order_total_fen"] <= round(max_total_yuan * 100)
    chosen = pending[keep]
    if reason_code and not chosen.empty:
        findings = current_findings(conn, chosen["id"].tolist())
        chosen = chosen[chosen["id"].isin(findings.loc[findings["reason_code"] == reason_code, "order_id"])]
    return chosen


@flow(name="review-orders", flow_run_name=run_name("review", "channel", "reason_code", when="%m-%d %H:%M"))
def review_orders(limit: OptionalCount = None,
                  order_nos: Annotated[list[str] | None, Field(examples=[["YD-20261204-000123"]])] = None,
                  poll_interval: Seconds = 5, timeout_hours: Annotated[float | None, Field(gt=0, examples=[2])] = None,
                  channel: OrderChannel | None = None,
                  min_age_hours: Annotated[float | None, Field(ge=0, examples=[24])] = None,
                  min_total_yuan: Annotated[float | None, Field(ge=0, examples=[1000])] = None,
                  max_total_yuan: Annotated[float | None, Field(ge=0, examples=[5000])] = None,
                  reason_code: ReasonCode | None = None,
                  page_size: Annotated[int | None, Field(ge=1, le=100, examples=[10])] = None) -> dict:
    """Manual review (V6): pending orders with their findings, page by page, in the run's Resume form.

    Args:
        limit: At most this many orders in this run (earliest deadline first). Empty: every order in the slice.
        order_nos: Only these orders (order numbers or ids).
        poll_interval: Seconds between checks for the reviewer's answer.
        timeout_hours: How long each form waits; undecided orders simply stay pending. Empty: the policy's.
        channel: Only orders from this channel.
        min_age_hours: Only orders placed at least this many hours ago.
        min_total_yuan: Only orders of at least this amount (yuan).
        max_total_yuan: Only orders of at most this amount (yuan).
        reason_code: Only orders with this finding (e.g. ADDRESS_INCOMPLETE, CREDIT_LIMIT_EXCEEDED).
        page_size: Orders per form (1-100). Empty: the policy's [review].ui_batch_size.
    """
    require_store()
    logger = get_run_logger()
    settings = get_settings()
    engine = get_engine()
    timeout = int((timeout_hours or settings.review.pause_timeout_hours) * 3600)
    memory = RunMemory()

    def choose_slice() -> list[str]:
        with engine.connect() as conn:
            pending = pending_orders(conn, order_refs=order_nos)
            pending = review_slice(conn, pending, channel=channel, min_age_hours=min_age_hours,
                                   min_total_yuan=min_total_yuan, max_total_yuan=max_total_yuan,
                                   reason_code=reason_code)  # fmt: skip
        return pending["order_no"].head(limit).tolist() if limit else pending["order_no"].tolist()

    # Frozen at the run's first start: a suspended run starts again from the top when resumed, and must meet the
    # same pages (the orders decided on an earlier page are no longer pending by then).
    chosen = memory.once("yidi-review-slice", choose_slice)
    if not memory.resumed:
        logger.info("review: %d pending order(s) in this slice", len(chosen))
    applied, refused = [], []
    page_size = max(1, min(100, page_size or settings.review.ui_batch_size))
    for index, start in enumerate(range(0, len(chosen), page_size)):
        done = memory.get(f"yidi-review-page-{index}-done")
        if done is not None:  # decided before this run was suspended again
            applied += done["applied"]
            refused += done["refused"]
            continue
        outcome = _review_page(memory, index, chosen[start : start + page_size], engine, settings, timeout,
                               poll_interval)  # fmt: skip
        if outcome is None:
            return _finish_review(applied, refused, timed_out=True)
        memory.put(f"yidi-review-page-{index}-done", outcome)
        applied += outcome["applied"]
        refused += outcome["refused"]
    return _finish_review(applied, refused)


class RunMemory:
    """What a review run decided so far, kept with the flow run on the server (flow run inputs): a suspended run
    frees its worker and starts again from the top when resumed, so the slice, each page as shown and each page's
    outcome are read back instead of recomputed. ``resumed``: this start is not the run's first."""

    def __init__(self) -> None:
        from prefect.input.actions import read_flow_run_input

        self._read = read_flow_run_input
        self.resumed = self.get("yidi-review-slice") is not None

    def get(self, key: str):
        return self._read(key)

    def put(self, key: str, value) -> None:
        from prefect.input.actions import create_flow_run_input

        create_flow_run_input(key, value)

    def once(self, key: str, compute):
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value


def can_suspend() -> bool:
    """A top-level run of a deployment can be suspended (its worker freed, the run rescheduled when resumed); the
    server refuses to suspend a subflow (``make demo``'s review) or a run without a deployment (tests, scripts),
    which pause and wait in their process instead."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context else None
    return bool(run and run.deployment_id and not run.parent_task_run_id)


def _review_page(memory: RunMemory, index: int, page_nos: list[str], engine: Engine, settings: Settings,
                 timeout: int, poll_interval: int) -> dict | None:
    """One page of the form until its input passes the checks, then its decisions applied: the outcome
    (``applied``, ``refused``), or None when the form timed out (in a pausing run)."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run, suspend_flow_run
    from prefect.input.run_input import keyset_from_base_key

    logger = get_run_logger()
    suspend = can_suspend()

    def show() -> dict:
        with engine.connect() as conn:
            page = pending_orders(conn, order_refs=page_nos)
        return {"since": utc_now().isoformat(), "orders": page["order_no"].tolist(),
                "versions": [int(v) for v in page["version"]]}  # fmt: skip

    shown = memory.once(f"yidi-review-page-{index}-shown", show)
    waiting_since = datetime.fromisoformat(shown["since"])
    frozen = pd.DataFrame({"order_no": shown["orders"], "version": shown["versions"]})
    if frozen.empty:  # decided elsewhere before this page was shown
        return {"applied": [], "refused": []}
    problems: list[str] | None = None
    for attempt in range(1, 1000):
        key = f"review-{index}-{attempt}"
        keyset = keyset_from_base_key(f"{'suspended' if suspend else 'paused'}-{key}")
        with engine.connect() as conn:
            page = pending_orders(conn, order_refs=shown["orders"])
            findings = current_findings(conn, page["id"].tolist())
            checks = latest_checks(conn, page["id"].tolist())
        credit = {int(o): credit_summary(c) for o, c in zip(checks["order_id"], checks["credit"], strict=True)}
        description = review_markdown(page, findings, problems, credit, waiting_since=waiting_since)
        initial = review_form(description, shown["orders"], problems)
        replayed = False
        if memory.get(keyset["response"]) is not None:  # answered before this start (a resumed, suspended run)
            form = initial.load(keyset)
            replayed = memory.get(f"yidi-{key}-read") is not None  # this start is not the first to read it
            if not replayed:
                logger.info("review form answered by %s after %s", form.reviewer, waited(waiting_since))
                memory.put(f"yidi-{key}-read", True)
        else:
            logger.info("review form for %d order(s) (%s) waiting for a reviewer since %s%s", len(frozen),
                        ", ".join(shown["orders"][:5]) + (" …" if len(frozen) > 5 else ""),
                        waiting_label(waiting_since),
                        "; the run is suspended (no worker held) until Resume" if suspend else "")  # fmt: skip
            try:
                if suspend:
                    form = suspend_flow_run(wait_for_input=initial, timeout=timeout, key=key)
                else:
                    form = pause_flow_run(wait_for_input=initial, timeout=timeout, poll_interval=poll_interval,
                                          key=key)  # fmt: skip
            except FlowPauseTimeout:
                logger.warning("review form not answered in time; undecided orders stay pending")
                return None
            logger.info("review form answered by %s after %s", form.reviewer, waited(waiting_since))
        problems = check_form(form, frozen, settings.staff)
        if not problems:
            break
        if not replayed:
            logger.warning("review input refused: %s", "; ".join(problems))
    versions = dict(zip(frozen["order_no"], frozen["version"], strict=True))
    applied, refused = [], []
    for item in form.decisions:
        if item.decision == "skip":
            continue
        try:
            result = apply_decision(
                engine, item.order_no, item.decision, form.reviewer, reason=item.reason,
                proposed_solution=item.proposed_solution, source="ui", seen_version=int(versions[item.order_no]),
                flow_run_id=flow_run_id(), settings=settings,
            )  # fmt: skip
        except InvalidDecision as exc:  # e.g. a separated duty (issue 20): this order stays pending
            result = DecisionResult(item.order_no, False, "pending_review", str(exc))
        record = {"order_no": result.order_no, "decision": item.decision, "reviewer": form.reviewer,
                  "applied": result.applied, "state": result.state, "message": result.message}  # fmt: skip
        (applied if result.applied else refused).append(record)
        if not result.applied:
            logger.warning(result.message)
    return {"applied": applied, "refused": refused}


def _finish_review(applied: list[dict], refused: list[dict], timed_out: bool = False) -> dict:
    rows = applied + refused
    if rows:
        create_table_artifact(key="review-manual-decisions", table=rows,
                              description="Manual review decisions in this run (refused: another reviewer won or "
                                          "the order changed)")  # fmt: skip
    if any(r["applied"] for r in rows):
        from flows.notifications import send_notifications

        send_notifications(return_state=True)  # a dead relay fails that run, not this one's decisions
    get_run_logger().info("review: %d approved, %d rejected, %d refused (another reviewer won or the order changed)%s",
                          sum(r["decision"] == "approve" for r in applied),
                          sum(r["decision"] == "reject" for r in applied), len(refused),
                          "; the form timed out" if timed_out else "")  # fmt: skip
    return {"approved": sum(r["decision"] == "approve" for r in applied),
            "rejected": sum(r["decision"] == "reject" for r in applied),
            "refused": refused, "timed_out": timed_out}  # fmt: skip


# --- deadlines ----------------------------------------------------------------------------------------------------------


@flow(name="check-review-deadlines", flow_run_name=run_name("review deadlines"))
def check_review_deadlines(send: bool = True) -> dict:
    """Hourly: reminders before the review deadline, escalation after it (V6), backlog by age as an artifact.

    Args:
        send: Send the reminders and escalations right away (off: the next send-notifications run).
    """
    require_store()
    report = check_deadlines(get_engine(), settings=get_settings())
    backlog = _backlog_artifact(len(report.reminded), len(report.escalated))
    waiting = waiting_review_forms()
    for form in waiting:  # a suspended review run cannot say it itself: no process runs it while it waits
        get_run_logger().info("review form %s waiting for a reviewer for %s (since %s)", form["run"], form["waiting"],
                              form["since"])  # fmt: skip
    if send and (report.reminded or report.escalated):
        from flows.notifications import send_notifications

        send_notifications(return_state=True)  # a dead relay fails that run, not this one's decisions
    return {"reminded": report.reminded, "escalated": report.escalated, "backlog": backlog.to_dict("records"),
            "waiting_forms": waiting, "checked_at": utc_now().isoformat()}  # fmt: skip


def waiting_review_forms() -> list[dict]:
    """Review runs waiting for a reviewer (paused or suspended), oldest first: ``run`` (its name), ``since``
    (Asia/Shanghai, labelled) and ``waiting`` (``2 h 5 min``), counted from when the form was last shown."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["review-orders"])),
                                     flow_run_filter=paused)  # fmt: skip
    runs = sorted(runs, key=lambda r: r.state.timestamp)
    return [{"run": r.name, "since": f"{pd.Timestamp(r.state.timestamp).tz_convert(BUSINESS_TZ):%Y-%m-%d %H:%M} "
                                     "(Asia/Shanghai)", "waiting": waited(r.state.timestamp)} for r in runs]  # fmt: skip
