"""Carrier scorecard step (K3): score the month's routes, store them for fulfilment's carrier choice, open a
finding per penalised or excluded route and per high-value shipment that went out uninsured."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Engine

from tasks.risk import carriers, carriers_store, findings
from tasks.risk.periods import parse_period, utc_bounds
from yidi.money import decimal_to_fen, yuan_text
from yidi.settings import Settings


def assess_carriers(
    engine: Engine, settings: Settings, month: str, as_of: datetime, actor: str = "risk"
) -> dict:
    start, end, kind = parse_period(month)
    if kind != "month":
        raise ValueError(f"the carrier scorecard is monthly; {month!r} is a {kind}")
    lo, hi = utc_bounds(start, end)
    high_fen = decimal_to_fen(settings.risk.high_value_yuan)
    with engine.begin() as conn:
        shipped = carriers_store.load_shipments(conn, lo, hi, as_of)
        if shipped.empty:
            return {"month": month, "routes": 0, "penalised": 0, "excluded": 0, "uninsured": 0, "findings": 0}
        scores = carriers.scorecard(shipped, settings.risk.carrier, high_fen)
        carriers_store.write_scores(conn, scores, as_of)
        bad = scores[scores["status"].isin(("penalised", "excluded"))]
        route_rows = pd.DataFrame({
            "finding_key": [f"carrier:{r.carrier}:{r.province}:{r.month}" for r in bad.itertuples()],
            "source": "carrier", "check_code": "CARRIER_ROUTE_" + bad["status"].str.upper(),
            "severity": bad["status"].map({"excluded": "high", "penalised": "medium"}),
            "carrier": bad["carrier"], "period": month,
            "summary": [f"{r.carrier} → {r.province} {r.month}: {r.status} ({r.reasons})" for r in bad.itertuples()],
            "details": [{"shipments": int(r.shipments), "on_time_rate": r.on_time_rate,
                         "damage_rate": r.damage_rate, "loss_rate": r.loss_rate} for r in bad.itertuples()],
        })  # fmt: skip
        uninsured = carriers.uninsured_high_value(shipped, high_fen)
        ship_rows = pd.DataFrame({
            "finding_key": [f"uninsured:{int(s)}" for s in uninsured["shipment_id"]],
            "source": "carrier", "check_code": "UNINSURED_HIGH_VALUE", "severity": "medium",
            "order_id": uninsured["order_id"].astype("int64"), "carrier": uninsured["carrier"], "period": month,
            "summary": [f"shipment {int(s)} declared {yuan_text(v, grouping=True, symbol=True)} went out uninsured"
                        for s, v in zip(uninsured["shipment_id"], uninsured["declared_value_fen"], strict=True)],
        })  # fmt: skip
        opened = findings.open_findings(conn, pd.concat([route_rows, ship_rows], ignore_index=True), as_of,
                                        settings, actor)  # fmt: skip
    counts = scores["status"].value_counts()
    return {"month": month, "routes": len(scores), "penalised": int(counts.get("penalised", 0)),
            "excluded": int(counts.get("excluded", 0)), "uninsured": len(uninsured), "findings": opened}  # fmt: skip
