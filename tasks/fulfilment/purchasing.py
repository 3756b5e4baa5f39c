"""Production and purchase (F1, F2): requests raised by the allocation run for what is short, and purchase
orders sent to the suppliers afterwards.

``raise_requests`` runs inside the allocation run's transaction (a request exists exactly when its run
committed). ``send_purchase_orders`` calls the supplier outside any transaction, one purchase order at a time,
and records each answer in its own short transaction; the PO number is the idempotency key, so a retry never
orders twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, or_, select, update

from connectors.supplier import SupplierRejected, SupplierUnavailable
from tasks.fulfilment.allocation import choose_suppliers
from yidi.bulk import chunked, insert_rows, json_text, read_frame, utc_now
from yidi.lifecycle import record_events
from yidi.money import yuan_text
from yidi.schema_fulfilment import (
    QTY_EPSILON,
    production_requests,
    purchase_requests,
    supplier_prices,
    suppliers,
    warehouses,
)
from yidi.settings import Settings, get_settings, province_short_name


def raise_requests(conn, short_lines, free_after, info, cand, lines, today, calendar, transit, policy, run_id, now, actor):
    """Production (make-to-order) and purchase (bought-in, and stocked items to replenish) requests for short
    quantities not yet covered by an open request. Returns (#production, #purchase, ready) where ``ready`` is
    indexed by order id: the latest ready date of its short lines (NaT when some line has no source) and the
    request kinds."""
    empty_ready = pd.DataFrame(columns=["ready", "kinds"])
    if short_lines.empty:
        return 0, 0, empty_ready
    items = cand.items.set_index("item_code")
    requested = cand.requested.groupby("order_line_id").agg(qty=("qty", "sum"), ready=("ready", "max"))
    requested["kinds"] = pd.Series(_kinds_by(cand.requested["order_line_id"], cand.requested["kind"]))
    sl = short_lines.copy()
    sl["already"] = requested["qty"].reindex(sl["order_line_id"]).fillna(0.0).to_numpy()
    # Stock still free after the plan (left by orders that may not ship partially) covers short lines first,
    # in ranking order: only what neither stock nor an open request covers is requested.
    free = dict(free_after)
    cover = []
    for code, need in zip(sl["item_code"].tolist(), (sl["short_qty"] - sl["already"]).clip(lower=0).tolist(), strict=True):
        take = min(free.get(code, 0.0), need)
        free[code] = free.get(code, 0.0) - take
        cover.append(take)
    sl["from_stock"] = cover
    sl["to_request"] = (sl["short_qty"] - sl["already"] - sl["from_stock"]).clip(lower=0)
    sl["sourcing"] = items["sourcing"].reindex(sl["item_code"]).fillna("stock").to_numpy(dtype=object)
    sl["lead"] = items["lead_time_days"].reindex(sl["item_code"]).fillna(0).astype(int).to_numpy()
    sl["preferred_supplier"] = items["preferred_supplier"].reindex(sl["item_code"]).to_numpy(dtype=object)
    sl["promised_date"] = info["promised_date"].reindex(sl["order_id"]).to_numpy(dtype=object)
    sl["province"] = info["ship_province"].reindex(sl["order_id"]).map(
        lambda p: province_short_name(p) if isinstance(p, str) else None
    ).to_numpy(dtype=object)
    warehouse = policy.warehouses[0].code if policy.warehouses else None
    ready_rows: list[tuple[int, date | None, str]] = []
    for oid, _line_id, ready_date, kinds in zip(
        sl["order_id"].tolist(), sl["order_line_id"].tolist(),
        requested["ready"].reindex(sl["order_line_id"]).tolist(),
        requested["kinds"].reindex(sl["order_line_id"]).tolist(), strict=True,
    ):  # fmt: skip
        if isinstance(kinds, set):
            for kind in kinds:
                ready_rows.append((oid, ready_date, kind))

    in_stock = sl[(sl["from_stock"] > QTY_EPSILON) & (sl["to_request"] <= QTY_EPSILON)]
    ready_rows.extend(zip(in_stock["order_id"].tolist(), [today] * len(in_stock), ["stock"] * len(in_stock), strict=True))
    need = sl[sl["to_request"] > QTY_EPSILON]
    made = need[need["sourcing"] == "make_to_order"]
    n_production = 0
    if len(made):
        planned = [calendar.add(today, int(d))[0] for d in made["lead"].tolist()]
        available = [calendar.add(p, policy.production_qc_working_days)[0] for p in planned]
        frame = pd.DataFrame(
            {
                "request_no": [f"MO-{run_id:06d}-{i:05d}" for i in range(1, len(made) + 1)],
                "order_id": made["order_id"].to_numpy(),
                "order_line_id": made["order_line_id"].to_numpy(),
                "item_code": made["item_code"].to_numpy(),
                "warehouse": warehouse,
                "quantity": made["to_request"].to_numpy(dtype=float),
                "planned_date": planned,
                "available_date": available,
                "status": "planned",
                "created_at": now,
                "updated_at": now,
            }
        )
        insert_rows(conn, production_requests, frame)
        n_production = len(frame)
        ready_rows.extend(zip(made["order_id"].tolist(), available, ["production"] * len(made), strict=True))

    bought = need[need["sourcing"] != "make_to_order"]
    n_purchase = 0
    no_source: list[int] = []
    if len(bought):
        prices = _supplier_prices(conn, bought["item_code"].unique().tolist(), today)
        if len(prices):
            arrival_by_lead = {
                lead: calendar.add(calendar.add(today, lead)[0], policy.receiving_working_days)[0]
                for lead in prices["lead_time_days"].unique().tolist()
            }
            prices["arrival_date"] = prices["lead_time_days"].map(arrival_by_lead)
        else:
            prices = prices.assign(arrival_date=pd.Series(dtype=object))
        latest = []
        for promised, province in zip(bought["promised_date"].tolist(), bought["province"].tolist(), strict=True):
            if pd.isna(promised) or province not in transit:
                latest.append(None)
            else:
                latest.append(calendar.add(promised, -transit[province])[0])
        needs = pd.DataFrame(
            {
                "need_id": np.arange(len(bought)),
                "item_code": bought["item_code"].to_numpy(),
                "quantity": bought["to_request"].to_numpy(dtype=float),
                "latest_arrival": latest,
                "preferred_supplier": bought["preferred_supplier"].to_numpy(dtype=object),
            }
        )
        chosen = choose_suppliers(needs, prices, premium_pct=policy.preferred_supplier_premium_pct)
        ok = chosen["supplier_code"].notna().to_numpy()
        no_source = bought.loc[~ok, "order_id"].tolist()
        if ok.any():
            picked = chosen[ok]
            rows = bought.iloc[picked["need_id"].astype(int).to_numpy()]
            po_of = {s: f"PO-{today:%Y%m%d}-{run_id:06d}-{s}"[:40] for s in picked["supplier_code"].unique().tolist()}
            frame = pd.DataFrame(
                {
                    "request_no": [f"PR-{run_id:06d}-{i:05d}" for i in range(1, len(picked) + 1)],
                    "po_no": picked["supplier_code"].map(po_of).to_numpy(),
                    "order_id": rows["order_id"].to_numpy(),
                    "order_line_id": rows["order_line_id"].to_numpy(),
                    "item_code": rows["item_code"].to_numpy(),
                    "warehouse": warehouse,
                    "quantity": picked["order_qty"].to_numpy(dtype=float),
                    "supplier_code": picked["supplier_code"].to_numpy(),
                    "unit_price_fen": picked["unit_price_fen"].astype(np.int64).to_numpy(),
                    "freight_fen": picked["freight_fen"].astype(np.int64).to_numpy(),
                    "landed_cost_fen": picked["landed_cost_fen"].astype(np.int64).to_numpy(),
                    "required_date": [d if d is not None else None for d in needs["latest_arrival"].iloc[picked["need_id"].astype(int)].tolist()],
                    "expected_date": picked["expected_date"].tolist(),
                    "status": "draft",
                    "choice_reason": picked["reason"].tolist(),
                    "alternatives": [json_text(a) for a in picked["alternatives"].tolist()],
                    "created_at": now,
                    "updated_at": now,
                }
            )
            insert_rows(conn, purchase_requests, frame)
            n_purchase = len(frame)
            ready_rows.extend(zip(rows["order_id"].tolist(), picked["expected_date"].tolist(), ["purchase"] * len(rows), strict=True))
        reasons = chosen.loc[~ok, "reason"].tolist()
        if no_source:
            record_events(
                conn,
                pd.DataFrame({"order_id": no_source, "kind": "fulfilment",
                              "reason": [f"cannot replenish {c}: {r}" for c, r in zip(bought.loc[~ok, "item_code"].tolist(), reasons, strict=True)]}),
                actor=actor,
            )  # fmt: skip
    ready = pd.DataFrame(ready_rows, columns=["order_id", "ready", "kind"])
    if ready.empty:
        return n_production, n_purchase, empty_ready
    ready["ready"] = pd.to_datetime(ready["ready"], errors="coerce")
    grouped = ready.groupby("order_id").agg(ready=("ready", "max"))
    grouped["kinds"] = pd.Series(_kinds_by(ready["order_id"], ready["kind"]))
    # A short line without any source (no price list) makes the order's ready date unknown.
    lacking = set(no_source)
    grouped.loc[grouped.index.isin(lacking), "ready"] = pd.NaT
    grouped["ready"] = grouped["ready"].dt.date
    return n_production, n_purchase, grouped


def _kinds_by(keys: pd.Series, kinds: pd.Series) -> dict:
    """key -> set of kinds (a dict pass: a groupby with a Python lambda costs a Series per group)."""
    result: dict = {}
    for key, kind in zip(keys.tolist(), kinds.tolist(), strict=True):
        result.setdefault(key, set()).add(kind)
    return result


def _supplier_prices(conn: Connection, item_codes: list[str], today: date) -> pd.DataFrame:
    sp, sup = supplier_prices.c, suppliers.c
    frames = []
    for chunk in chunked(item_codes):
        frames.append(
            read_frame(
                conn,
                select(sp.supplier_code, sp.item_code, sp.unit_price_fen, sp.freight_per_order_fen, sp.lead_time_days,
                       sp.min_order_qty)
                .join(suppliers, suppliers.c.code == sp.supplier_code)
                .where(sp.item_code.in_(chunk), sup.active,
                       or_(sp.valid_from.is_(None), sp.valid_from <= today),
                       or_(sp.valid_to.is_(None), sp.valid_to >= today)),
            )  # fmt: skip
        )
    if not frames:
        return pd.DataFrame(columns=["supplier_code", "item_code", "unit_price_fen", "freight_per_order_fen",
                                     "lead_time_days", "min_order_qty"])  # fmt: skip
    return pd.concat(frames, ignore_index=True)


@dataclass
class PurchaseOrderResult:
    sent: int = 0
    failed: int = 0
    rejected: int = 0
    orders: list[dict] = field(default_factory=list)


def send_purchase_orders(engine: Engine, client, *, settings: Settings | None = None, actor: str | None = None) -> PurchaseOrderResult:
    """Send every draft purchase order (one per supplier per run) once: the PO number is the idempotency key."""
    settings = settings or get_settings()
    result = PurchaseOrderResult()
    pq, w = purchase_requests.c, warehouses.c
    with engine.connect() as conn:
        drafts = read_frame(
            conn,
            select(pq.id, pq.request_no, pq.po_no, pq.order_id, pq.item_code, pq.quantity, pq.unit_price_fen,
                   pq.supplier_code, pq.warehouse, pq.required_date, pq.expected_date,
                   w.name.label("wh_name"), w.province, w.city, w.district, w.address, w.contact, w.phone)
            .outerjoin(warehouses, w.code == pq.warehouse)
            .where(pq.status == "draft").order_by(pq.po_no, pq.id),
        )  # fmt: skip
    if drafts.empty:
        return result
    general = settings.general
    for po_no, lines in drafts.groupby("po_no", sort=True):
        first = lines.iloc[0]
        body = {
            "po_no": po_no,
            "supplier_code": first["supplier_code"],
            "buyer": {"company": general.company_name, "contact": first["contact"] or "", "phone": first["phone"] or ""},
            "ship_to": {"warehouse": first["warehouse"], "name": first["wh_name"] or "", "province": first["province"] or "",
                        "city": first["city"] or "", "district": first["district"] or "", "address": first["address"] or "",
                        "contact": first["contact"] or "", "phone": first["phone"] or ""},
            "currency": general.currency,
            "lines": [
                {"line_no": i, "item_code": code, "quantity": float(q), "unit_price": yuan_text(p),
                 "required_date": str(d if not pd.isna(d) else e)}
                for i, (code, q, p, d, e) in enumerate(zip(lines["item_code"], lines["quantity"], lines["unit_price_fen"],
                                                           lines["required_date"], lines["expected_date"], strict=True), 1)
            ],
        }  # fmt: skip
        status, error, supplier_order = "draft", None, None
        try:
            ack = client.send_purchase_order(body)
            status, supplier_order = "sent", ack.supplier_order_id
            result.sent += 1
        except SupplierRejected as exc:
            status, error = "failed", f"rejected by supplier: {exc}"
            result.rejected += 1
        except SupplierUnavailable as exc:
            error = f"supplier unavailable: {exc}"
            result.failed += 1
        with engine.begin() as conn:
            conn.execute(
                update(purchase_requests).where(pq.po_no == po_no, pq.status == "draft")
                .values(status=status, supplier_order_id=supplier_order, last_error=error,
                        sent_at=utc_now() if status == "sent" else None, updated_at=utc_now())
            )  # fmt: skip
            record_events(
                conn,
                pd.DataFrame({"order_id": sorted(set(lines["order_id"].dropna().astype(int))), "kind": "fulfilment",
                              "reason": f"purchase order {po_no} to {first['supplier_code']}: "
                                        + (f"sent ({supplier_order})" if status == "sent" else error)}),
                actor=actor,
            )  # fmt: skip
        result.orders.append({"po_no": po_no, "supplier": first["supplier_code"], "lines": len(lines), "status": status,
                              "error": error})  # fmt: skip
    return result
