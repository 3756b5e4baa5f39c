"""Assessment step (A3, P1, P2): every open case is decided by ``rules.assess`` on its order's facts; the decision
names its rule and citation, the customer is told, and the case moves on: a return or exchange waits for the
goods (return authorisation), a refund before receipt is queued for the provider, a repair waits for the
technician, a rejection closes the case and the order goes back to where it was.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Connection

from tasks.aftersales import store
from tasks.aftersales.refunds import queue_refunds
from tasks.aftersales.rules import DECISION_NAMES, assess, refund_route
from yidi.lifecycle import transition_orders
from yidi.outbox import enqueue_customer_notices
from yidi.settings import Settings
from yidi.workdays import BUSINESS_TZ

NEXT_STATUS = {"return": "awaiting_return", "exchange": "awaiting_return", "repair": "repairing",
               "refund": "refund_pending", "reject": "rejected"}  # fmt: skip


def assess_open_cases(conn: Connection, settings: Settings, now: datetime, *, actor: str | None = None) -> dict:
    """Decide every open case; returns how many got each decision."""
    policy = settings.aftersales
    open_ = store.open_cases(conn)
    if open_.empty:
        return {}
    order_ids = open_["order_id"].astype(int).tolist()
    received = store.receipt_dates(conn, order_ids)
    repairs = store.failed_repairs(conn, order_ids)
    lines = store.case_lines(conn, open_["id"].astype(int).tolist())
    items_by_case = lines.groupby("case_id")["item_code"].apply(list).to_dict() if len(lines) else {}
    amount_by_case = lines.groupby("case_id")["amount_fen"].sum().to_dict() if len(lines) else {}
    decided, refunds, notices, counts = [], [], [], {}
    for case in open_.to_dict("records"):
        cid, oid = int(case["id"]), int(case["order_id"])
        received_on = received.get(oid)
        d = assess(
            kind=case["kind"], quality_problem=bool(case["quality_problem"]), goods_opened=bool(case["goods_opened"]),
            asked_on=pd.Timestamp(case["requested_at"]).tz_convert(BUSINESS_TZ).date(), received_on=received_on,
            item_codes=items_by_case.get(cid, []), customer_kind=case["customer_kind"] or "consumer",
            channel=case["channel"], failed_repairs=repairs.get(oid, 0), policy=policy,
        )  # fmt: skip
        counts[d.decision] = counts.get(d.decision, 0) + 1
        refund_fen = int(amount_by_case.get(cid, 0)) if d.decision in ("return", "refund") else 0
        decided.append({"id": cid, "status": NEXT_STATUS[d.decision], "decision": d.decision,
                        "decision_rule": d.rule, "decision_citation": d.citation, "decision_text": d.text,
                        "freight_payer": d.freight_payer, "refund_fen": refund_fen, "received_date": received_on,
                        "return_carrier": policy.return_carrier if d.decision in ("return", "exchange") else None,
                        "decided_at": now, "actor": actor,
                        "closed_at": now if d.decision == "reject" else None})  # fmt: skip
        if d.decision == "refund":
            refunds.append({"case_id": cid, "order_id": oid, "order_no": case["order_no"], "amount_fen": refund_fen,
                            "route": refund_route(case["payment_method"], policy), "due_date": now.astimezone(
                                BUSINESS_TZ).date()})  # fmt: skip
        notices.append({"order_id": oid, "template": "aftersales_decision", "dedupe": f"aftersales:decision:{cid}",
                        "context": {"case_no": case["case_no"], "decision_name": DECISION_NAMES[d.decision],
                                    "decision_text": d.text, "rule": d.rule,
                                    "return_note": _return_note(d.decision, case["case_no"], policy)}})  # fmt: skip
    store.update_cases(conn, decided, ["status", "decision", "decision_rule", "decision_citation", "decision_text",
                                       "freight_payer", "refund_fen", "received_date", "return_carrier",
                                       "decided_at", "actor", "closed_at"], now)  # fmt: skip
    queue_refunds(conn, refunds)
    enqueue_customer_notices(conn, notices, policy.notice_media, settings.general.company_name)
    rejected = [c["id"] for c in decided if c["decision"] == "reject"]
    if rejected:
        restore_orders(conn, open_[open_["id"].isin(rejected)]["order_id"].astype(int).tolist(), actor=actor,
                       reason="售后申请不予受理，订单恢复原状态")  # fmt: skip
    return counts


def _return_note(decision: str, case_no: str, policy) -> str:
    if decision not in ("return", "exchange"):
        return ""
    return f"请将商品寄回（退货授权号 {case_no}，承运商 {policy.return_carrier}），并在包裹内注明授权号。"


def restore_orders(conn: Connection, order_ids: list[int], *, actor: str | None, reason: str) -> None:
    """Orders with no open case left go back to the state they had before after-sales (delivered, settled…)."""
    if not order_ids:
        return
    open_elsewhere = set(store.cases(conn).query("status not in ('rejected', 'closed')")["order_id"].astype(int))
    back = store.state_before_after_sales(conn, [o for o in order_ids if o not in open_elsewhere])
    by_state: dict[str, list[int]] = {}
    for oid, state in back.items():
        by_state.setdefault(state, []).append(oid)
    for state, oids in by_state.items():
        transition_orders(conn, oids, state, reason=reason, actor=actor, skip_illegal=True)
