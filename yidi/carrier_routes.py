"""A carrier's standing on a route (K3): where the risk area's scorecard and fulfilment's carrier choice meet.

The risk area writes ``carrier_route_scores`` per carrier × destination province × month; fulfilment reads the
standing of each route here: the latest scored month, if it is the current or the previous month (an old
penalty lapses by itself), and only routes judged ``penalised`` or ``excluded``.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, select

from yidi.bulk import read_frame
from yidi.schema_risk import carrier_route_scores
from yidi.workdays import BUSINESS_TZ

STANDING_COLUMNS = ["carrier", "province", "status", "month"]


def route_standing(conn: Connection, as_of: datetime) -> pd.DataFrame:
    """``carrier``, ``province``, ``status`` (penalised | excluded), ``month`` of the routes under a measure."""
    today = as_of.astimezone(BUSINESS_TZ).date()
    previous = f"{today.year - (today.month == 1)}-{(today.month - 2) % 12 + 1:02d}"
    rows = read_frame(conn, select(*[carrier_route_scores.c[c] for c in STANDING_COLUMNS])
                      .where(carrier_route_scores.c.month >= previous, carrier_route_scores.c.month <= f"{today:%Y-%m}"))  # fmt: skip
    if rows.empty:
        return pd.DataFrame(columns=STANDING_COLUMNS)
    latest = rows.sort_values("month").drop_duplicates(["carrier", "province"], keep="last")
    return latest[latest["status"].isin(("penalised", "excluded"))].reset_index(drop=True)
