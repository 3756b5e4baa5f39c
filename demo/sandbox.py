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


def sandbox_dir(home: Path) -> Path:
    path = home / "sandbox"
    path.mkdir(parents=True, exist_ok=True)
    return path


def env_file(home: Path) -> Path:
    return home / "sandbox" / "env.json"


class Sandbox:
    """Every stand-in as a service and the policy pointing at them; ``feed()`` brings new orders."""

    def __init__(self, home: Path, *, orders_per_tick: int = 6, carrier_speed: float = 60.0, seed: int = 31,
                 payment_every: int = 10):  # fmt: skip
        self.home, self.orders_per_tick, self.seed = Path(home), orders_per_tick, seed
        self.payment_every, self.drops, self._paid = payment_every, 0, set()
        self.carrier_speed = carrier_speed
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
            track.salt_env: secrets.token_hex(8),
            "YIDI_CARRIER_API_TOKEN": secrets.token_hex(8), "YIDI_SUPPLIER_API_TOKEN": secrets.token_hex(8),
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
        self.kuaidi100 = self._up(kuaidi100.start(customer=e[track.customer_env], key=e[track.key_env],
                                                  clock=SimClock(speed=self.carrier_speed), auto_register=True),
                                 started=True)
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
'''

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

    def stop(self) -> None:
        for service in reversed(self._services):
            service.stop()
        env_file(self.home).unlink(missing_ok=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    """The sandbox as a service: stand-ins up, policy and env written, new orders every YIDI_SANDBOX_TICK seconds
    (default 60) and the payment files every YIDI_SANDBOX_PAYMENT_TICKS ticks (default 10) until SIGTERM."""
    from yidi.settings import yidi_home

    tick = float(os.environ.get("YIDI_SANDBOX_TICK") or 60)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    payment_every = int(os.environ.get("YIDI_SANDBOX_PAYMENT_TICKS") or 10)
    with Sandbox(yidi_home(), payment_every=payment_every) as sandbox:
        os.environ.update(sandbox.env)  # the store and policy the worker uses
        from yidi.settings import reload_settings

        reload_settings()
        print(f"store seeded: {sandbox.seed_store()}", flush=True)
        print(f"sandbox ready: policy {sandbox.policy_path}; new orders every {tick:.0f} s", flush=True)
        while not stop.wait(tick):
            print(f"tick {sandbox.ticks + 1}: new orders {sandbox.feed()}", flush=True)
            if sandbox.ticks % sandbox.payment_every == 0:  # the providers' "day": yesterday's bills
                print(f"tick {sandbox.ticks}: payment files dropped {sandbox.drop_payment_files()}", flush=True)


if __name__ == "__main__":
    main()
