"""Stand-in for the supplier purchasing gateway (format: ``connectors/supplier.py``).

``start(known_items=None)`` serves ``POST /v1/purchase-orders`` on 127.0.0.1 (ephemeral port); the handle has
``.url``, ``.stop()``, ``.fail_next(...)`` (see ``idempotent_json``) and ``.created`` (acknowledgements by PO
number). Every line is confirmed in full for its required date; an item outside ``known_items`` (when given) is
refused with 422 ``unknown_item``.
"""

from __future__ import annotations

import itertools

from demo.standins.idempotent_json import StandinHandle, StandinState, start_standin

CREATE_PATH = "/v1/purchase-orders"


def start(token: str | None = None, known_items: set[str] | None = None) -> StandinHandle:
    serial = itertools.count(1)

    def create(body: dict, state: StandinState) -> tuple[int, dict]:
        lines = body.get("lines")
        if not body.get("po_no") or not body.get("supplier_code") or not isinstance(lines, list) or not lines:
            return 422, {"error": "invalid_request", "message": "po_no, supplier_code and lines are required"}
        confirmed = []
        for line in lines:
            item = line.get("item_code")
            if known_items is not None and item not in known_items:
                return 422, {"error": "unknown_item", "message": f"{item} is not in our catalogue"}
            try:
                quantity = float(line.get("quantity"))
            except (TypeError, ValueError):
                return 422, {"error": "invalid_request", "message": f"line {line.get('line_no')}: bad quantity"}
            confirmed.append(
                {
                    "line_no": line.get("line_no"),
                    "confirmed_quantity": quantity,
                    "confirmed_date": line.get("required_date"),
                }
            )
        return 201, {
            "po_no": body["po_no"],
            "supplier_order_id": f"SO-{body['supplier_code']}-{next(serial):06d}",
            "status": "accepted",
            "lines": confirmed,
        }

    return start_standin(CREATE_PATH, create, token=token, name="supplier")
