"""stock_sync: 100,000 changed stock figures pushed to the TOP stand-in limited to R requests/s.

Ours: ``tasks.channels.stock_sync.sync_stock`` — the ``sync-channel-stock`` flow's step — on a SQLite store: read
stock levels, listings and the last pushed figures, compute the available figures and the changed ones, send
``taobao.item.quantity.update`` (one item per signed request, the platform's shape) through the channel's pacer,
record the answers per 1000 items. Each run starts with every figure changed (the pushed figures are cleared).
Baseline: the ideal push, N / R seconds — every request exactly at the allowed rate and nothing else.
``ratio`` = push time / (N / R); target 1.2.

The stand-in runs in this process's parent and counts every write: ``max_writes_in_any_second`` (sliding
one-second window) and ``throttled`` (requests over R it refused) prove R was never exceeded.
``BENCH_STOCK_RATE`` sets R (default 200). The pacer sends at 0.9 R (room for requests leaving their threads
late on a loaded machine), so the ideal ratio is 1.11.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

NAME = "stock_sync"
DEFAULT_N = 100_000
TARGET = 1.2
RATE = float(os.environ.get("BENCH_STOCK_RATE", "200"))
BASELINE = f"ideal N/R at R={RATE:g} requests/s (the channel's limit, nothing else)"


def prepare(n: int, workdir: Path, case=None):
    import pandas as pd

    from demo.standins.taobao import TaobaoStandin
    from yidi.bulk import insert_rows
    from yidi.db import init_db, make_engine
    from yidi.schema import catalog_items
    from yidi.schema_channels import channel_listings
    from yidi.schema_fulfilment import stock_levels, warehouses

    db = workdir / "stock_sync.db"
    engine = make_engine(f"sqlite:///{db}")
    init_db(engine)
    codes = [f"SKU-{i:06d}" for i in range(n)]
    with engine.begin() as conn:
        insert_rows(conn, warehouses, pd.DataFrame([{"code": "CQ-XY", "name": "西永仓", "priority": 1}]))
        insert_rows(conn, catalog_items, pd.DataFrame({"code": codes, "name": codes, "list_price_fen": 100}))
        insert_rows(conn, stock_levels, pd.DataFrame({"warehouse": "CQ-XY", "item_code": codes,
                                                      "on_hand": [float(10 + i % 50) for i in range(n)],
                                                      "reserved": [float(i % 3) for i in range(n)]}))
        insert_rows(conn, channel_listings, pd.DataFrame({"channel": "taobao", "item_code": codes,
                                                          "listing_id": [str(10_000 + i) for i in range(n)]}))
    engine.dispose()
    top = TaobaoStandin(app_key="bench-key", app_secret="bench-secret", session="bench-session").start()
    top.write_rate = RATE
    for i in range(n):
        top.items[10_000 + i] = {"num": 0, "skus": {}}
    return {"db": str(db), "top": top, "url": top.url, "n": n}


def ours(ctx) -> None:
    from connectors.taobao import TopClient
    from tasks.channels.confirmations import ChannelWriters
    from tasks.channels.stock_sync import make_pacers, sync_stock
    from yidi.db import make_engine
    from yidi.settings import get_settings

    engine = make_engine(f"sqlite:///{ctx['db']}")
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM channel_stock")  # every figure changed since the last run
    settings = get_settings().model_copy(deep=True)
    settings.channels.rate_per_second["taobao"] = RATE
    client = TopClient(url=ctx["url"], app_key="bench-key", app_secret="bench-secret", session="bench-session",
                       attempts=1, keep_alive=True)
    result = sync_stock(engine, ChannelWriters(top=client), settings=settings, channels=["taobao"],
                        pacers=make_pacers(settings, ["taobao"]))
    engine.dispose()
    if result.pushed != ctx["n"]:
        raise RuntimeError(f"incomplete push: {result.as_dict() | {'refusals': len(result.refusals)}}")


def baseline(ctx) -> None:
    time.sleep(ctx["n"] / RATE)


def extra(ctx) -> dict:
    top = ctx["top"]
    return {
        "rate_limit_per_second": RATE,
        "requests": len(top.write_times),
        "max_writes_in_any_second": top.max_writes_in_any_second,
        "throttled": top.throttled,
        "rate_never_exceeded": top.max_writes_in_any_second <= RATE and top.throttled == 0,
    }
