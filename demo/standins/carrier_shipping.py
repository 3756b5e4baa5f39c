"""Stand-in for the carrier e-waybill gateway (format: ``connectors/carrier_shipping.py``).

``start()`` serves ``POST /v1/waybills`` on 127.0.0.1 (ephemeral port) and returns a handle with ``.url``,
``.stop()``, ``.fail_next("5xx" | "429" | "timeout" | "lost", times, delay)`` and ``.created`` (waybills by
idempotency key). Waybill numbers follow each carrier's visible pattern (SF…, JDVA…, DPK…), unique per server.
``GET /v1/waybills/<waybill_no>`` returns a created waybill.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from demo.standins.idempotent_json import StandinHandle, StandinState, start_standin

CREATE_PATH = "/v1/waybills"

# Kuaidi100 carrier code -> (prefix, digits): the shapes real waybill numbers have.
WAYBILL_SHAPES = {
    "shunfeng": ("SF", 13),
    "zhongtong": ("7", 13),
    "yuantong": ("YT", 13),
    "yunda": ("43", 13),
    "shentong": ("77", 13),
    "jd": ("JDVA", 11),
    "ems": ("1", 12),
    "youzhengguonei": ("98", 11),
    "debangwuliu": ("DPK", 12),
    "jtexpress": ("JT", 13),
}
REQUIRED = {
    "sender": ["name", "phone", "province", "address"],
    "recipient": ["name", "phone", "province", "address"],
}


def _invalid(message: str) -> tuple[int, dict]:
    return 422, {"error": "invalid_request", "message": message}


def _creator(serial):
    def create(body: dict, state: StandinState) -> tuple[int, dict]:
        carrier = body.get("carrier")
        if carrier not in WAYBILL_SHAPES:
            return _invalid(f"unknown carrier {carrier!r}")
        for part, fields in REQUIRED.items():
            section = body.get(part) or {}
            missing = [f for f in fields if not str(section.get(f) or "").strip()]
            if missing:
                return _invalid(f"{part} lacks {missing}")
        parcel = body.get("parcel") or {}
        try:
            weight = float(parcel.get("weight_kg"))
        except (TypeError, ValueError):
            return _invalid("parcel.weight_kg must be a number")
        if weight <= 0:
            return _invalid("parcel.weight_kg must be positive")
        prefix, digits = WAYBILL_SHAPES[carrier]
        number = f"{prefix}{next(serial) % 10**digits:0{digits}d}"
        return 201, {
            "waybill_no": number,
            "carrier": carrier,
            "order_ref": body.get("order_ref"),
            "sort_code": f"{str(body['recipient']['province'])[:2]}-{number[-3:]}",
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }

    return create


def _getter(path: str, state: StandinState) -> tuple[int, dict]:
    waybill = path.rstrip("/").rsplit("/", 1)[-1]
    for created in state.created.values():
        if created.get("waybill_no") == waybill:
            return 200, created
    return 404, {"error": "not_found", "message": f"no waybill {waybill}"}


def start(token: str | None = None, first_serial: int = 2_026_112_700_001) -> StandinHandle:
    serial = itertools.count(first_serial)
    return start_standin(CREATE_PATH, _creator(serial), token=token, getter=_getter, name="carrier")


if __name__ == "__main__":  # pragma: no cover - manual use: python -m demo.standins.carrier_shipping
    import time

    handle = start()
    print(f"carrier e-waybill stand-in at {handle.url}{CREATE_PATH} (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        handle.stop()
