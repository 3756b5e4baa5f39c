"""The automated first review of a chunk of orders (V1–V5): the step ``flows/review.py`` runs per chunk.

1. load the chunk's orders and lines, the catalog, the customers, the purchase history of limited items and the
   customers' credit exposure from the store (``store.load_inputs``);
2. compute the store-dependent rules as columns (``columns.py``), validate them with the four Great Expectations
   suites (``expectations/``), map failures back to orders by id (``rules.evaluate``);
3. decide: any reject-severity finding → ``auto_rejected`` with every reason recorded and the customer told why
   (outbox); otherwise → ``pending_review`` with its findings attached and a deadline of X working days (V5);
   with ``[review] auto_approve_clean`` (off by default) an order without a needs_review finding goes on to
   ``approved`` in the same transaction (its own event, the customer told as for a reviewer's approval);
4. write checks, findings, state changes, deadlines and notices in one transaction per chunk (``write_chunk``).

An order's content is checked once (``review_checks`` is unique by order and content hash): re-running the review
changes nothing, while an order whose content changed at the source is checked again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, Engine, update

from tasks.review.columns import ReviewInputs, line_details
from tasks.review.rules import (
    ChunkSummary,
    Evaluation,
    content_key,
    customer_contacts,
    evaluate,
    order_context,
    review_deadline,
)
from tasks.review.store import checks_of_run, load_inputs
from yidi.bulk import chunked, frame_records, insert_rows, json_text, utc_now
from yidi.db import StoreAddress, engine_of
from yidi.lifecycle import OrderState, current_actor, record_events, transition_orders
from yidi.outbox import enqueue
from yidi.schema import orders
from yidi.schema_review import review_checks, review_findings
from yidi.settings import Settings, get_settings
from yidi.steps import NO_CACHE, task


def rule_messages(settings: Settings) -> dict[str, tuple[str, str]]:
    """Each rule's finding text (Chinese, English), as the suites' expectations carry it."""
    from expectations.engine import validator_for

    messages = {}
    for suite in validator_for(settings).suites.values():
        for expectation in suite.expectations:
            meta = expectation.meta or {}
            messages[meta["rule"]] = (meta["message_zh"], meta["message_en"])
    return messages


def write_chunk(conn: Connection, run_id: int, inputs: ReviewInputs, evaluation: Evaluation, settings: Settings,
                now: datetime) -> ChunkSummary:
    summary = ChunkSummary()
    orders_frame = inputs.orders.set_index("id", drop=False)
    decisions = evaluation.decisions.copy()
    decisions["content_key"] = [content_key(i, h) for i, h in
                                zip(decisions["order_id"], orders_frame.loc[decisions["order_id"], "content_hash"],
                                    strict=True)]  # fmt: skip
    credit = evaluation.columns.credit
    decisions["credit"] = [
        json_text({k: (bool(v) if k == "important" else int(v)) for k, v in credit.loc[oid].items()})
        if oid in credit.index else None
        for oid in decisions["order_id"]
    ]
    checks = decisions[["order_id", "content_key", "outcome", "reject_count", "review_count", "note_count",
                        "credit"]].assign(run_id=run_id, checked_at=now)  # fmt: skip
    insert_rows(conn, review_checks, checks, on_conflict=["order_id", "content_key"])
    mine = checks_of_run(conn, run_id, decisions)  # only checks this run created are acted on
    check_of = dict(zip(mine["order_id"].astype(int), mine["id"].astype(int), strict=True))
    summary.unchanged = len(decisions) - len(check_of)
    decisions = decisions[decisions["order_id"].isin(check_of)]
    if decisions.empty:
        return summary
    summary.checked = len(decisions)

    # Findings, with the lines (or credit figures) behind them.
    failures = evaluation.failures[evaluation.failures["order_id"].isin(check_of)]
    messages = rule_messages(settings)
    if not failures.empty:
        details = {}
        for rec in line_details(evaluation.columns, failures).itertuples(index=False):
            details[(int(rec.order_id), rec.reason_code)] = {"lines": rec.lines}
        for code in ("CREDIT_LIMIT_EXCEEDED", "CREDIT_OVERDUE"):
            for oid in failures.loc[failures["reason_code"] == code, "order_id"]:
                details[(int(oid), code)] = json.loads(decisions.set_index("order_id").at[oid, "credit"] or "{}")
        rows = pd.DataFrame({
            "check_id": failures["order_id"].map(check_of).to_numpy(),
            "order_id": failures["order_id"].to_numpy(),
            "rule": failures["rule"].to_numpy(),
            "reason_code": failures["reason_code"].to_numpy(),
            "severity": failures["severity"].to_numpy(),
            "area": failures["area"].to_numpy(),
            "message_zh": failures["rule"].map(lambda r: messages[r][0]).to_numpy(),
            "message_en": failures["rule"].map(lambda r: messages[r][1]).to_numpy(),
            "details": [json_text(details.get((int(o), c)))
                        for o, c in zip(failures["order_id"], failures["reason_code"], strict=True)],
        })  # fmt: skip
        insert_rows(conn, review_findings, rows, on_conflict=["check_id", "rule"])
        summary.by_reason.update(failures["reason_code"].value_counts().to_dict())

    # State changes (concurrency-safe: an order moved meanwhile is skipped, its check stays as a record).
    states = orders_frame["state"].astype(str)
    reasons_by_order = (
        failures.groupby("order_id")["reason_code"].agg(lambda s: sorted(set(s))) if not failures.empty
        else pd.Series(dtype=object)
    )  # fmt: skip
    rejected = decisions[decisions["outcome"] == OrderState.AUTO_REJECTED.value]
    pending = decisions[decisions["outcome"] == OrderState.PENDING_REVIEW.value]
    actor = current_actor()

    def details_for(ids):
        return [{"check_id": check_of[int(i)], "reasons": reasons_by_order.get(i, [])} for i in ids]

    to_reject = rejected[states.loc[rejected["order_id"]].to_numpy() != OrderState.AUTO_REJECTED.value]
    moved_rejected = transition_orders(
        conn, to_reject["order_id"].tolist(), OrderState.AUTO_REJECTED, actor=actor, skip_illegal=True,
        reason="自动审核未通过 / automated review failed", details=details_for(to_reject["order_id"]),
    ).moved if not to_reject.empty else []  # fmt: skip
    to_pend = pending[states.loc[pending["order_id"]].to_numpy() != OrderState.PENDING_REVIEW.value]
    moved_pending = transition_orders(
        conn, to_pend["order_id"].tolist(), OrderState.PENDING_REVIEW, actor=actor, skip_illegal=True,
        reason="自动审核通过，待人工审核 / passed automated review, pending manual review",
        details=details_for(to_pend["order_id"]),
    ).moved if not to_pend.empty else []  # fmt: skip
    moved_approved = []
    if moved_pending and settings.review.auto_approve_clean:  # the seller's policy: clean orders need no person
        clean = set(decisions.loc[(decisions["review_count"] == 0) & (decisions["reject_count"] == 0),
                                  "order_id"].astype(int))  # fmt: skip
        to_approve = [oid for oid in moved_pending if int(oid) in clean]
        moved_approved = transition_orders(
            conn, to_approve, OrderState.APPROVED, actor=actor, skip_illegal=True,
            reason="自动审核全部通过，按政策自动批准 / passed every automated check, approved by policy "
                   "([review] auto_approve_clean)", details=details_for(to_approve),
        ).moved if to_approve else []  # fmt: skip
        if moved_approved:
            summary.notices += queue_approval_notices(conn, orders_frame.loc[list(moved_approved)], check_of,
                                                      settings)  # fmt: skip
        approved_now = {int(oid) for oid in moved_approved}
        moved_pending = [oid for oid in moved_pending if int(oid) not in approved_now]
    if moved_pending:
        due = review_deadline(now, settings)
        for chunk in chunked(moved_pending):
            conn.execute(update(orders).where(orders.c.id.in_(chunk)).values(review_due_at=due))
    # Re-checks that keep the state (changed content, same verdict) still leave an event with the new reasons.
    stayed = decisions[(states.loc[decisions["order_id"]].to_numpy() == decisions["outcome"].to_numpy())]
    if not stayed.empty:
        record_events(conn, pd.DataFrame({
            "order_id": stayed["order_id"].to_numpy(), "kind": "review",
            "reason": "订单内容变更后重新自动审核 / re-checked after a change at the source",
            "details": details_for(stayed["order_id"]),
        }), actor=actor)  # fmt: skip
    summary.auto_rejected = len(moved_rejected) + int((stayed["outcome"] == OrderState.AUTO_REJECTED.value).sum())
    summary.auto_approved = len(moved_approved)
    summary.pending_review = len(moved_pending) + int((stayed["outcome"] == OrderState.PENDING_REVIEW.value).sum())
    summary.unchanged += len(decisions) - summary.auto_rejected - summary.pending_review - summary.auto_approved

    # Customers of (newly) auto-rejected orders hear why: every reject reason (P2, V5).
    notify_ids = list(moved_rejected) + stayed.loc[stayed["outcome"] == OrderState.AUTO_REJECTED.value,
                                                   "order_id"].astype(int).tolist()  # fmt: skip
    if notify_ids:
        summary.notices = queue_rejection_notices(conn, orders_frame.loc[notify_ids], failures, check_of, messages,
                                                  settings)  # fmt: skip
    return summary


def _decision_notices(orders: pd.DataFrame, check_of: dict, settings: Settings, template: str, decided: str,
                      extra) -> tuple[list[dict], list[int]]:  # fmt: skip
    """One notice per order and contact medium (``template``, keyed by the decision and the check that made it;
    ``extra(order_id)`` adds to each order's context), and the orders with no contact at all."""
    contacts = customer_contacts(orders, settings)
    records = orders.set_index("id", drop=False)
    contexts = {int(oid): {**order_context(row), **extra(oid)}
                for oid, row in zip(records["id"], frame_records(records), strict=True)}  # fmt: skip
    notices = [{
        "order_id": oid, "medium": medium, "recipient": recipient, "template": template,
        "context": contexts[oid], "dedupe_key": f"review:{decided}:{oid}:{check_of[oid]}:{medium}",
    } for oid, medium, recipient in zip(contacts["order_id"].astype(int), contacts["medium"], contacts["recipient"],
                                        strict=True)]  # fmt: skip
    return notices, sorted(set(orders["id"].astype(int)) - set(contacts["order_id"]))


def queue_rejection_notices(conn, rejected_orders: pd.DataFrame, failures: pd.DataFrame, check_of: dict,
                            messages: dict, settings: Settings) -> int:
    reject = failures[failures["severity"] == "reject"]
    reasons = reject.groupby("order_id")["rule"].agg(
        lambda rules: list(dict.fromkeys(messages[r][0] for r in sorted(rules)))
    )
    notices, unreachable = _decision_notices(rejected_orders, check_of, settings, "order_auto_rejected",
                                             "auto_rejected", lambda oid: {"reasons": reasons.get(oid, [])})
    if unreachable:
        record_events(conn, pd.DataFrame({
            "order_id": unreachable, "kind": "notification",
            "reason": "客户无可用的手机号码或邮箱，未能自动通知，请人工联系 / no customer contact: follow up by hand",
        }))  # fmt: skip
    return enqueue(conn, pd.DataFrame(notices)) if notices else 0


def queue_approval_notices(conn, approved_orders: pd.DataFrame, check_of: dict, settings: Settings) -> int:
    """Customers of orders approved by policy hear it as from a reviewer (``order_approved``), when the policy
    tells customers of approvals at all ([notifications].notify_on_approval)."""
    if not settings.notifications.notify_on_approval:
        return 0
    notices, _unreachable = _decision_notices(approved_orders, check_of, settings, "order_approved",
                                              "auto_approved", lambda oid: {"reason": "", "proposed_solution": ""})
    return enqueue(conn, pd.DataFrame(notices)) if notices else 0


def review_chunk(engine: Engine, order_ids: Sequence[int], run_id: int, run_key: str, index: int = 0, *,
                 settings: Settings | None = None, now: datetime | None = None,
                 keep_results: bool = True) -> tuple[ChunkSummary, pd.DataFrame]:
    """Load, evaluate and write one chunk in one transaction. Returns the summary and per-expectation stats."""
    settings = settings or get_settings()
    now = now or utc_now()
    with engine.begin() as conn:
        inputs = load_inputs(conn, order_ids, settings, now)
        if inputs.orders.empty:
            return ChunkSummary(), pd.DataFrame()
        evaluation = evaluate(inputs, settings)
        summary = write_chunk(conn, run_id, inputs, evaluation, settings, now)
    if keep_results and summary.checked:
        from expectations.engine import keep_results as keep

        keep(evaluation.outcome, run_key, f"chunk{index:04d}")
    return summary, evaluation.stats


@task(name="review-chunk", retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def review_chunk_task(engine: Engine | StoreAddress, order_ids: list[int], run_id: int, run_key: str, index: int, *,
                      settings: Settings, now: datetime | None = None, keep_results: bool = True) -> dict:
    """One chunk of the automated review (a failed chunk rolls back whole and is retried). In a Dask worker the
    store arrives as a ``StoreAddress`` and the worker opens its own engine."""
    summary, stats = review_chunk(engine_of(engine), order_ids, run_id, run_key, index, settings=settings, now=now,
                                  keep_results=keep_results)  # fmt: skip
    return {"summary": summary.as_dict(), "stats": stats.to_dict("records")}


def build_data_docs(run_key: str, settings: Settings) -> str:
    """The run's Great Expectations Data Docs (offline HTML); returns the index path."""
    from expectations.engine import build_data_docs as build

    return str(build(run_key, settings=settings))
