"""K2 receivables risk: the ageing trend is exact — each period end ages the ledger as it stood at that day's
end (orders placed, shipped and paid by then), not today's open items moved back in time."""

from __future__ import annotations

from datetime import UTC, date, datetime

from risk_data import add_customer, add_order, add_payment, add_shipment

from flows.risk import receivables_task
from tasks.risk.receivables import AGE_BUCKETS


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(hour=4, tzinfo=UTC)  # 12:00 in Chongqing, the same business day


def test_the_ageing_trend_ages_the_ledger_as_it_stood_at_each_period_end(engine):
    with engine.begin() as conn:
        k = add_customer(conn, "NET30", payment_terms="net", net_days=30)
        net = {"payment_method": "bank_transfer", "payment_state": "unpaid"}

        def order(placed: str, total: int, shipped: str | None) -> int:
            oid = add_order(conn, k, received_at=at(placed), state="shipped" if shipped else "approved",
                            order_total_fen=total, goods_total_fen=total, **net)  # fmt: skip
            if shipped:
                add_shipment(conn, oid, shipped_at=at(shipped))
            return oid

        # net 30 days from shipment: due 08-01, 09-20, 11-24; the fourth is not shipped (nothing due yet)
        o1 = order("2026-07-01", 10_000, "2026-07-02")
        o2 = order("2026-08-20", 20_000, "2026-08-21")
        order("2026-10-20", 30_000, "2026-10-25")
        order("2026-11-05", 40_000, None)
        add_payment(conn, o1, 10_000, at("2026-10-15"))  # paid in full in October
        add_payment(conn, o2, 5_000, at("2026-11-10"))  # a quarter paid in November
    ends = [date(2026, 9, 30), date(2026, 10, 31), date(2026, 11, 30)]
    result = receivables_task.fn(at("2026-11-30"), ends, engine)
    trend = result["ageing_trend"]
    assert list(trend.index) == AGE_BUCKETS
    # Worked by hand (days past due at the period end; buckets not due, 1-30, 31-60, 61-90, over 90):
    # 09-30: o1 60 days → 31-60 (10 000); o2 10 days → 1-30 (20 000); o3 not placed yet, o4 neither.
    # 10-31: o1 paid on 10-15; o2 41 days → 31-60 (20 000); o3 due 11-24 → not due (30 000).
    # 11-30: o2 71 days, 15 000 left → 61-90; o3 6 days → 1-30 (30 000); o4 unshipped → not due (40 000).
    assert {end: trend[end].tolist() for end in trend.columns} == {
        "2026-09-30": [0, 20_000, 10_000, 0, 0],
        "2026-10-31": [30_000, 0, 20_000, 0, 0],
        "2026-11-30": [40_000, 30_000, 0, 15_000, 0],
    }
