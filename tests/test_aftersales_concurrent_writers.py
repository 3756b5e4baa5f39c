"""Two after-sales cycles writing at once on one SQLite file (issue 15: the sandbox's scheduled ``after-sales``
run failed with "database is locked" when other scheduled runs wrote in the same minute). Each step's transaction
reads, then writes what it read; opened with ``yidi.db.for_writing`` (BEGIN IMMEDIATE) the second waits its turn
on the busy timeout instead of failing when it tries to upgrade its read to a write."""

from __future__ import annotations

import json
import threading

from aftersales_support import add_order, build_reference, local
from sqlalchemy import func, select

from flows.aftersales import (
    assess_task,
    feedback_alerts_task,
    land_inbox_task,
    restock_task,
    service_task,
    surveys_task,  # fmt: skip
)
from flows.compose import in_process
from yidi.db import make_engine
from yidi.schema_aftersales import aftersales_cases, aftersales_inbox, service_jobs

ROUNDS = 4


def _inbox(root, order_no: str, round_no: int):
    folder = root / "requests" / "woocommerce"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"refunds-{round_no}.json").write_text(json.dumps([
        {"source_id": f"woo-{order_no}-{round_no}", "order_no": order_no, "kind": "退货",
         "requested_at": "2026-12-05T10:00:00+08:00"}], ensure_ascii=False), encoding="utf-8")  # fmt: skip
    return root


def test_two_cycles_writing_at_once_on_one_sqlite_file_both_complete(sqlite_engine, tmp_path):
    build_reference(sqlite_engine)
    orders_of = {"a": ["YD-A1", "YD-A2", "YD-A3", "YD-A4"], "b": ["YD-B1", "YD-B2", "YD-B3", "YD-B4"]}
    for numbers in orders_of.values():
        for order_no in numbers:
            add_order(sqlite_engine, order_no, {"SKU-0009": 1}, delivered=local(2026, 12, 2))
    add_order(sqlite_engine, "YD-SVC", {"SV-REPAIR": 1}, state="approved", delivered=None)
    url = str(sqlite_engine.url)
    barrier, errors, results = threading.Barrier(2), [], {"a": [], "b": []}

    def cycle(name: str) -> None:
        engine = make_engine(url)  # its own pool, its own connections: as a second worker process would
        try:
            for round_no in range(ROUNDS):
                inbox = _inbox(tmp_path / name, orders_of[name][round_no], round_no)
                now = local(2026, 12, 5, 11, round_no)
                for step, args in ((land_inbox_task, (inbox, now, "test")), (assess_task, (now, "test")),
                                   (restock_task, (now, "test")), (service_task, (now,)),
                                   (feedback_alerts_task, (now,)), (surveys_task, (now,))):  # fmt: skip
                    barrier.wait(timeout=60)  # both start each step together: the same minute, as scheduled
                    results[name].append(in_process(step, engine, *args))
        except Exception as exc:  # noqa: BLE001 - the test reports what failed in the thread
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            barrier.abort()
        finally:
            engine.dispose()

    threads = [threading.Thread(target=cycle, args=(name,)) for name in orders_of]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    landed = [r["requests/woocommerce"]["landed"] for name in results for r in results[name][0::6]]
    assert landed == [1] * (2 * ROUNDS)
    with sqlite_engine.connect() as conn:
        counts = {t.name: conn.execute(select(func.count()).select_from(t)).scalar()
                  for t in (aftersales_inbox, aftersales_cases, service_jobs)}  # fmt: skip
        kinds = conn.execute(select(aftersales_cases.c.kind, func.count()).group_by(aftersales_cases.c.kind)).all()
    # eight requests, one case each; the one service order gets its one job although both cycles looked for it
    assert counts == {"aftersales_inbox": 8, "aftersales_cases": 8, "service_jobs": 1}
    assert dict(kinds) == {"return": 8}
