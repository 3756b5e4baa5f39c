"""A store for the risk benchmarks (``kpi``, ``credit``): n orders of n/10 customers in one month with their state
events, shipments, incidents, receivables, dunning steps, payment cases and refunds, written to a SQLite store
(what our steps read) and kept as frames (what the baselines read)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

START = datetime(2026, 11, 1, tzinfo=UTC)
AS_OF = datetime(2026, 11, 30, 4, tzinfo=UTC)
CHANNELS = np.array(["taobao", "website", "email", "spreadsheet", "phone"], dtype=object)
PROVINCES = np.array(
    ["四川省", "贵州省", "云南省", "湖北省", "陕西省", "广东省", "北京市", "上海市"], dtype=object
)
CARRIERS = np.array(["shunfeng", "zhongtong", "yuantong", "yunda", "ems"], dtype=object)


def make_store(n: int, workdir: Path, seed: int = 13) -> dict:
    from yidi.bulk import insert_rows
    from yidi.db import init_db, make_engine
    from yidi.schema import customers, order_events, orders, shipments
    from yidi.schema_settlement import (
        dunning_actions,
        payment_lines,
        payment_matches,
        receivables,
        settlement_cases,  # fmt: skip
        statement_files,
    )
    from yidi.schema_tracking import tracking_incidents

    rng = np.random.default_rng(seed)
    n_customers = max(n // 10, 1)
    ids = np.arange(1, n + 1)
    received = pd.Timestamp(START) + pd.to_timedelta(rng.integers(0, 29 * 86400, n), unit="s")
    state_pick = rng.random(n)
    frames: dict[str, pd.DataFrame] = {}
    frames["customers"] = pd.DataFrame({"id": np.arange(1, n_customers + 1),
                                        "code": [f"C{i:07d}" for i in range(1, n_customers + 1)],
                                        "name": "客户", "created_at": pd.Timestamp(START)})  # fmt: skip
    rejected = state_pick < 0.05
    auto = (state_pick >= 0.05) & (state_pick < 0.08)
    shipped = state_pick >= 0.15
    delivered = state_pick >= 0.30
    frames["orders"] = pd.DataFrame({
        "id": ids, "order_no": [f"YD{i:010d}" for i in ids], "channel": CHANNELS[rng.integers(0, 5, n)],
        "channel_order_id": [f"X{i}" for i in ids], "customer_id": rng.integers(1, n_customers + 1, n),
        "ship_province": PROVINCES[rng.integers(0, len(PROVINCES), n)], "received_at": received,
        "order_time": received - pd.Timedelta(days=int(rng.integers(0, 400))),
        "state": np.where(rejected, "rejected", np.where(auto, "auto_rejected", np.where(delivered, "settled",
                          np.where(shipped, "shipped", "approved")))),
        "payment_state": np.where(rng.random(n) < 0.9, "paid", "unpaid"),
        "payment_method": np.where(rng.random(n) < 0.1, "cod", "alipay"),
        "order_total_fen": rng.integers(1_000, 500_000, n), "review_due_at": received + pd.Timedelta(hours=24),
        "promised_date": (received + pd.Timedelta(days=5)).normalize().tz_localize(None).date,
    })  # fmt: skip
    hours = lambda lo, hi: pd.to_timedelta(rng.uniform(lo, hi, n), unit="h")  # noqa: E731
    t_pending = received + hours(0, 1)
    t_decided = t_pending + hours(1, 40)
    t_shipped = t_decided + hours(2, 60)
    t_delivered = t_shipped + hours(24, 150)
    returned = delivered & (rng.random(n) < 0.03)
    exception = shipped & (rng.random(n) < 0.04)
    approved = ~rejected & ~auto
    events = [
        (ids[~auto], t_pending[~auto], "received", "pending_review"),
        (ids[auto], t_pending[auto], "received", "auto_rejected"),
        (ids[rejected], t_decided[rejected], "pending_review", "rejected"),
        (ids[approved], t_decided[approved], "pending_review", "approved"),
        (ids[shipped], t_shipped[shipped], "allocated", "shipped"),
        (ids[exception], (t_shipped + hours(1, 20))[exception], "shipped", "exception"),
        (ids[delivered], t_delivered[delivered], "in_transit", "delivered"),
        (ids[returned], (t_delivered + hours(24, 100))[returned], "delivered", "returned"),
    ]
    frames["order_events"] = pd.concat([pd.DataFrame({"order_id": i, "occurred_at": t, "from_state": f, "to_state": s})
                                        for i, t, f, s in events], ignore_index=True)  # fmt: skip
    frames["order_events"]["kind"] = "state"
    frames["order_events"]["actor"] = "bench"
    frames["order_events"].insert(0, "id", np.arange(1, len(frames["order_events"]) + 1))
    s_ids = ids[shipped]
    frames["shipments"] = pd.DataFrame({
        "id": np.arange(1, len(s_ids) + 1), "shipment_no": [f"S{i}" for i in s_ids], "order_id": s_ids,
        "carrier": CARRIERS[rng.integers(0, len(CARRIERS), len(s_ids))], "idempotency_key": [f"S{i}" for i in s_ids],
        "shipped_at": t_shipped[shipped], "delivered_at": t_delivered.where(delivered, pd.NaT)[shipped],
        "expected_delivery_date": (t_shipped + pd.Timedelta(days=4)).normalize().tz_localize(None).date[shipped],
    })  # fmt: skip
    cod_refused = s_ids[(frames["orders"]["payment_method"].to_numpy()[shipped] == "cod")
                        & (rng.random(len(s_ids)) < 0.2)]  # fmt: skip
    incident_orders = np.concatenate([cod_refused, ids[exception]])
    incident_kind = np.array(
        ["refused"] * len(cod_refused) + ["damaged"] * int(exception.sum()), dtype=object
    )
    ship_of = pd.Series(frames["shipments"]["id"].to_numpy(), index=s_ids)
    frames["tracking_incidents"] = pd.DataFrame({
        "shipment_id": ship_of.reindex(incident_orders).to_numpy(), "order_id": incident_orders,
        "incident_type": incident_kind, "carrier": "zhongtong", "owner": "ops",
        "opened_at": pd.Timestamp(START) + pd.Timedelta(days=10), "due_at": pd.Timestamp(AS_OF),
    })  # fmt: skip
    r_ids = ids[delivered & (rng.random(n) < 0.4)]
    amount = frames["orders"].set_index("id").loc[r_ids, "order_total_fen"].to_numpy()
    unpaid = rng.random(len(r_ids)) < 0.3
    frames["receivables"] = pd.DataFrame({
        "order_id": r_ids, "customer_id": frames["orders"].set_index("id").loc[r_ids, "customer_id"].to_numpy(),
        "payment_terms": "net", "due_date": (pd.Timestamp(START) + pd.to_timedelta(rng.integers(0, 40, len(r_ids)),
                                                                                    unit="D")).date,
        "amount_fen": amount, "paid_fen": np.where(unpaid, 0, amount), "outstanding_fen": np.where(unpaid, amount, 0),
        "status": np.where(unpaid, "open", "paid"), "updated_at": pd.Timestamp(AS_OF),
    })  # fmt: skip
    dunned = rng.choice(np.arange(1, n_customers + 1), size=max(n_customers // 20, 1), replace=False)
    frames["dunning_actions"] = pd.DataFrame({
        "dedupe_key": [f"d{c}" for c in dunned], "party_key": [f"customer:{c}" for c in dunned], "customer_id": dunned,
        "step_no": rng.integers(1, 5, len(dunned)), "step_name": "step", "overdue_fen": 100, "days_overdue": 10,
        "oldest_due_date": START.date(), "taken_at": pd.Timestamp(START) + pd.Timedelta(days=20),
    })  # fmt: skip
    case_orders = rng.choice(ids, size=max(n // 100, 1), replace=False)
    frames["settlement_cases"] = pd.DataFrame({
        "case_key": [f"k{o}" for o in case_orders], "case_class": "short_paid", "order_id": case_orders,
        "customer_id": None, "summary": "x", "opened_at": pd.Timestamp(START) + pd.Timedelta(days=15),
        "updated_at": pd.Timestamp(START),
    })  # fmt: skip
    refund_orders = rng.choice(ids[delivered], size=max(int(delivered.sum()) // 50, 1), replace=False)
    frames["statement_files"] = pd.DataFrame({"id": [1], "file_hash": ["h"], "file_name": ["f"], "status": ["ingested"],
                                              "received_at": [pd.Timestamp(START)]})  # fmt: skip
    frames["payment_lines"] = pd.DataFrame({
        "id": np.arange(1, len(refund_orders) + 1), "source": "alipay",
        "line_key": [f"L{o}" for o in refund_orders], "file_id": 1, "line_no": 1, "kind": "refund",
        "amount_fen": -100, "txn_time": pd.Timestamp(START) + pd.Timedelta(days=20), "match_status": "matched",
        "ingested_at": pd.Timestamp(START),
    })  # fmt: skip
    frames["payment_matches"] = pd.DataFrame({
        "payment_line_id": frames["payment_lines"]["id"], "order_id": refund_orders, "amount_fen": -100,
        "rule": "bench", "score": 1.0, "matched_at": pd.Timestamp(START) + pd.Timedelta(days=20),
    })  # fmt: skip

    engine = make_engine(f"sqlite:///{workdir / 'risk.db'}")
    init_db(engine)
    tables = {"customers": customers, "orders": orders, "order_events": order_events, "shipments": shipments,
              "tracking_incidents": tracking_incidents, "receivables": receivables, "dunning_actions": dunning_actions,
              "settlement_cases": settlement_cases, "statement_files": statement_files, "payment_lines": payment_lines,
              "payment_matches": payment_matches}  # fmt: skip
    with engine.begin() as conn:
        for name, table in tables.items():
            insert_rows(conn, table, frames[name])
    engine.dispose()
    return {"db": str(workdir / "risk.db"), "frames": frames}
