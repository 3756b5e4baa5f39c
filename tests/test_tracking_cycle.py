"""Polling cycles against the stand-in carrier over loopback, on SQLite and PostgreSQL: storage once per event,
order states, incidents, claims, notices, and the faults of issue 6 (rate limits, a carrier down for an hour,
unknown waybills, carrier-code changes, duplicate and out-of-order events)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from connectors.kuaidi100 import Checkpoint, Credentials, TrackingResult
from demo.standins.kuaidi100 import Kuaidi100Standin, start
from demo.standins.parcel_routes import SimClock
from demo.tracking import make_shipped_orders, standin_registrations
from flows.compose import in_process
from flows.tracking import poll_cycle
from tasks.tracking.applying import apply_outcomes
from tasks.tracking.incidents import detect_time_exceptions, resolve_incident
from tasks.tracking.polling import PollOutcome, make_client, make_pacer
from tasks.tracking.store import due_shipments
from yidi.bulk import read_frame
from yidi.schema import notification_outbox, order_events, orders, shipments
from yidi.schema_tracking import liability_claims, tracking_events, tracking_incidents
from yidi.settings import get_settings
from yidi.tracking_policy import TrackingPolicy
from yidi.workdays import add_working_days

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 09:00 in Beijing
CREDS = Credentials("standin-customer", "standin-key", "salt")


@dataclass
class World:
    engine: Engine
    carrier: Kuaidi100Standin
    policy: TrackingPolicy
    clock: SimClock

    def client(self):
        return make_client(self.policy, pacer=make_pacer(self.policy, shared_limit=False), credentials=CREDS,
                           query_url=self.carrier.query_url)  # fmt: skip

    def add(self, n: int, scenario: str = "normal", *, register=True, prefix="T", **kw):
        with self.engine.begin() as conn:
            ships = make_shipped_orders(conn, n, shipped_at=T0, prefix=prefix, **kw)
            regs = standin_registrations(conn, scenarios=dict.fromkeys(ships["waybill_no"], scenario))
        if register:
            wanted = set(ships["waybill_no"])
            self.carrier.register_many([r for r in regs if r["num"] in wanted])
        return ships

    def cycle(self, **kw) -> dict:
        with self.client() as client:
            return poll_cycle(in_process, engine=self.engine, client=client, policy=self.policy, now=self.clock.now(),
                              actor="test", **kw)  # fmt: skip

    def run_until(self, hours: float, step: float = 6) -> None:
        end = self.clock.now() + timedelta(hours=hours)
        while self.clock.now() < end:
            self.clock.advance(hours=step)
            self.cycle()

    def frame(self, stmt):
        with self.engine.connect() as conn:
            return read_frame(conn, stmt)

    def scalar(self, stmt):
        with self.engine.connect() as conn:
            return conn.execute(stmt).scalar()


@pytest.fixture
def world(engine):
    """On SQLite and PostgreSQL: for behaviour that depends on the database (keys, upserts, windows)."""
    yield from _world(engine)


@pytest.fixture
def sworld(sqlite_engine):
    """SQLite only: for logic that does not depend on the database."""
    yield from _world(sqlite_engine)


def _world(engine):
    policy = get_settings().tracking.model_copy(
        update={"requests_per_second": 1000, "retry_backoff_seconds": 0.01, "rate_limited_backoff_seconds": 0.01,
                "max_attempts": 3, "circuit_breaker_failures": 5, "http_workers": 4}
    )  # fmt: skip
    clock = SimClock(T0)
    with start(clock=clock) as carrier:
        yield World(engine, carrier, policy, clock)


def order_state(world, order_id) -> str:
    return world.scalar(select(orders.c.state).where(orders.c.id == int(order_id)))


def incidents(world):
    return world.frame(select(tracking_incidents).order_by(tracking_incidents.c.id))


def test_normal_delivery_moves_the_order_and_fills_its_timeline(world):
    ships = world.add(1, "normal", expected_delivery_date=date(2026, 3, 6))
    sid, oid = int(ships["shipment_id"][0]), int(ships["order_id"][0])
    first = world.cycle()
    assert first["outcomes"] == {"no_result": 1}  # nothing scanned yet: Kuaidi100 says "no result"
    world.clock.advance(hours=5)
    world.cycle()
    assert order_state(world, oid) == "in_transit"
    world.run_until(hours=72, step=8)
    ship = world.frame(select(shipments).where(shipments.c.id == sid)).iloc[0]
    assert ship["status"] == "delivered" and ship["delivered_at"] is not None
    assert order_state(world, oid) == "delivered"
    route = world.carrier.state.waybills[ship["waybill_no"]].route
    assert world.scalar(select(func.count()).select_from(tracking_events)) == len(route)
    timeline = world.frame(
        select(order_events).where(order_events.c.order_id == oid).order_by(order_events.c.id)
    )
    assert (timeline["kind"] == "tracking").sum() == len(route)
    assert list(timeline.loc[timeline["kind"] == "state", "to_state"]) == ["in_transit", "delivered"]
    notices = world.frame(select(notification_outbox.c.template, notification_outbox.c.medium))
    assert sorted(map(tuple, notices.values)) == [("tracking_delivered", "email"), ("tracking_delivered", "sms")]
    assert incidents(world).empty
    assert world.carrier.stats()["too_frequent"] == 0


def _result(checkpoints, state) -> TrackingResult:
    cps = [
        Checkpoint(time=t, time_text=str(t), context=text, status_code=code) for t, text, code in checkpoints
    ]
    return TrackingResult(com="yuantong", num="X", state=state, ischeck=False, checkpoints=cps)


def test_duplicate_and_out_of_order_events_are_stored_once_and_never_move_status_back(world):
    ships = world.add(1, register=False)
    frame = world.frame(
        select(shipments.c.id.label("shipment_id"), shipments.c.order_id, shipments.c.shipment_no,
               shipments.c.carrier, shipments.c.waybill_no).where(shipments.c.id == int(ships["shipment_id"][0]))
    )  # fmt: skip
    sid = int(frame["shipment_id"][0])
    a = (T0 + timedelta(hours=1), "已揽收", "103")
    b = (T0 + timedelta(hours=5), "快件已到达【重庆转运中心】", "1002")
    c = (T0 + timedelta(hours=30), "快递员正在派件", "5")
    newer, older = _result([c, b, a], 5), _result([b, a], 0)

    def apply(result, source="poll"):
        with world.engine.begin() as conn:
            return apply_outcomes(conn, frame, [PollOutcome(sid, "ok", result=result)], T0 + timedelta(days=2),
                                  world.policy, source=source, actor="test")  # fmt: skip

    assert apply(newer).new_events == 3
    assert apply(older).new_events == 0  # late, older answer: nothing new
    assert apply(newer, source="push").new_events == 0  # same checkpoints from a push: same rows
    # A push that arrives late with one checkpoint we never saw, older than what we have.
    late = _result([(T0 + timedelta(hours=3), "快件已发出", "1002"), a], 0)
    assert apply(late, source="push").new_events == 1
    status = world.scalar(select(shipments.c.status).where(shipments.c.id == sid))
    assert status == "out_for_delivery"
    assert world.scalar(select(func.count()).select_from(tracking_events)) == 4
    kinds = world.frame(
        select(order_events.c.kind).where(order_events.c.order_id == int(frame["order_id"][0]))
    )
    assert (kinds["kind"] == "tracking").sum() == 4


def test_damage_opens_incident_with_claim_and_notice_and_resolution_closes_it(world):
    ships = world.add(1, "damaged", insured_every=1)  # insured
    oid = int(ships["order_id"][0])
    world.run_until(hours=96, step=8)
    inc = incidents(world)
    assert list(inc["incident_type"]) == ["damaged"]
    row = inc.iloc[0]
    assert row["owner"] == "claims-desk" and row["status"] == "open"
    assert row["due_at"] == add_working_days(row["opened_at"], 2)
    assert "破损" in row["evidence"]
    claim = world.frame(select(liability_claims)).iloc[0]
    assert (claim["claim_type"], bool(claim["insured"])) == ("damage", True)
    assert claim["declared_value_fen"] == 50_000 and claim["insured_value_fen"] == 50_000
    assert claim["claim_amount_fen"] == 50_000 and "保价" in claim["basis"]
    # Delivered, but the damage keeps the order in exception until someone resolves it.
    assert world.scalar(select(shipments.c.status)) == "delivered"
    assert order_state(world, oid) == "exception"
    templates = set(world.frame(select(notification_outbox.c.template))["template"])
    assert "tracking_damaged" in templates
    with world.engine.begin() as conn:
        resolve_incident(conn, int(row["id"]), "已补发新货", actor="user:test", policy=world.policy,
                         claim_status="filed")  # fmt: skip
    assert order_state(world, oid) == "delivered"
    assert world.scalar(select(liability_claims.c.status)) == "filed"
    assert "tracking_resolved" in set(world.frame(select(notification_outbox.c.template))["template"])


def test_loss_uninsured_claim_is_capped_at_a_multiple_of_freight(sworld):
    sworld.add(1, "lost", insured_every=0)
    sworld.run_until(hours=96, step=8)
    assert "lost" in set(incidents(sworld)["incident_type"])
    claim = sworld.frame(select(liability_claims).where(liability_claims.c.claim_type == "loss")).iloc[0]
    assert not claim["insured"] and claim["insured_value_fen"] == 0
    assert claim["claim_amount_fen"] == 3 * 1_800  # min(declared 500 yuan, 3 x freight 18 yuan)
    assert sworld.scalar(select(shipments.c.status)) == "exception"


def test_refusal_is_one_incident_and_the_order_ends_returned_after_resolution(sworld):
    ships = sworld.add(1, "refused", carriers=["yuantong"])
    oid = int(ships["order_id"][0])
    sworld.run_until(hours=150, step=8)
    inc = incidents(sworld)
    assert list(inc["incident_type"]) == ["refused"]
    assert sworld.scalar(select(shipments.c.status)) == "returned"
    assert order_state(sworld, oid) == "exception"
    with sworld.engine.begin() as conn:
        resolve_incident(
            conn, int(inc["id"][0]), "退件已入库，已退款", actor="user:test", policy=sworld.policy
        )
    assert order_state(sworld, oid) == "returned"


@pytest.mark.parametrize(
    ("expected", "now_local", "late"),
    [
        (date(2026, 3, 6), datetime(2026, 3, 7, 12), False),  # Friday expected, Saturday: not a working day
        (date(2026, 3, 6), datetime(2026, 3, 9, 10), True),  # Monday
        (date(2026, 9, 30), datetime(2026, 10, 7, 12), False),  # National Day holiday
        (date(2026, 9, 30), datetime(2026, 10, 8, 10), True),
    ],
)
def test_delay_follows_the_working_day_calendar(sworld, expected, now_local, late):
    sworld.add(1, register=False, expected_delivery_date=expected)
    now = now_local.replace(tzinfo=__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    with sworld.engine.begin() as conn:
        detect_time_exceptions(conn, now, sworld.policy, actor="test")
    assert ("delay" in set(incidents(sworld)["incident_type"])) is late


def test_stale_shipment_opens_incident_only_when_a_poll_confirms_the_silence(sworld):
    sworld.add(1, "stale")
    sworld.clock.advance(hours=8)
    sworld.cycle()  # picked up, at the hub
    # Carrier down when we next look, 60 hours later: our failure must not look like the carrier's silence.
    sworld.clock.advance(hours=60)
    sworld.carrier.down(timedelta(hours=1))
    sworld.cycle()
    assert incidents(sworld).empty
    sworld.clock.advance(hours=2)
    sworld.cycle()  # the carrier answers, still nothing new: now it is stale
    assert list(incidents(sworld)["incident_type"]) == ["stale"]
    sworld.run_until(hours=72, step=12)  # the parcel moves again
    assert incidents(sworld).iloc[0]["status"] == "resolved"


def test_carrier_down_for_an_hour(world):
    ships = world.add(60, "normal")
    world.clock.advance(hours=10)
    world.carrier.down(timedelta(hours=1))
    summary = world.cycle()
    stats = world.carrier.stats()
    assert summary["breaker"] and "unavailable" in summary["breaker"]
    assert summary["outcomes"].get("ok", 0) == 0
    assert summary["outcomes"]["failed"] + summary["outcomes"]["skipped"] == 60
    # The breaker stopped us: far fewer requests than 60 waybills x 3 attempts.
    assert stats["requests"] <= (5 + 4) * 3
    assert world.scalar(select(func.count()).where(shipments.c.last_polled_at.is_not(None))) == 0
    assert incidents(world).empty
    assert set(world.frame(select(orders.c.state))["state"]) == {"shipped"}
    world.clock.advance(minutes=30)
    assert world.cycle()["outcomes"].get("ok", 0) == 0
    world.clock.advance(minutes=31)
    recovered = world.cycle()
    assert recovered["outcomes"] == {"ok": 60} and not recovered["breaker"]
    assert set(world.frame(select(orders.c.state))["state"]) == {"in_transit"}
    assert len(ships) == 60


def test_rate_limit_errors_are_retried_and_succeed(sworld):
    sworld.add(20, "normal")
    sworld.clock.advance(hours=10)
    sworld.carrier.fail_next(6, "rate_limited")
    summary = sworld.cycle()
    assert summary["outcomes"] == {"ok": 20}
    assert sworld.carrier.stats()["outcomes"]["failed_rate_limited"] == 6


def test_one_waybills_failure_never_fails_the_batch(sworld):
    sworld.add(10, "normal")
    sworld.clock.advance(hours=10)
    sworld.policy = sworld.policy.model_copy(update={"max_attempts": 1})
    sworld.carrier.fail_next(1, "reset")
    summary = sworld.cycle()
    assert summary["outcomes"] == {"ok": 9, "failed": 1}
    assert summary["errors"] and summary["errors"][0]["outcome"] == "failed"


def test_unknown_waybill_opens_incident_and_closes_when_the_carrier_learns_it(sworld):
    ships = sworld.add(1, register=False)
    sworld.cycle()
    sworld.run_until(hours=30, step=8)
    inc = incidents(sworld)
    assert list(inc["incident_type"]) == ["unknown_waybill"] and inc["owner"][0] == "warehouse-dispatch"
    with sworld.engine.connect() as conn:
        sworld.carrier.register_many(standin_registrations(conn))
    sworld.clock.advance(hours=8)
    sworld.cycle()
    assert incidents(sworld)["status"][0] == "resolved"
    assert sworld.scalar(select(shipments.c.status)) != "info_received"
    assert len(ships) == 1


def test_carrier_code_changed_by_the_carrier(sworld):
    ships = sworld.add(1, "normal", carriers=["yuantong"])
    num = ships["waybill_no"][0]
    sworld.clock.advance(hours=6)
    sworld.cycle()
    before = sworld.scalar(select(func.count()).select_from(tracking_events))
    sworld.carrier.change_carrier(num, "zhongtong")
    sworld.clock.advance(hours=40)
    summary = sworld.cycle()
    assert summary["carrier_changes"] == 1
    assert sworld.scalar(select(shipments.c.carrier)) == "zhongtong"
    reasons = sworld.frame(select(order_events.c.reason).where(order_events.c.kind == "tracking"))["reason"]
    assert any("yuantong -> zhongtong" in r for r in reasons)
    after = sworld.scalar(select(func.count()).select_from(tracking_events))
    sworld.clock.advance(hours=40)
    sworld.cycle()  # queried under the new code (with the phone ZTO requires): no duplicates of old events
    assert sworld.scalar(select(func.count()).select_from(tracking_events)) > after > before
    counts = sworld.frame(
        select(tracking_events.c.context_hash, tracking_events.c.occurred_at, func.count().label("n"))
        .group_by(tracking_events.c.context_hash, tracking_events.c.occurred_at)
    )  # fmt: skip
    assert counts["n"].max() == 1
    assert sworld.scalar(select(shipments.c.status)) == "delivered"


def test_each_waybill_is_queried_no_more_often_than_allowed(sworld):
    sworld.add(5, "normal")
    sworld.clock.advance(hours=4)
    assert sworld.cycle()["due"] == 5
    requests = sworld.carrier.stats()["requests"]
    assert sworld.cycle()["due"] == 0
    sworld.clock.advance(minutes=29)
    assert sworld.cycle()["due"] == 0
    assert sworld.carrier.stats()["requests"] == requests
    sworld.clock.advance(minutes=2)
    assert sworld.cycle()["due"] == 5
    assert sworld.carrier.stats()["too_frequent"] == 0
    with sworld.engine.connect() as conn:
        assert due_shipments(conn, sworld.clock.now(), sworld.policy).empty
