"""Channel listings (issue 18): which catalog item is which listing on which channel, loaded from a sheet.

A csv or xlsx (``yidi.textfiles.read_table``: the one encoding policy) with the columns ``channel``,
``item_code``, ``listing_id`` and, for a TOP listing's variant, ``sku_id``. One transaction: valid rows are
upserted on (channel, item_code) — a re-loaded sheet changes only what changed — and every refused row is
reported with its row number and reason, never silently dropped. Stock sync reads the table; an item without a
listing is simply not pushed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, select

from yidi.bulk import insert_rows, read_frame
from yidi.schema import catalog_items
from yidi.schema_channels import channel_listings
from yidi.textfiles import read_table

REQUIRED = ["channel", "item_code", "listing_id"]


@dataclass
class ListingsResult:
    rows: int = 0
    loaded: int = 0  # inserted or changed
    unchanged: int = 0  # already there with the same listing
    refused: list[dict] = field(default_factory=list)  # row (1 = first data row), channel, item_code, reason

    def as_dict(self) -> dict:
        return {"rows": self.rows, "loaded": self.loaded, "unchanged": self.unchanged, "refused": self.refused}


def check_listings(sheet: pd.DataFrame, channels: set[str], known_items: set[str]) -> tuple[pd.DataFrame, list[dict]]:
    """Pure: the sheet's rows -> (valid rows, refusals). A row is refused for a missing field, a channel stock
    is not pushed to, an item not in the catalog, or a second row for the same (channel, item)."""
    frame = sheet.copy()
    for column in [*REQUIRED, "sku_id"]:
        if column not in frame.columns:
            frame[column] = pd.NA
    frame = frame.reset_index(drop=True)
    frame["row"] = frame.index + 1
    refused, keep = [], []
    seen: set[tuple[str, str]] = set()
    for r in frame.to_dict("records"):
        values = {k: (None if pd.isna(r[k]) else str(r[k]).strip() or None) for k in [*REQUIRED, "sku_id"]}
        missing = [k for k in REQUIRED if not values[k]]
        reason = None
        if missing:
            reason = f"missing {', '.join(missing)}"
        elif values["channel"] not in channels:
            reason = f"channel {values['channel']} has no stock sync (known: {', '.join(sorted(channels))})"
        elif values["item_code"] not in known_items:
            reason = f"item {values['item_code']} is not in the catalog"
        elif (values["channel"], values["item_code"]) in seen:
            reason = "a second row for the same channel and item"
        if reason:
            refused.append({"row": r["row"], "channel": values["channel"], "item_code": values["item_code"],
                            "reason": reason})
            continue
        seen.add((values["channel"], values["item_code"]))
        keep.append(values)
    return pd.DataFrame(keep, columns=[*REQUIRED, "sku_id"]), refused


def load_listings(engine: Engine, path: str | Path, channels: set[str]) -> ListingsResult:
    """Load a listings sheet (see the module docstring); one transaction."""
    sheet = read_table(path)
    if not set(REQUIRED) <= set(sheet.columns):
        raise ValueError(f"{Path(path).name}: needs the columns {', '.join(REQUIRED)} (and optionally sku_id); "
                         f"found {', '.join(sheet.columns)}")
    result = ListingsResult(rows=len(sheet))
    with engine.begin() as conn:
        known = set(read_frame(conn, select(catalog_items.c.code))["code"])
        rows, result.refused = check_listings(sheet, channels, known)
        if len(rows):
            result.loaded = insert_rows(conn, channel_listings, rows, on_conflict=["channel", "item_code"],
                                        update_columns=["listing_id", "sku_id"])
        result.unchanged = len(rows) - result.loaded
    return result
