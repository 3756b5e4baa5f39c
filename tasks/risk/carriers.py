"""Carrier scorecard (K3): pure rules. One row per carrier × destination province × month from the month's
shipments (with their incident and claim flags), judged against ``[risk.carrier]`` thresholds for that route only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from yidi.risk_policy import CarrierThresholds

SHIPMENT_COLUMNS = ["shipment_id", "order_id", "carrier", "province", "month", "shipped_day", "delivered_day",
                    "expected_date", "declared_value_fen", "insured", "damaged", "lost", "refused", "returned",
                    "claims_filed", "claims_paid", "claims_overdue"]  # fmt: skip


def scorecard(shipped: pd.DataFrame, thresholds: CarrierThresholds, high_value_fen: int) -> pd.DataFrame:
    """Per (carrier, province, month): rates, claims, transit vs quoted, uninsured high-value count, status and
    the reasons for it (ok | penalised | excluded | too_few)."""
    frame = shipped.copy()
    delivered = frame["delivered_day"].notna()
    judged = delivered & frame["expected_date"].notna()
    frame["judged"] = judged
    frame["on_time"] = judged & (frame["delivered_day"] <= frame["expected_date"])
    frame["delivered"] = delivered
    frame["transit"] = (frame["delivered_day"] - frame["shipped_day"]).dt.days.where(delivered)
    frame["quoted"] = (frame["expected_date"] - frame["shipped_day"]).dt.days
    frame["uninsured_high"] = (frame["declared_value_fen"] >= high_value_fen) & ~frame["insured"].astype(bool)
    g = frame.groupby(["carrier", "province", "month"], sort=True)
    out = g.agg(shipments=("shipment_id", "size"), delivered=("delivered", "sum"), judged=("judged", "sum"),
                on_time=("on_time", "sum"), damaged=("damaged", "sum"), lost=("lost", "sum"),
                refused=("refused", "sum"), returned=("returned", "sum"), claims_filed=("claims_filed", "sum"),
                claims_paid=("claims_paid", "sum"), claims_overdue=("claims_overdue", "sum"),
                avg_transit_days=("transit", "mean"), avg_quoted_days=("quoted", "mean"),
                uninsured_high_value=("uninsured_high", "sum")).reset_index()  # fmt: skip
    n = out["shipments"].astype("float64")
    out["on_time_rate"] = (out["on_time"] / out["judged"].where(out["judged"] > 0)).round(4)
    for rate, column in (("damage_rate", "damaged"), ("loss_rate", "lost"), ("refusal_rate", "refused"),
                         ("return_rate", "returned")):  # fmt: skip
        out[rate] = (out[column] / n).round(4)
    damage_loss = out["damage_rate"] + out["loss_rate"]
    on_time = out["on_time_rate"]
    t = thresholds
    reasons = []
    status = []
    for shipments, ot, dl in zip(out["shipments"], on_time, damage_loss, strict=True):
        why = []
        if shipments < t.min_shipments:
            status.append("too_few")
            reasons.append(f"{shipments} shipments < {t.min_shipments}")
            continue
        exclude = (not np.isnan(ot) and ot < t.on_time_exclude_below) or dl > t.damage_loss_exclude_above
        penalise = (not np.isnan(ot) and ot < t.on_time_penalise_below) or dl > t.damage_loss_penalise_above
        if not np.isnan(ot) and ot < t.on_time_penalise_below:
            why.append(f"on-time {ot:.0%} < {t.on_time_penalise_below:.0%}")
        if dl > t.damage_loss_penalise_above:
            why.append(f"damage+loss {dl:.1%} > {t.damage_loss_penalise_above:.1%}")
        status.append("excluded" if exclude else "penalised" if penalise else "ok")
        reasons.append("; ".join(why))
    out["status"] = status
    out["reasons"] = reasons
    return out


def uninsured_high_value(shipped: pd.DataFrame, high_value_fen: int) -> pd.DataFrame:
    """Shipments declared at or above the high-value line that went out uninsured (K3), one row each."""
    hit = (shipped["declared_value_fen"] >= high_value_fen) & ~shipped["insured"].astype(bool)
    return shipped.loc[hit, ["shipment_id", "order_id", "carrier", "province", "month", "declared_value_fen"]]
