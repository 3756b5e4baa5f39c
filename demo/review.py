"""`make demo`'s reviewer: answers the ``review-orders`` form from a program, through the same input path as the
Prefect UI's Resume button (``resume_flow_run(flow_run_id, run_input=...)``), so the server validates the input
against the form's schema and the flow checks it exactly as for a person.

Used by ``lifecycle-demo`` (``demo_review``) and by the tests of the review form; production code never imports it.
"""

from __future__ import annotations

import json
import time
from uuid import UUID

from flows.review import review_orders


class ReviewRunEnded(RuntimeError):
    """The review run finished (or failed) instead of pausing again."""


def wait_until_paused(flow_run_id: UUID | str, timeout: float = 60, after_state: str | None = None) -> dict:
    """Block until the review run pauses for input (in a state other than ``after_state``); returns the form:
    ``flow_run_id``, ``state_id``, ``orders`` (order numbers offered), ``description`` (the markdown) and ``schema``
    (the form the Resume dialog draws, with the details in its fields' descriptions)."""
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
                        "description": description, "schema": schema}  # fmt: skip
            if state is not None and state.is_final():
                raise ReviewRunEnded(f"review run ended ({state.name})")
            time.sleep(0.3)
    raise TimeoutError(f"review run {flow_run_id} did not pause within {timeout:.0f}s")


def find_paused_review_run(timeout: float = 60, created_after=None) -> str:
    """The id of the newest ``review-orders`` run waiting for input (created after ``created_after``, if given),
    waiting up to ``timeout`` seconds."""
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
            runs = [r for r in runs if created_after is None or r.created >= created_after]
            if runs:
                return str(max(runs, key=lambda r: r.created).id)
            time.sleep(0.3)
    raise TimeoutError(f"no review-orders run paused within {timeout:.0f}s")


def run_review_session(decide, reviewer: str = "demo-reviewer", limit: int | None = None,
                       timeout: float = 120, order_nos: list[str] | None = None) -> dict:
    """Run ``review_orders`` here (inside a flow: as its subflow, so the parent's timeline has no gap) and answer
    each of its forms from a helper thread through the UI's input path: ``decide(orders_offered)`` returns the
    decisions (dicts with order_no, decision, reason, proposed_solution). For ``make demo``/scripts."""
    import threading
    from datetime import UTC, datetime, timedelta

    started = datetime.now(UTC) - timedelta(seconds=1)
    done = threading.Event()

    def answer_forms() -> None:
        deadline = time.monotonic() + timeout
        while not done.is_set() and time.monotonic() < deadline:
            try:
                run_id = find_paused_review_run(timeout=1, created_after=started)
            except TimeoutError:
                continue
            last = None
            while not done.is_set():
                try:
                    form = wait_until_paused(run_id, timeout=1, after_state=last)
                except TimeoutError:
                    continue
                except ReviewRunEnded:
                    return
                submit_review(run_id, reviewer, decide(form["orders"]))
                last = form["state_id"]
            return

    answerer = threading.Thread(target=answer_forms, name="demo-reviewer", daemon=True)
    answerer.start()
    try:
        return review_orders(limit=limit, order_nos=order_nos, poll_interval=1, timeout_hours=timeout / 3600)
    finally:
        done.set()
        answerer.join(10)


def orders_from_every_channel(count: int) -> list[str]:
    """``count`` pending orders taken in turn from each channel, each channel's earliest deadline first: the form's
    own order (earliest deadline first) would give the demo's reviewer only the channel whose orders came in first,
    so no platform or website order would ship and nothing would be confirmed back to them."""
    import pandas as pd
    from sqlalchemy import select

    from yidi.db import get_engine
    from yidi.schema import orders

    with get_engine().connect() as conn:
        pending = pd.DataFrame(conn.execute(
            select(orders.c.order_no, orders.c.channel).where(orders.c.state == "pending_review")
            .order_by(orders.c.review_due_at.is_(None), orders.c.review_due_at, orders.c.id)).all(),
            columns=["order_no", "channel"])  # fmt: skip
    turn = pending.groupby("channel", sort=False).cumcount()  # 0 for each channel's first order, 1 for its second...
    return pending.assign(turn=turn).sort_values("turn", kind="stable")["order_no"].head(count).tolist()


def demo_review(approve: int = 5, reject: int = 3, reviewer: str = "演示审核员") -> dict:
    """For ``make demo``: approve some pending orders and reject others (reason and proposed solution) through the
    review form's input path, as a reviewer in the Prefect UI would; the orders are taken from every channel in
    turn (``orders_from_every_channel``); the rest stay pending."""
    if approve + reject == 0:  # nothing to decide: no form to open
        return {"approved": 0, "rejected": 0, "refused": [], "timed_out": False}
    chosen = orders_from_every_channel(approve + reject)
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

    return run_review_session(decide, reviewer=reviewer, limit=approve + reject, order_nos=chosen)


def submit_review(flow_run_id: UUID | str, reviewer: str, decisions: list[dict]) -> None:
    """Resume a paused ``review_orders`` run with decisions, exactly as the UI form does. The server validates the
    input against the form's schema and refuses invalid input (the run stays paused)."""
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(UUID(str(flow_run_id)), run_input={"reviewer": reviewer, "decisions": decisions})
