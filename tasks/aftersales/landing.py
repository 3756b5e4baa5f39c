"""After-sales requests land (A3): raw records first (``yidi.service_inbox``), then one case per readable request,
linked to its order and lines; unreadable ones quarantined with the reason. The order moves into ``after_sales``
and the customer is told the request was received. One transaction per batch: all of it or none.

A request (from the phone form, the CLI, an email's key: value body, or a platform's refund list mapped by its
connector) is a mapping with: ``order_no``; ``kind`` (return, exchange, repair, refund_only,
installation_problem, or the channels' words 退货/换货/维修/仅退款/安装问题); optional ``items`` (list of
``{item_code, quantity}``; default every goods line), ``requested_at`` (ISO time; default when it landed),
``description``, ``quality_problem`` and ``goods_opened`` (true/false), ``source_id`` (the channel's own id).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection

from tasks.aftersales import store
from tasks.aftersales.rules import normalise_kind
from yidi.bulk import insert_rows, reserve_ids
from yidi.lifecycle import transition_orders
from yidi.outbox import enqueue_customer_notices
from yidi.schema_aftersales import aftersales_case_lines, aftersales_cases
from yidi.service_inbox import land_raw, settle_records
from yidi.settings import Settings
from yidi.workdays import BUSINESS_TZ

OPENABLE_STATES = frozenset({"delivered", "settled", "closed", "returned", "shipped", "in_transit", "exception"})
TRUE_WORDS = {"1", "true", "yes", "y", "是", "有", "质量问题"}


def _flag(value) -> bool:
    return str(value).strip().lower() in TRUE_WORDS if value is not None else False


def _parse(content: str, landed_at: datetime) -> dict:
    """The request's fields, or a ValueError saying what is wrong."""
    try:
        body = json.loads(content)
    except ValueError:
        raise ValueError("not a JSON request") from None
    if not isinstance(body, dict):
        raise ValueError("a request is a mapping of fields")
    order_no = str(body.get("order_no") or "").strip()
    if not order_no and body.get("order_channel") and body.get("channel_order_id"):
        order_no = f"{body['order_channel']}:{body['channel_order_id']}"  # the platform's own number
    if not order_no:
        raise ValueError("no order number (order_no, or order_channel and channel_order_id)")
    kind = normalise_kind(body.get("kind"))
    if kind is None:
        raise ValueError(f"unknown request type {body.get('kind')!r}")
    asked = body.get("requested_at")
    try:
        requested_at = pd.Timestamp(asked).to_pydatetime() if asked else landed_at
    except ValueError:
        raise ValueError(f"requested_at {asked!r} is not a time") from None
    if requested_at.tzinfo is None:
        raise ValueError(f"requested_at {asked!r} has no time zone")
    items = body.get("items") or []
    if not isinstance(items, list) or any(not isinstance(i, dict) or not i.get("item_code") for i in items):
        raise ValueError("items must be a list of {item_code, quantity}")
    return {"order_no": order_no, "kind": kind, "requested_at": requested_at, "items": items,
            "description": str(body.get("description") or "")[:2000],
            "quality_problem": int(_flag(body.get("quality_problem"))),
            "goods_opened": int(_flag(body.get("goods_opened"))),
            "source_id": str(body.get("source_id") or "") or None}  # fmt: skip


def land_requests(
    conn: Connection, channel: str, records: Sequence[tuple[str | None, object]], settings: Settings,
    now: datetime, *, actor: str | None = None,
) -> dict:
    """Land ``records`` (source key, request) from ``channel``; returns counts (landed, duplicates, quarantined)."""
    fresh = land_raw(conn, "request", channel, records, now)
    outcomes, parsed = [], []
    for rid, key, content in zip(fresh["id"], fresh["source_key"], fresh["content"], strict=True):
        try:
            parsed.append({"inbox_id": int(rid), "request_key": f"{channel}:{key or rid}", **_parse(content, now)})
        except ValueError as exc:
            outcomes.append({"id": int(rid), "status": "quarantined", "reason": str(exc), "subject_id": None})
    requests = pd.DataFrame(parsed)
    cases_made = 0
    if len(requests):
        known = store.orders_by_number(conn, requests["order_no"].tolist())
        requests = requests.merge(known, on="order_no", how="left")
        lines = store.product_lines(conn, requests["order_id"].dropna().astype(int).tolist())
        good, case_lines = [], []
        for req in requests.to_dict("records"):
            problem = _order_problem(req, lines)
            if problem:
                outcomes.append({"id": req["inbox_id"], "status": "quarantined", "reason": problem, "subject_id": None})
                continue
            good.append(req)
        if good:
            ids = reserve_ids(conn, aftersales_cases, len(good))
            rows = []
            for case_id, req in zip(ids.tolist(), good, strict=True):
                rows.append({"id": case_id, "case_no": f"AS{now.astimezone(BUSINESS_TZ):%y%m%d}{case_id:06d}",
                             "request_key": req["request_key"], "order_id": int(req["order_id"]),
                             "customer_id": None if pd.isna(req["customer_id"]) else int(req["customer_id"]),
                             "kind": req["kind"], "quality_problem": req["quality_problem"],
                             "goods_opened": req["goods_opened"], "description": req["description"],
                             "requested_at": req["requested_at"], "status": "open", "actor": actor,
                             "updated_at": now})  # fmt: skip
                case_lines.extend(_case_lines(case_id, req, lines))
                outcomes.append({"id": req["inbox_id"], "status": "landed", "reason": None, "subject_id": case_id})
            cases_made = insert_rows(conn, aftersales_cases, pd.DataFrame(rows), on_conflict=["request_key"])
            insert_rows(conn, aftersales_case_lines, pd.DataFrame(case_lines), on_conflict=["case_id", "item_code"])
            order_ids = sorted({r["order_id"] for r in rows})
            transition_orders(conn, order_ids, "after_sales", reason="售后申请已受理", actor=actor,
                              skip_illegal=True)  # fmt: skip
            enqueue_customer_notices(conn, [
                {"order_id": r["order_id"], "template": "aftersales_received", "dedupe": f"aftersales:received:{r['id']}",
                 "context": {"case_no": r["case_no"], "kind_text": KIND_TEXT[r["kind"]]}} for r in rows
            ], settings.aftersales.notice_media, settings.general.company_name)  # fmt: skip
    settle_records(conn, pd.DataFrame(outcomes, columns=["id", "status", "reason", "subject_id"]))
    quarantined = sum(1 for o in outcomes if o["status"] == "quarantined")
    return {"landed": cases_made, "duplicates": len(records) - len(fresh), "quarantined": quarantined}


KIND_TEXT = {"return": "退货", "exchange": "换货", "repair": "维修", "refund_only": "仅退款",
             "installation_problem": "安装/调试问题"}  # fmt: skip


def _order_problem(req: dict, lines: pd.DataFrame) -> str | None:
    if pd.isna(req.get("order_id")):
        return f"order {req['order_no']} is not known"
    if req["state"] not in OPENABLE_STATES | {"after_sales"} and req["kind"] != "refund_only":
        return f"order {req['order_no']} is {req['state']}: nothing was shipped to return, exchange or repair"
    own = lines[lines["order_id"] == int(req["order_id"])]
    wanted = {str(i["item_code"]) for i in req["items"]}
    missing = wanted - set(own["item_code"])
    if missing:
        return f"order {req['order_no']} has no goods line for {sorted(missing)}"
    if own.empty and req["kind"] not in ("installation_problem", "refund_only"):
        return f"order {req['order_no']} has no goods lines"
    return None


def _case_lines(case_id: int, req: dict, lines: pd.DataFrame) -> list[dict]:
    own = lines[lines["order_id"] == int(req["order_id"])]
    wanted = {str(i["item_code"]): float(i.get("quantity") or 0) for i in req["items"]}
    out = []
    for line in own.to_dict("records"):
        if wanted and line["item_code"] not in wanted:
            continue
        ordered = float(line["quantity"])
        qty = min(wanted.get(line["item_code"]) or ordered, ordered)
        amount = int(round(int(line["line_total_fen"]) * qty / ordered)) if ordered else 0
        out.append({"case_id": case_id, "order_line_id": int(line["order_line_id"]), "item_code": line["item_code"],
                    "quantity": qty, "amount_fen": amount})  # fmt: skip
    return out
