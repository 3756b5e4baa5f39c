"""Return authorisation (A3): every case waiting for goods gets a return waybill from the carrier connector, the
customer as sender and the return warehouse as recipient, exactly once (the idempotency key is the case number:
a lost answer is asked for again and the carrier returns the same waybill). The customer is told the waybill
number to hand the parcel over with. Who pays the freight is the decision's ``freight_payer`` (第二十四条: the
company for quality problems; 第二十五条: the customer for no-reason returns unless agreed otherwise).

The client is passed in (``CarrierShippingClient`` built by the flow from ``[fulfilment]``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, func, select

from connectors.carrier_shipping import CarrierRejected, CarrierUnavailable
from tasks.aftersales import store
from yidi.bulk import read_frame
from yidi.outbox import enqueue_customer_notices
from yidi.schema import catalog_items, orders
from yidi.schema_aftersales import aftersales_case_lines, aftersales_cases
from yidi.settings import Settings

PAYER_TEXT = {"customer": "运费由您承担（寄付）", "company": "运费由我方承担（到付）"}


def issue_return_waybills(conn: Connection, client, settings: Settings, now: datetime) -> dict:
    """Ask the carrier for each missing return waybill; returns counts (issued, waiting, refused)."""
    policy = settings.aftersales
    warehouse = next((w for w in settings.fulfilment.warehouses if w.code == policy.return_warehouse),
                     settings.fulfilment.warehouses[0])  # fmt: skip
    todo = read_frame(conn, select(
        aftersales_cases.c.id, aftersales_cases.c.case_no, aftersales_cases.c.order_id,
        aftersales_cases.c.return_carrier, aftersales_cases.c.freight_payer, orders.c.customer_name,
        orders.c.customer_phone, orders.c.ship_province, orders.c.ship_city, orders.c.ship_district,
        orders.c.ship_detail, orders.c.ship_postcode)
        .join(orders, orders.c.id == aftersales_cases.c.order_id)
        .where(aftersales_cases.c.status == "awaiting_return", aftersales_cases.c.return_waybill_no.is_(None))
        .order_by(aftersales_cases.c.id))  # fmt: skip
    counts = {"issued": 0, "waiting": 0, "refused": 0}
    if todo.empty:
        return counts
    goods = read_frame(conn, select(aftersales_case_lines.c.case_id, aftersales_case_lines.c.item_code,
                                    aftersales_case_lines.c.quantity, catalog_items.c.name, catalog_items.c.unit,
                                    func.coalesce(catalog_items.c.weight_kg, 1.0).label("weight_kg"))
                       .outerjoin(catalog_items, catalog_items.c.code == aftersales_case_lines.c.item_code)
                       .where(aftersales_case_lines.c.case_id.in_(todo["id"].astype(int).tolist())))  # fmt: skip
    issued, notices = [], []
    for case in todo.to_dict("records"):
        lines = goods[goods["case_id"] == case["id"]]
        request = {
            "carrier": case["return_carrier"] or policy.return_carrier, "service": "退货取件",
            "order_ref": f"{case['case_no']}-R",
            "sender": {"name": case["customer_name"], "phone": case["customer_phone"],
                       "province": case["ship_province"], "city": case["ship_city"],
                       "district": case["ship_district"], "address": case["ship_detail"]},
            "recipient": {"name": warehouse.name, "phone": warehouse.phone, "province": warehouse.province,
                          "city": warehouse.city, "district": warehouse.district, "address": warehouse.address,
                          "postcode": ""},
            "parcel": {"weight_kg": round(float((lines["weight_kg"] * lines["quantity"]).sum()) or 1.0, 2),
                       "volume_m3": 0.0, "pieces": 1},
            "goods": [{"name": n or c, "quantity": float(q), "unit": u or "件"}
                      for c, n, q, u in zip(lines["item_code"], lines["name"], lines["quantity"], lines["unit"],
                                            strict=True)],
            "declared_value": "0.00", "insured": False, "cod_amount": "0.00",
            "remark": f"售后退货 {case['case_no']}；{PAYER_TEXT.get(case['freight_payer'], '')}",
        }  # fmt: skip
        try:
            waybill = client.create_waybill(request, idempotency_key=f"return:{case['case_no']}")
        except CarrierUnavailable:
            counts["waiting"] += 1  # same key next run
            continue
        except CarrierRejected:
            counts["refused"] += 1  # a person looks at the case (`yidi aftersales show`)
            continue
        counts["issued"] += 1
        issued.append({"id": int(case["id"]), "return_waybill_no": waybill.waybill_no,
                       "return_carrier": waybill.carrier})  # fmt: skip
        notices.append({"order_id": int(case["order_id"]), "template": "aftersales_return_waybill",
                        "dedupe": f"aftersales:return_waybill:{case['id']}",
                        "context": {"case_no": case["case_no"], "waybill_no": waybill.waybill_no,
                                    "carrier": waybill.carrier, "freight_text": PAYER_TEXT.get(
                                        case["freight_payer"], "")}})  # fmt: skip
    store.update_cases(conn, issued, ["return_waybill_no", "return_carrier"], now)
    enqueue_customer_notices(conn, notices, policy.notice_media, settings.general.company_name)
    return counts
