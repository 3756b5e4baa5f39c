"""Stock sync (issue 18): the available figure of every listed item pushed to each channel, only when it changed.

Available = on hand − reserved (allocations) − damaged − quarantined − safety stock, summed over warehouses
(``rules.available_stock``). Only (channel, item) pairs whose figure differs from the last one the channel
accepted are sent (``rules.changed_figures``); a figure the channel refused is reported and not sent again until
it changes. Every request passes the channel's pacer (``connectors.pacing.RatePacer`` at
``channels.rate_per_second``), so the channel's rate is never exceeded. TOP takes one item per call
(``taobao.item.quantity.update``); WooCommerce up to 100 per batch request. Answers are recorded in one
transaction per ``RECORD_CHUNK`` items; a transient failure records nothing (the next run sends it again).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine

from connectors.pacing import RatePacer
from connectors.taobao_writeback import WriteOutcome, quantity_update
from tasks.channels import rules, store
from yidi.bulk import chunked, insert_rows, utc_now
from yidi.schema_channels import channel_stock
from yidi.settings import Settings, get_settings

RECORD_CHUNK = 1000
STOCK_CHANNELS = ("taobao", "website")


@dataclass
class SyncResult:
    checked: int = 0  # listed (channel, item) pairs
    changed: int = 0  # figures that differed from the last accepted one
    pushed: int = 0
    refused: int = 0
    failed: int = 0
    requests: int = 0
    skipped: list[str] = field(default_factory=list)  # channels not configured (no secrets): nothing pushed
    refusals: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def make_pacers(settings: Settings, channels, clock=None, sleep=None) -> dict[str, RatePacer]:
    rates = settings.channels.rate_per_second
    extra = {k: v for k, v in (("clock", clock), ("sleep", sleep)) if v is not None}
    # 10% under the limit: requests leave threads a little late under load and bunch at the channel.
    return {c: RatePacer(rates[c], pace_fraction=0.9, **extra) for c in channels if c in rates}


def sync_stock(engine: Engine, writers, *, settings: Settings | None = None, channels: list[str] | None = None,
               pacers: dict | None = None, now: datetime | None = None) -> SyncResult:
    settings = settings or get_settings()
    policy = settings.channels
    wanted = [c for c in (channels or STOCK_CHANNELS) if c in STOCK_CHANNELS]
    result = SyncResult(skipped=[c for c in wanted if c in getattr(writers, "unconfigured", ())])
    wanted = [c for c in wanted if (writers.top if c == "taobao" else writers.woo) is not None]
    pacers = pacers if pacers is not None else make_pacers(settings, wanted)
    if not wanted:
        return result
    with engine.connect() as conn:
        available = rules.available_stock(store.stock_levels_frame(conn), policy)
        listings = store.listings_frame(conn, wanted)
        pushed = store.pushed_frame(conn, wanted)
    todo = rules.changed_figures(available, listings, pushed)
    result.checked, result.changed = len(listings), len(todo)
    last = {(r["channel"], r["item_code"]): r["pushed_quantity"] for r in pushed.to_dict("records")}
    for channel in wanted:
        rows = todo[todo["channel"] == channel].to_dict("records")
        for chunk in chunked(rows, RECORD_CHUNK):
            if channel == "taobao":
                outcomes = _push_top(chunk, writers.top, pacers.get(channel), policy.top_update_type, last, result,
                                     policy.push_workers)
            else:
                outcomes = _push_woo(chunk, writers.woo, pacers.get(channel), policy.woocommerce_batch_size, result)
            _record(engine, channel, chunk, outcomes, now or utc_now(), result)
    return result


def _push_top(rows, client, pacer, update_type, last, result, workers: int = 1) -> list[WriteOutcome]:
    """One call per item, from ``workers`` threads (a call's round trip is longer than the pacer's spacing);
    every call passes the one pacer first, so the rate holds whatever the threads do."""

    def push(r: dict) -> WriteOutcome:
        previous = last.get(("taobao", r["item_code"]))
        incremental = update_type == 2 and previous is not None and not pd.isna(previous)
        quantity = int(r["available"] - previous) if incremental else int(r["available"])
        if pacer is not None:
            pacer()
        sku = r["sku_id"] if isinstance(r.get("sku_id"), str) and r["sku_id"] else None
        return quantity_update(client, r["listing_id"], quantity, sku, 2 if incremental else 1)

    result.requests += len(rows)
    if workers <= 1:
        return [push(r) for r in rows]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(push, rows))


def _push_woo(rows, writer, pacer, batch_size, result) -> list[WriteOutcome]:
    outcomes = []
    for batch in chunked(rows, batch_size):
        if pacer is not None:
            pacer()
        result.requests += 1
        answers = writer.update_stock([(str(r["listing_id"]), int(r["available"])) for r in batch])
        outcomes.extend(answers[str(r["listing_id"])] for r in batch)
    return outcomes


def _record(engine: Engine, channel: str, rows: list[dict], outcomes: list[WriteOutcome], now: datetime,
            result: SyncResult) -> None:
    accepted, refused = [], []
    for r, outcome in zip(rows, outcomes, strict=True):
        if outcome.status == "confirmed":
            accepted.append({"channel": channel, "item_code": r["item_code"], "pushed_quantity": float(r["available"]),
                             "pushed_at": now, "refused_quantity": None, "refused_reason": None})
        elif outcome.status == "refused":
            refused.append({"channel": channel, "item_code": r["item_code"], "refused_quantity": float(r["available"]),
                            "refused_reason": outcome.error, "refused_at": now})
            result.refusals.append({"channel": channel, "item_code": r["item_code"], "available": int(r["available"]),
                                    "error": outcome.error})
        else:
            result.failed += 1
    result.pushed += len(accepted)
    result.refused += len(refused)
    with engine.begin() as conn:
        if accepted:
            insert_rows(conn, channel_stock, pd.DataFrame(accepted), on_conflict=["channel", "item_code"],
                        update_columns=["pushed_quantity", "pushed_at", "refused_quantity", "refused_reason"])
        if refused:
            insert_rows(conn, channel_stock, pd.DataFrame(refused), on_conflict=["channel", "item_code"],
                        update_columns=["refused_quantity", "refused_reason", "refused_at"])
