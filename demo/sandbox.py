"""The live sandbox (issue 15, Build 8; `make sandbox`): the stand-ins as local services, the channels configured
for them, new orders arriving for as long as it runs.

``Sandbox`` starts, on free loopback ports: the platform (TOP) and the website (WooCommerce) with fresh stand-in
credentials, the mailbox (IMAP), the mail relay (SMTP) and the SMS gateway, the carrier's e-waybill gateway, the
suppliers' purchase-order gateway and Kuaidi100 (tracking; its parcels move on a clock ``speed`` times real time).
It writes the policy file that points every channel at them (``$YIDI_HOME/sandbox/yidi.toml``) and the environment
the worker needs (``$YIDI_HOME/sandbox/env.json``: the policy file and the stand-ins' credentials), which
``app.local_stack`` hands to the worker it starts. ``feed()`` adds a few orders to the platform, the website and the
mailbox each tick (their modified time just past the platform's index lag), so each scheduled ``intake-orders`` run
finds new ones; ``seed_store()`` loads the catalog, customers, stock and supplier prices those orders need.

Run as a service: ``python -m demo.sandbox`` (``make sandbox`` starts it before the stack, ``make down`` stops it).
``drop_payment_files()`` writes, every ``payment_every`` ticks (the sandbox's compressed "day"), what the money side
would deliver for the orders paid since the last drop: the Alipay bill and the WeChat Pay bill of the orders paid
with them, and an ICBC statement crediting the bank transfers, in the stand-ins' formats (``demo.standins.
payment_files``, the shapes ``tests/data/formats`` confirms) into the settlement inbox ``reconcile-settlements``
reads. Not here yet: a stand-in reviewer (a person reviews in the UI, as in production), so orders stop at manual
review until someone decides them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from demo.data import demo_staff_toml
from demo.standins import carrier_shipping, kuaidi100, supplier
from demo.standins.imap import ImapStandin
from demo.standins.mail import body_email
from demo.standins.orders_data import demo_neutral_orders
from demo.standins.parcel_routes import SimClock
from demo.standins.sms import SmsGatewayStandIn
from demo.standins.smtp import SmtpStandIn
from demo.standins.taobao import TaobaoStandin, trade_from_neutral
from demo.standins.woocommerce import WooCommerceStandin, order_from_neutral
from yidi.settings import Settings
from yidi.workdays import BUSINESS_TZ

# Parcels' fortunes in the sandbox: most arrive; a few are held up, refused, damaged, sent back or lost.
PARCEL_SCENARIOS = {"normal": 0.86, "delayed": 0.03, "problem": 0.03, "refused": 0.03, "damaged": 0.02,
                    "returned": 0.02, "lost": 0.01}  # fmt: skip


def sandbox_cadence(tick: float, day_ticks: int) -> dict[str, float]:
    """How often each scheduled deployment runs under ``make sandbox``, in seconds, on the sandbox's clock: a tick
    brings new orders, a "day" is ``day_ticks`` ticks (the payment files' day). Deployments not named keep the
    schedule of prefect.yaml (the daily reconcile at 10:30, the weekly analysis, the monthly audit)."""
    day = tick * day_ticks
    # Each flow run is a fresh process (10-20 s on a busy 2-core machine) and the worker runs three at a time, so
    # about six runs a minute at the default tick (30 s): the order path every other tick, the rest once a day.
    return {
        "intake-orders": 2 * tick,  # orders arrive every tick; each run takes what came since the last
        "fulfilment-handoff": 2 * tick,
        "poll-carriers": 2 * tick,  # subscribes new parcels to the carrier's pushes, polls what pushes missed
        # prefect.yaml's trigger runs it after each intake run; seen under `make sandbox`, the server's trigger did not
        # fire for the interval-scheduled intake runs (orders stayed received), so the sandbox schedules it as well
        "auto-review": 2 * tick,
        "send-notifications": 4 * tick,  # review decisions and auto-review send their own notices at once
        "confirm-shipments": day,
        "intercept-parcels": day,
        "after-sales": day,
        "check-review-deadlines": day,
        "sync-channel-stock": day,
        "reconcile-settlements-on-demand": day,  # the providers' files arrive once a day
        "assess-risk-and-kpis": day,
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sandbox_dir(home: Path) -> Path:
    path = home / "sandbox"
    path.mkdir(parents=True, exist_ok=True)
    return path


def env_file(home: Path) -> Path:
    return home / "sandbox" / "env.json"


class Sandbox:
    """Every stand-in as a service and the policy pointing at them; ``feed()`` brings new orders."""

    def __init__(self, home: Path, *, orders_per_tick: int = 6, day_seconds: float = 300.0, seed: int = 31,
                 payment_every: int = 10):  # fmt: skip
        self.home, self.orders_per_tick, self.seed = Path(home), orders_per_tick, seed
        self.payment_every, self.drops, self._paid = payment_every, 0, set()
        # the sandbox's "day" in real seconds: a parcel's journey takes its share of one (two days: two sandbox days)
        self.day_seconds = day_seconds
        self.route_scale = day_seconds / 86_400
        self.ticks = 0
        self._next_tid, self._next_woo = 3_950_000_000_000_000_000, 70_000
        self._services: list = []

    def start(self) -> Sandbox:
        policy = Settings().intake  # the default env names: the sandbox's policy keeps them
        track = Settings().tracking
        self.env = {
            policy.taobao.app_key_env: secrets.token_hex(4), policy.taobao.app_secret_env: secrets.token_hex(16),
            policy.taobao.session_env: secrets.token_hex(12),
            policy.woocommerce.consumer_key_env: "ck_" + secrets.token_hex(20),
            policy.woocommerce.consumer_secret_env: "cs_" + secrets.token_hex(20),
            policy.email.user_env: "orders@example.com", policy.email.password_env: secrets.token_urlsafe(12),
            track.customer_env: "sandbox-customer", track.key_env: secrets.token_hex(8),
            track.salt_env: secrets.token_hex(8), track.interception.secret_env: secrets.token_hex(8),
            track.interception.partner_id_env: "sandbox-monthly-account",
            "YIDI_CARRIER_API_TOKEN": secrets.token_hex(8), "YIDI_SUPPLIER_API_TOKEN": secrets.token_hex(8),
            # The Prefect server `make sandbox` starts: its schedules run every few seconds, so it keeps a few runs
            # of each ahead (not 100: a thousand scheduled runs kept its SQLite database busy enough to answer 503)
            "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "5", "PREFECT_SERVER_SERVICES_SCHEDULER_MIN_RUNS": "2",
            "PREFECT_SERVER_SERVICES_SCHEDULER_MIN_SCHEDULED_TIME": "PT2M",
            # nor marks runs Late: on a busy machine runs start a little after their second, and the late-runs
            # service's writes then met the worker's on the server's SQLite ("database is locked", hundreds a run)
            "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
            # the worker runs three flow runs at a time: a dozen deployments every few seconds would otherwise start
            # a dozen processes at once on a laptop's cores (and queue a dozen writers on the SQLite store)
            "YIDI_WORKER_LIMIT": "3",
            # and on the SQLite store every write transaction takes the write lock first (yidi.db): the runs, the
            # push receiver and the stand-ins here all write, and a deferred transaction cannot wait its turn
            "YIDI_SQLITE_WRITE_FIRST": "1",
        }  # fmt: skip
        e = self.env
        self.top = self._up(TaobaoStandin(app_key=e[policy.taobao.app_key_env],
                                          app_secret=e[policy.taobao.app_secret_env],
                                          session=e[policy.taobao.session_env]))  # fmt: skip
        self.shop = self._up(WooCommerceStandin(consumer_key=e[policy.woocommerce.consumer_key_env],
                                                consumer_secret=e[policy.woocommerce.consumer_secret_env]))
        self.imap = self._up(ImapStandin(user=e[policy.email.user_env], password=e[policy.email.password_env]))
        self.smtp = self._up(SmtpStandIn())
        self.sms = self._up(SmsGatewayStandIn())
        self.carrier = self._up(carrier_shipping.start(token=e["YIDI_CARRIER_API_TOKEN"]), started=True)
        self.supplier = self._up(supplier.start(token=e["YIDI_SUPPLIER_API_TOKEN"]), started=True)
        # Real time, compressed journeys: every scan at a real time (none in the future, so nothing is "late"), a
        # two-day journey in two sandbox days; most parcels arrive, some meet trouble (exceptions and returns).
        self.kuaidi100 = self._up(kuaidi100.start(customer=e[track.customer_env], key=e[track.key_env],
                                                  secret=e[track.interception.secret_env], clock=SimClock(speed=1.0), auto_register=True,
                                                  route_scale=self.route_scale, scenario_weights=PARCEL_SCENARIOS),
                                 started=True)  # fmt: skip
        self.callback_port = free_port()  # `yidi tracking callbacks` (started by app.local_stack) listens here
        self.policy_path = sandbox_dir(self.home) / "yidi.toml"
        self.policy_path.write_text(self.policy_text(), encoding="utf-8")
        self.env["YIDI_CONFIG"] = str(self.policy_path)
        env_file(self.home).write_text(json.dumps(self.env, indent=2), encoding="utf-8")
        env_file(self.home).chmod(0o600)  # stand-in credentials, but credentials
        return self

    def _up(self, service, started: bool = False):
        service = service if started else service.start()
        self._services.append(service)
        return service

    def policy_text(self) -> str:
        """The policy file: every channel on, pointed at its stand-in (secrets stay in the environment)."""
        return f'''# Written by the sandbox (demo/sandbox.py): every channel points at a local stand-in.
[intake.taobao]
enabled = true
url = "{self.top.url}"
lag_seconds = 0

[intake.woocommerce]
enabled = true
url = "{self.shop.url}"

[intake.email]
enabled = true
source = "imap"
host = "{self.imap.host}"
port = {self.imap.port}

[notifications]
smtp_host = "127.0.0.1"
smtp_port = {self.smtp.port}
sms_gateway_url = "{self.sms.url}"

[fulfilment]
carrier_api_url = "{self.carrier.url}"
supplier_api_url = "{self.supplier.url}"

[tracking]
query_url = "{self.kuaidi100.query_url}"
subscribe_url = "{self.kuaidi100.subscribe_url}"
push_enabled = true
callback_port = {self.callback_port}

[tracking.interception]
url = "{self.kuaidi100.intercept_url}"

# The seller's review policy here: an order that passed every automated check is approved at once; orders with a
# finding for a person (cash on delivery, installments, credit) wait for the sandbox's stand-in reviewer.
[review]
auto_approve_clean = true

{demo_staff_toml()}'''

    def seed_store(self) -> dict[str, int]:
        """What the channels' orders need in the store the worker uses, loaded once: the catalog and customers
        (else every order is rejected for an unknown item), stock receipts and supplier prices (else nothing ships);
        the demo's own spreadsheets (``make demo``)."""
        from demo.flows import write_reference_files
        from demo.fulfilment import write_demo_fulfilment_files
        from tasks.fulfilment.receipts import load_stock_file
        from tasks.fulfilment.stock import StockFileError, sync_warehouses
        from tasks.fulfilment.suppliers import load_supplier_prices_file
        from tasks.reference import load_catalog, load_customers
        from yidi.db import get_engine, init_db
        from yidi.settings import get_settings

        engine = get_engine()
        init_db(engine)
        catalog, customers = write_reference_files(self.home)
        # the tasks' bodies: this is no flow run (and the sandbox starts before any Prefect server)
        counts = {"catalog": load_catalog.fn(catalog), "customers": load_customers.fn(customers)}
        stock, prices, _count_sheet = write_demo_fulfilment_files(sandbox_dir(self.home))
        with engine.begin() as conn:
            sync_warehouses(conn, get_settings().fulfilment)
            try:
                load_stock_file(conn, stock, actor="sandbox")
            except StockFileError:  # loaded by an earlier sandbox in this home
                pass
            load_supplier_prices_file(conn, prices)
        return counts

    def feed(self, now: datetime | None = None) -> dict[str, int]:
        """One tick's new orders: on the platform, the website and in the mailbox, modified a minute ago."""
        now = now or datetime.now(UTC)
        self.ticks += 1
        orders = demo_neutral_orders(self.orders_per_tick, seed=self.seed + self.ticks)
        for order in orders:  # placed just now: the next intake run's window holds them
            order["order_time"], order["modified"] = now - timedelta(minutes=3), now - timedelta(minutes=2)
            order["ref"] = f"S{self.ticks:04d}{order['ref']}"
        third = max(1, len(orders) // 3)
        for order in orders[:third]:
            self._next_tid += 1
            self.top.add_trade(trade_from_neutral(order, self._next_tid))
        for order in orders[third : 2 * third]:
            self._next_woo += 1
            self.shop.add_order(order_from_neutral(order, self._next_woo))
        for order in orders[2 * third :]:
            self.imap.add_message(body_email(order, order_id=f"EM-{order['ref']}").as_bytes())
        return {"taobao": third, "woocommerce": third, "email": len(orders) - 2 * third}

    def drop_payment_files(self, now: datetime | None = None) -> dict[str, int]:
        """The providers' files for the orders in the store not yet in one: per source, how many lines written.

        Paid at the cashier (Alipay, WeChat Pay): every order that arrived, even one review later refuses (its
        refund is the shop's to make). A bank transfer: credited for an order not refused, the order number in
        the memo as customers write it. File names carry the drop number, so a second drop on one day adds a file."""
        import pandas as pd
        from sqlalchemy import select

        from demo.standins.payment_files import (
            DEFAULT_ACCOUNTS,
            bank_file_name,
            write_alipay_bill,
            write_bank_statement,
            write_wechatpay_bill,
        )
        from tasks.settlement.files import inbox_dir
        from yidi.bulk import read_frame
        from yidi.db import get_engine
        from yidi.schema import orders

        now = now or datetime.now(UTC)
        with get_engine().connect() as conn:
            placed = read_frame(conn, select(orders.c.order_no, orders.c.customer_name, orders.c.payment_method,
                                             orders.c.order_total_fen, orders.c.order_time, orders.c.state)
                                .where(orders.c.payment_method.in_(["alipay", "wechatpay", "bank_transfer"]))
                                .order_by(orders.c.id))  # fmt: skip
        placed = placed[~placed["order_no"].isin(self._paid)]
        self.drops += 1
        day, inbox, counts = now.astimezone(BUSINESS_TZ).date(), inbox_dir(), {}
        paid_at = pd.to_datetime(placed["order_time"], utc=True) + pd.Timedelta(minutes=1)  # paid at checkout
        for method in ("alipay", "wechatpay", "bank_transfer"):
            mine = placed["payment_method"] == method
            if method == "bank_transfer":
                mine &= ~placed["state"].isin(["rejected", "auto_rejected"])
            part = placed[mine]
            if part.empty:
                continue
            lines = pd.DataFrame({"merchant_order_no": part["order_no"].to_numpy(), "amount_fen": part[
                "order_total_fen"].astype("int64").to_numpy(), "txn_time": paid_at[mine].to_numpy(),
                "payer_name": None, "memo": None})  # fmt: skip
            lines["txn_time"] = pd.to_datetime(lines["txn_time"], utc=True)
            if method == "alipay":
                write_alipay_bill(lines.assign(kind="payment"),
                                  inbox / "alipay" / f"alipay-{day:%Y%m%d}-{self.drops:03d}.zip", day=day)
            elif method == "wechatpay":
                write_wechatpay_bill(lines.assign(kind="payment"),
                                     inbox / "wechatpay" / f"wechatpay-{day:%Y%m%d}-{self.drops:03d}.csv")
            else:
                lines = lines.assign(kind="credit", merchant_order_no=None, payer_name=part["customer_name"].to_numpy(),
                                     memo=[f"货款 {n}" for n in part["order_no"]])  # fmt: skip
                name = bank_file_name("icbc", DEFAULT_ACCOUNTS["bank:icbc"], day).replace(
                    f"{day:%Y%m%d}", f"{day:%Y%m%d}-{self.drops:03d}")
                write_bank_statement(lines, inbox / "bank-icbc" / name, template_key="icbc", day=day)
            counts[method] = len(part)
            self._paid.update(part["order_no"])
        return counts

    def warehouse_day(self) -> dict[str, int]:
        """What the factory, the suppliers and the warehouse do in a sandbox "day", so ordered goods keep coming
        (else stock runs out in an hour and every order waits for production): production requests produced and
        passed by the quality check, purchase orders sent to the suppliers received, and a delivery restocking every
        stocked item (a receipt file of its own each day). The task functions people's commands call
        (``yidi fulfilment produce|qc|receive``); the next ``fulfilment-handoff`` allocates what arrived."""
        from sqlalchemy import select

        from demo.fulfilment import write_demo_fulfilment_files
        from tasks.fulfilment.receipts import (
            load_stock_file,
            receive_purchase_order,
            record_production_output,
            record_quality_check,
        )
        from yidi.db import for_writing, get_engine
        from yidi.schema_fulfilment import production_requests, purchase_requests

        done = {"produced": 0, "received": 0, "restocked": 0}
        engine = for_writing(get_engine())
        with engine.begin() as conn:
            planned = conn.execute(select(production_requests.c.request_no, production_requests.c.quantity)
                                   .where(production_requests.c.status == "planned")).all()  # fmt: skip
            for request_no, quantity in planned:
                record_production_output(conn, request_no, quantity, actor="sandbox:factory")
                record_quality_check(conn, request_no, quantity, inspector="沙盒质检员", actor="sandbox:factory")
                done["produced"] += 1
            sent = conn.execute(select(purchase_requests.c.po_no).where(purchase_requests.c.status == "sent")
                                .distinct()).scalars().all()  # fmt: skip
            for po_no in sent:
                receive_purchase_order(conn, po_no, actor="sandbox:warehouse")
                done["received"] += 1
            folder = sandbox_dir(self.home) / f"receipts-{self.drops:03d}"
            stock, _prices, _count = write_demo_fulfilment_files(folder)
            import pandas as pd

            frame = pd.read_csv(stock, encoding="gbk")
            frame["备注"] = f"沙盒到货 {self.drops:03d}"  # a file of its own each day (the receipt reference)
            frame.to_csv(stock, index=False, encoding="gbk")
            done["restocked"] = load_stock_file(conn, stock, actor="sandbox:warehouse").rows
        return done

    def stop(self) -> None:
        for service in reversed(self._services):
            service.stop()
        env_file(self.home).unlink(missing_ok=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class StandInReviewer:
    """A person at the review form, for the sandbox only (production has people): while pending orders wait, it
    starts a ``review-orders`` run from its deployment (the Run button: the worker runs it, it suspends with its
    form), reads each form the way the Prefect UI shows it, and answers through the UI's input path (Resume with
    input, ``demo.review.submit_review``) as a listed staff member. It approves an order unless its findings say the
    customer is over the credit limit or overdue; those it rejects with a reason and a proposed solution, as the form
    requires. Acts only on the Prefect server the stack of this ``YIDI_HOME`` started (its pid file is alive)."""

    DEPLOYMENT = "review-orders/review-orders"
    REJECT_CODES = ("CREDIT_LIMIT_EXCEEDED", "CREDIT_OVERDUE")

    def __init__(self, home: Path, login: str = "demo-reviewer"):
        self.home, self.login = Path(home), login
        self.answered: dict[str, str] = {}  # run id -> the paused state already answered
        self.decided = {"approve": 0, "reject": 0}
        self.forms = 0

    def server_ours(self) -> bool:
        try:
            pid = int((self.home / "run" / "server.pid").read_text())
            os.kill(pid, 0)
            return True
        except (OSError, ValueError):
            return False

    def decide(self, form: dict) -> list[dict]:
        """Each offered order's decision, from its section of the form's text (``#### ORDER_NO · …``)."""
        sections = {part.split(" ", 1)[0].replace("\\", ""): part for part in form["description"].split("#### ")[1:]}
        decisions = []
        for order_no in form["orders"]:
            text = sections.get(order_no, "")
            if any(code in text for code in self.REJECT_CODES):
                decisions.append({"order_no": order_no, "decision": "reject",
                                  "reason": "订单金额超出您的信用额度或有逾期未付款项（沙盒审核员）",
                                  "proposed_solution": "请先结清逾期款项或改用支付宝、微信支付预付后重新下单"})  # fmt: skip
            else:
                decisions.append({"order_no": order_no, "decision": "approve"})
        return decisions

    def step(self) -> list[str]:
        """One look at the review queue: answer every form waiting, start a run when orders wait and none runs.
        Returns what it did (for the sandbox's log)."""
        if not self.server_ours():
            return []
        from prefect import get_client
        from prefect.client.schemas.filters import (
            FlowFilter,
            FlowFilterName,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        from demo.review import ReviewRunEnded, submit_review, wait_until_paused

        done = []
        active = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[
            StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED])))  # fmt: skip
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["review-orders"])),
                                         flow_run_filter=active)  # fmt: skip
        for run in runs:
            if run.state is None or not run.state.is_paused():
                continue
            try:
                form = wait_until_paused(run.id, timeout=5, after_state=self.answered.get(str(run.id)))
            except (TimeoutError, ReviewRunEnded):
                continue
            decisions = self.decide(form)
            submit_review(run.id, self.login, decisions)
            self.answered[str(run.id)] = form["state_id"]
            self.forms += 1
            for item in decisions:
                self.decided[item["decision"]] += 1
            done.append(f"review form of {run.name} answered as {self.login}: "
                        f"{sum(d['decision'] == 'approve' for d in decisions)} approved, "
                        f"{sum(d['decision'] == 'reject' for d in decisions)} rejected")  # fmt: skip
        if not runs and self.pending_orders():
            from prefect.deployments import run_deployment

            try:
                started = run_deployment(self.DEPLOYMENT, timeout=0)
            except Exception as exc:  # noqa: BLE001 - not deployed yet (make up still deploying)
                return done + [f"review-orders not started: {exc}"]
            done.append(f"review-orders started for the pending orders: {started.name}")
        return done

    @staticmethod
    def pending_orders() -> int:
        from sqlalchemy import func, select

        from yidi.db import get_engine
        from yidi.schema import orders

        with get_engine().connect() as conn:
            return conn.execute(select(func.count()).select_from(orders)
                                .where(orders.c.state == "pending_review")).scalar_one()  # fmt: skip

    def run(self, stop: threading.Event, every: float) -> None:
        while not stop.wait(every):
            try:
                for line in self.step():
                    print(f"reviewer: {line}", flush=True)
            except Exception as exc:  # noqa: BLE001 - a server restarting: look again next time
                print(f"reviewer: {type(exc).__name__}: {exc}", flush=True)


def main() -> None:
    """The sandbox as a service: stand-ins up, policy and env written, new orders every YIDI_SANDBOX_TICK seconds
    (default 30), the carrier's pushes on each tick, the payment files every YIDI_SANDBOX_PAYMENT_TICKS ticks
    (default 10: the sandbox's "day"), and the stand-in reviewer looking at the review queue every tick, until
    SIGTERM."""
    from yidi.settings import yidi_home

    tick = float(os.environ.get("YIDI_SANDBOX_TICK") or 30)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    payment_every = int(os.environ.get("YIDI_SANDBOX_PAYMENT_TICKS") or 10)
    with Sandbox(yidi_home(), payment_every=payment_every, day_seconds=tick * payment_every) as sandbox:
        os.environ.update(sandbox.env)  # the store and policy the worker uses
        from yidi.settings import reload_settings

        reload_settings()
        print(f"store seeded: {sandbox.seed_store()}", flush=True)
        print(f"sandbox ready: policy {sandbox.policy_path}; new orders every {tick:.0f} s", flush=True)
        reviewer = StandInReviewer(yidi_home())
        threading.Thread(target=reviewer.run, args=(stop, tick), name="stand-in-reviewer", daemon=True).start()
        while not stop.wait(tick):
            print(f"tick {sandbox.ticks + 1}: new orders {sandbox.feed()}", flush=True)
            pushed = sandbox.kuaidi100.push_updates()
            if pushed:
                print(f"tick {sandbox.ticks}: carrier pushes {sum(p['accepted'] for p in pushed)} accepted of "
                      f"{len(pushed)}", flush=True)  # fmt: skip
            if sandbox.ticks % sandbox.payment_every == 0:  # the providers' "day": yesterday's bills
                print(f"tick {sandbox.ticks}: payment files dropped {sandbox.drop_payment_files()}", flush=True)
                try:
                    print(f"tick {sandbox.ticks}: warehouse {sandbox.warehouse_day()}", flush=True)
                except Exception as exc:  # noqa: BLE001 - the store busy: the next day brings it
                    print(f"tick {sandbox.ticks}: warehouse skipped today: {type(exc).__name__}: {exc}", flush=True)


if __name__ == "__main__":
    main()
