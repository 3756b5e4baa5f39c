"""Intake decisions over frames, without the store (requirements I3, I4, P3): frames in, frames out, no I/O.

- A record is quarantined, with every reason found for it, when its parse or normalisation found a problem or it
  held no order (``record_outcomes``); it never stops the rest of the batch.
- Several versions of one order in a batch: the latest (by source modified time, then arrival) wins
  (``latest_versions``). Against the stored order: new, unchanged (same content hash), stale (an older version
  arriving late never overwrites a newer one) or changed (``compare_with_stored``).
- A changed order gets a 'change' event listing the changed fields (old → new) and whether the lines changed;
  a reviewed order whose review-relevant fields changed goes back to review, and an order cancelled at the source
  is cancelled where the lifecycle allows (``change_decisions``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from connectors.base import Parsed
from tasks.intake.normalise import ORDER_STORE_COLUMNS, Normalised
from yidi.lifecycle import LEGAL_TRANSITIONS, OrderState

# Fields whose change means the order must be reviewed again (status/notes alone do not).
REVIEW_FIELDS = [
    "customer_name", "customer_phone", "customer_email", "ship_province", "ship_city", "ship_district",
    "ship_detail", "ship_admin_code", "ship_postcode", "region", "payment_method", "installments", "currency",
    "goods_total_fen", "discount_fen", "freight_fen", "order_total_fen",
]  # fmt: skip
UPDATE_COLUMNS = [c for c in ORDER_STORE_COLUMNS if c not in ("channel", "channel_order_id")]
REVIEWED_STATES = {OrderState.APPROVED, OrderState.REJECTED, OrderState.AUTO_REJECTED, OrderState.ALLOCATED,
                   OrderState.BACKORDERED}
LINE_KEY = ["item_code", "quantity", "unit_price_fen", "discount_fen", "line_total_fen"]
REASONS_KEPT = 5  # quarantine reasons a summary carries (the store keeps them all)


@dataclass
class Counts:
    read: int = 0  # raw records received from the channel
    new: int = 0  # orders created
    updated: int = 0  # orders changed
    unchanged: int = 0  # records already landed, or orders whose content did not change
    quarantined: int = 0  # records that could not be understood (new ones)
    cancelled: int = 0  # orders cancelled because the source cancelled them
    rereview: int = 0  # reviewed orders sent back to review by a change
    remote: int = 0  # of the new and updated orders
    local: int = 0
    unknown: int = 0
    reasons: list[str] = field(default_factory=list)  # the first few quarantine reasons

    def add(self, other: Counts) -> None:
        for key, value in asdict(other).items():
            if key == "reasons":
                self.reasons.extend(value[: max(REASONS_KEPT - len(self.reasons), 0)])
            else:
                setattr(self, key, getattr(self, key) + value)

    def count_regions(self, stored: pd.DataFrame) -> None:
        for region in ("remote", "local", "unknown"):
            setattr(self, region, getattr(self, region) + int((stored["region"] == region).sum()))


@dataclass
class ChannelSummary(Counts):
    channel: str = ""
    batches: int = 0
    error: str | None = None


def clean_content(records: pd.DataFrame) -> pd.DataFrame:
    """PostgreSQL text cannot hold NUL: store it visibly replaced (the hash keeps the original bytes)."""
    if records["content"].dtype == object:  # a few large texts (bulk chunks): checked as they are
        if any("\x00" in text for text in records["content"]):
            records = records.copy()
            records["content"] = [text.replace("\x00", "\ufffd") for text in records["content"]]
        return records
    content = records["content"].astype("str")
    if content.str.contains("\x00", regex=False).any():
        records = records.copy()
        records["content"] = content.str.replace("\x00", "\ufffd", regex=False)
    return records


def subset_parsed(parsed: Parsed, positions: np.ndarray) -> Parsed:
    """The parse restricted to records at ``positions`` (renumbered 0..n-1 in that order)."""
    remap = pd.Series(np.arange(len(positions)), index=positions)
    out = []
    for frame in (parsed.orders, parsed.lines, parsed.problems):
        idx = frame["record_idx"].astype("int64")
        kept = frame[idx.isin(remap.index)].copy()
        kept["record_idx"] = idx[idx.isin(remap.index)].map(remap).to_numpy()
        out.append(kept.reset_index(drop=True))
    return Parsed(*out)


def record_outcomes(parsed: Parsed, normal: Normalised, n: int, counts: Counts) -> tuple[np.ndarray, np.ndarray]:
    """Status ('accepted' | 'quarantined') and reason per record of a parse of ``n`` records; the first few
    reasons are kept in ``counts``."""
    problems = pd.concat([parsed.problems, normal.problems], ignore_index=True)
    status = np.full(n, "accepted", dtype=object)
    reason = np.full(n, None, dtype=object)
    no_order = np.ones(n, dtype=bool)
    no_order[normal.orders["record_idx"].astype("int64").to_numpy()] = False
    status[no_order] = "quarantined"
    reason[no_order] = "no order was found in this record"
    if len(problems):
        reasons = problems.groupby(problems["record_idx"].astype("int64"))["reason"].agg(
            lambda r: "; ".join(dict.fromkeys(r)))
        at = reasons.index.to_numpy()
        status[at] = "quarantined"
        reason[at] = reasons.to_numpy(dtype=object)
    room = max(REASONS_KEPT - len(counts.reasons), 0)
    counts.reasons.extend([str(r)[:300] for r in reason[status == "quarantined"][:room]])
    return status, reason


def latest_versions(incoming: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the latest version of each order in arrival order, the versions it superseded)."""
    incoming = incoming.copy()
    incoming["_pos"] = np.arange(len(incoming))
    incoming = incoming.sort_values(["source_modified_at", "_pos"], kind="stable", na_position="first")
    latest_mask = ~incoming.duplicated(["channel", "channel_order_id"], keep="last")
    return incoming[latest_mask].sort_values("_pos").reset_index(drop=True), incoming[~latest_mask]


def compare_with_stored(merged: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks (new, unchanged or stale, changed) over incoming orders merged with the stored ones
    (``order_id``, ``old_hash``, ``old_modified``: NA when not stored)."""
    is_new = merged["order_id"].isna().to_numpy()
    same = (merged["old_hash"] == merged["content_hash"]).to_numpy(dtype=bool, na_value=False)
    stale = (merged["old_modified"].notna() & merged["source_modified_at"].notna()
             & (merged["source_modified_at"] < merged["old_modified"])).to_numpy(dtype=bool, na_value=False)
    return is_new, ~is_new & (same | stale), ~is_new & ~same & ~stale


def orders_with_changed_lines(changed: pd.DataFrame, old_lines: pd.DataFrame, new_lines: pd.DataFrame,
                              columns: list[str]) -> set[int]:
    """The changed orders (``order_id``, ``record_idx``) whose lines differ from the stored ones in ``columns``; an
    order changed at the source in its status or address only keeps its lines (and the allocations, reservations and
    shipments that point at them: replacing them failed on those references once an order had shipped)."""
    def key(frame: pd.DataFrame) -> tuple:
        rows = [tuple(plain_value(v) for v in rec) for rec in frame[columns].itertuples(index=False, name=None)]
        return tuple(sorted(rows, key=repr))

    stored = {int(oid): key(group) for oid, group in old_lines.groupby("order_id")} if len(old_lines) else {}
    incoming = {int(idx): key(group) for idx, group in new_lines.groupby("record_idx")} if len(new_lines) else {}
    return {int(oid) for oid, idx in zip(changed["order_id"], changed["record_idx"], strict=True)
            if stored.get(int(oid), ()) != incoming.get(int(idx), ())}  # fmt: skip


def plain_value(value):
    """A stored or parsed cell as a plain Python value (None, int, float, str, ISO time), comparable across the two
    and ready for a bound parameter or an event's JSON details."""
    if value is None or (not isinstance(value, list | dict) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def change_decisions(changed: pd.DataFrame, old: pd.DataFrame, old_lines: pd.DataFrame, new_lines: pd.DataFrame,
                     *, actor: str, now: datetime) -> tuple[pd.DataFrame, list[int], list[tuple[int, list[str]]]]:
    """For changed orders (incoming rows with ``order_id`` and ``record_idx``) against the stored rows ``old``
    (indexed by id) and lines: (change events, orders to cancel, (order, changed fields) to review again)."""
    events, rereview, cancel = [], [], []
    for row in changed.to_dict("records"):
        oid = int(row["order_id"])
        before = old.loc[oid]
        diff = {}
        for column in UPDATE_COLUMNS:
            if column in ("content_hash", "source_modified_at"):
                continue
            a, b = plain_value(before[column]), plain_value(row[column])
            if isinstance(a, datetime) and b is not None:
                b = pd.Timestamp(b).to_pydatetime()
            if a != b and not (a is None and b is None):
                diff[column] = [a, b]
        was = old_lines[old_lines["order_id"] == oid].sort_values("line_no")
        now_lines = new_lines[new_lines["record_idx"].astype("int64") == int(row["record_idx"])].sort_values("line_no")
        before_lines = [tuple(plain_value(v) for v in r) for r in was[LINE_KEY].itertuples(index=False)]
        after_lines = [tuple(plain_value(v) for v in r) for r in now_lines[LINE_KEY].itertuples(index=False)]
        if before_lines != after_lines:
            diff["lines"] = [[list(x) for x in before_lines], [list(x) for x in after_lines]]
        extra = row.get("source_extra")
        if isinstance(extra, str) and extra:
            diff["source_extra"] = json.loads(extra)
        fields = [k for k in diff if k != "source_extra"]
        status_change = f" (status {before['source_status']} → {row['source_status']})" \
            if before["source_status"] != row["source_status"] else ""
        events.append({"order_id": oid, "kind": "change", "actor": actor, "occurred_at": now,
                       "reason": f"changed at the source: {', '.join(fields) or 'details'}{status_change}",
                       "details": diff})
        state = OrderState(before["state"])
        if bool(row.get("source_cancelled")) and OrderState.CANCELLED in LEGAL_TRANSITIONS[state]:
            cancel.append(oid)
        elif state in REVIEWED_STATES and any(f in diff for f in [*REVIEW_FIELDS, "lines"]):
            rereview.append((oid, fields))
    return pd.DataFrame(events), cancel, rereview
