"""Which planned shipments travel together, and how a parcel's costs fall on its orders (issue 18). Pure: frames
in, frames out; no database, no clock.

A parcel is formed where shipments are planned (fulfilment): each order's lines are already split by warehouse
(one shipment request per order and warehouse, ``allocation.plan_shipments``), and lines waiting for production
or purchase follow in a later parcel (backorders), so an order from two warehouses or with two ready dates ships
as several parcels. Merging goes the other way: requests of different orders that share

* the customer (the customer record, else the phone's digits),
* the recipient (name and phone) and the normalised address (NFKC, no spaces or punctuation, case-folded),
* the warehouse,

and were ordered within ``window_hours`` of the parcel's first order, ship as one parcel of at most
``max_orders`` orders. Cash-on-delivery requests never merge: the carrier collects and remits COD per waybill,
and settlement matches a remittance to its order by waybill.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd

from yidi.parcels_policy import ParcelPolicy

_NOT_ADDRESS = re.compile(r"[\s\W_]+", re.UNICODE)
MERGE_COLUMNS = ["request_id", "parcel", "customer_key", "address_key"]


def normalised(text: object) -> str:
    """One spelling of an address or name: full-width to half-width (NFKC), no spaces or punctuation, lower case."""
    if text is None or (isinstance(text, float) and text != text) or text is pd.NA:
        return ""
    return _NOT_ADDRESS.sub("", unicodedata.normalize("NFKC", str(text))).casefold()


def _digits(text: object) -> str:
    return re.sub(r"\D", "", str(text)) if isinstance(text, str) else ""


def merge_groups(requests: pd.DataFrame, policy: ParcelPolicy) -> pd.DataFrame:
    """``requests`` (one pending, unmerged shipment request per row): request_id, order_id, warehouse,
    customer_id, customer_name, customer_phone, ship_province, ship_city, ship_district, ship_detail, order_time,
    payment_method, no_merge. Returns request_id, parcel (0..n-1, only requests that travel with another order),
    customer_key, address_key."""
    if requests.empty or not policy.merge:
        return pd.DataFrame(columns=MERGE_COLUMNS)
    r = requests.copy()
    r["customer_key"] = [
        f"id:{int(c)}" if pd.notna(c) else f"phone:{_digits(p)}" if _digits(p) else None
        for c, p in zip(r["customer_id"], r["customer_phone"], strict=True)
    ]
    r["address_key"] = [
        "|".join(normalised(v) for v in parts)
        for parts in zip(r["ship_province"], r["ship_city"], r["ship_district"], r["ship_detail"], r["customer_name"],
                         r["customer_phone"].map(_digits), strict=True)
    ]  # fmt: skip
    eligible = (
        r["customer_key"].notna()
        & (r["ship_detail"].map(normalised) != "")
        & (r["payment_method"].astype(object) != "cod")
        & ~r["no_merge"].fillna(False).astype(bool)
        & r["order_time"].notna()
    )
    r = r[eligible].copy()
    r["order_time"] = pd.to_datetime(r["order_time"], utc=True)
    r = r.sort_values(["customer_key", "address_key", "warehouse", "order_time", "request_id"])
    window = pd.Timedelta(hours=policy.window_hours)
    rows, parcel = [], 0
    for _, group in r.groupby(["customer_key", "address_key", "warehouse"], sort=False):
        current: list[tuple] = []
        first_time = None
        for rec in group[["request_id", "order_id", "customer_key", "address_key", "order_time"]].itertuples(index=False):
            orders_in = {c[1] for c in current}
            fits = (first_time is not None and rec.order_time - first_time <= window
                    and (rec.order_id in orders_in or len(orders_in) < policy.max_orders))  # fmt: skip
            if not fits:
                if len({c[1] for c in current}) > 1:
                    rows.extend((c[0], parcel, c[2], c[3]) for c in current)
                    parcel += 1
                current, first_time = [], rec.order_time
            current.append(tuple(rec))
        if len({c[1] for c in current}) > 1:
            rows.extend((c[0], parcel, c[2], c[3]) for c in current)
            parcel += 1
    return pd.DataFrame(rows, columns=MERGE_COLUMNS)


def split_fen(total: int, weights: list[float]) -> list[int]:
    """``total`` fen shared in proportion to ``weights`` (equal shares when they are all zero); the parts add up
    to the total exactly, the rounding remainder going to the largest shares first."""
    if not weights:
        return []
    w = np.asarray([max(float(x), 0.0) if x == x else 0.0 for x in weights])
    if w.sum() <= 0:
        w = np.ones(len(w))
    exact = total * w / w.sum()
    parts = np.floor(exact).astype(np.int64)
    left = int(total - parts.sum())
    for i in np.argsort(-(exact - parts), kind="stable")[:left]:
        parts[i] += 1
    return [int(p) for p in parts]
