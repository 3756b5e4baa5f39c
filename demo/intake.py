"""The intake part of ``make demo`` (flow ``intake-demo``): every order channel's stand-in, filled with demo orders
and some bad records, then ``intake-orders`` as a subflow.

``intake_standins(order_count, home)`` starts the platform (TOP) and website (WooCommerce) HTTP stand-ins and the
IMAP stand-in, delivers order emails, drops phone/fax templates (GBK csv, xlsx) into the spreadsheet inbox, puts
freshly generated stand-in credentials into the environment variables the policy file names, and yields the
per-channel options for ``flows.intake.intake_orders(options=...)``. Servers stop when the block ends.

Orders are split about 40% platform, 25% website, 15% email, 20% phone/fax. Bad records, all of which must end in
quarantine with a reason (or be stored safely): a trade without lines, a customer name of 5,000 characters, an
SQL-looking order (stored verbatim), a website line with quantity 0, an email with no order, an attachment that is
neither UTF-8 nor GBK, a template row with quantity "两箱", a template without the quantity column, a pdf. The
platform also answers one 503 and one throttling error, and repeats a trade across pages (retried, deduplicated).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from email.message import EmailMessage
from pathlib import Path

from prefect import flow

from demo.standins.imap import ImapStandin
from demo.standins.mail import attachment_email, body_email, raw_attachment_email
from demo.standins.orders_data import demo_neutral_orders, hostile_order, overlong_order
from demo.standins.spreadsheets import template_frame, write_csv, write_xlsx
from demo.standins.taobao import TaobaoStandin, trade_from_neutral
from demo.standins.woocommerce import WooCommerceStandin, order_from_neutral
from flows.naming import run_name


def _split(orders: list[dict]) -> dict[str, list[dict]]:
    n = len(orders)
    a, b, c = int(n * 0.40), int(n * 0.65), int(n * 0.80)
    return {"taobao": orders[:a], "woocommerce": orders[a:b], "email": orders[b:c], "spreadsheet": orders[c:]}


@contextmanager
def intake_standins(order_count: int = 3000, home: Path | None = None, *, seed: int = 11,
                    env_prefix: str = "YIDI") -> Iterator[dict[str, dict]]:
    from yidi.settings import get_settings, yidi_home

    home = Path(home or yidi_home())
    settings = get_settings().intake
    orders = demo_neutral_orders(order_count, seed=seed)
    parts = _split(orders)
    creds = {
        settings.taobao.app_key_env: secrets.token_hex(4),
        settings.taobao.app_secret_env: secrets.token_hex(16),
        settings.taobao.session_env: secrets.token_hex(12),
        settings.woocommerce.consumer_key_env: "ck_" + secrets.token_hex(20),
        settings.woocommerce.consumer_secret_env: "cs_" + secrets.token_hex(20),
        settings.email.user_env: "orders@example.com",
        settings.email.password_env: secrets.token_urlsafe(12),
    }
    os.environ.update(creds)
    with ExitStack() as stack:
        top = stack.enter_context(TaobaoStandin(
            app_key=creds[settings.taobao.app_key_env], app_secret=creds[settings.taobao.app_secret_env],
            session=creds[settings.taobao.session_env], orders=parts["taobao"]))
        base = parts["taobao"][0] if parts["taobao"] else orders[0]
        no_lines = trade_from_neutral(base, 4_100_000_000_000_000_001)
        no_lines["orders"] = {"order": []}
        top.add_trade(no_lines)
        top.add_trade(trade_from_neutral(overlong_order(base, "long"), 4_100_000_000_000_000_002))
        top.add_trade(trade_from_neutral(hostile_order(base, "sql"), 4_100_000_000_000_000_003))
        top.ban_seconds = 1
        top.faults.add("http503", times=1)
        top.faults.add("throttle", times=1, match={"page_no": 2})
        top.faults.add("duplicate", times=2, match={"page_no": 2})

        shop = stack.enter_context(WooCommerceStandin(
            consumer_key=creds[settings.woocommerce.consumer_key_env],
            consumer_secret=creds[settings.woocommerce.consumer_secret_env], orders=parts["woocommerce"]))
        if parts["woocommerce"]:
            zero = order_from_neutral(parts["woocommerce"][0], 90_001)
            zero["line_items"][0]["quantity"] = 0
            shop.add_order(zero)

        imap = stack.enter_context(ImapStandin(user=creds[settings.email.user_env],
                                               password=creds[settings.email.password_env]))
        mail = parts["email"]
        body_share = len(mail) // 3
        for i, order in enumerate(mail[:body_share]):
            imap.add_message(body_email(order, order_id=f"EM-{order['ref']}" if i % 2 else None).as_bytes())
        rest = mail[body_share:]
        for start in range(0, len(rest), 50):
            fmt = "xlsx" if (start // 50) % 2 else "csv"
            imap.add_message(attachment_email(rest[start : start + 50], fmt=fmt, encoding="gbk",
                                              filename=f"订单_{start // 50 + 1}.{fmt}").as_bytes())
        hello = EmailMessage()
        hello["From"], hello["Subject"] = "someone@customer.example.com", "咨询"
        hello.set_content("你好，请问可以开专票吗？")
        imap.add_message(hello.as_bytes())
        imap.add_message(raw_attachment_email(b"\xff\xfe\xfa\x00\x81 not a table", "orders.csv").as_bytes())

        inbox = Path(settings.spreadsheet.inbox_dir).expanduser()
        inbox = inbox if inbox.is_absolute() else home / inbox
        inbox.mkdir(parents=True, exist_ok=True)
        phone = parts["spreadsheet"]
        half = len(phone) // 2
        write_csv(template_frame(phone[:half], prefix="PH"), inbox / "电话订单.csv", "gbk")
        fax = template_frame(phone[half:], prefix="FX", channel="fax")
        if len(fax) > 3:
            fax["数量"] = fax["数量"].astype(object)
            fax.loc[fax.index[3], "数量"] = "两箱"
        write_xlsx(fax, inbox / "传真订单.xlsx", title="传真订单登记表", merge_orders=True)
        (inbox / "缺列.csv").write_text("订单号,客户名称,联系电话,详细地址,商品编码,单价\nBAD-1,张三,13800000000,"
                                       "重庆市渝中区解放碑,SKU-0001,10\n", encoding="utf-8")
        (inbox / "扫描件.pdf").write_bytes(b"%PDF-1.4 scanned fax")

        options = {
            "taobao": {"enabled": True, "url": top.url, "window_minutes": 24 * 60, "lag_seconds": 0,
                       "backoff_seconds": 0.2},
            "woocommerce": {"enabled": True, "url": shop.url},
            "email": {"enabled": True, "source": "imap", "host": imap.host, "port": imap.port,
                      "processed_flag": "\\Seen"},
            "spreadsheet": {"enabled": True, "inbox_dir": str(inbox), "settle_seconds": 0},
        }
        yield json.loads(json.dumps(options))


@flow(name="intake-demo", log_prints=True, flow_run_name=run_name("intake demo", "order_count"))
def intake_demo(order_count: int = 3000) -> dict[str, dict]:
    """``make demo``'s intake stage: every channel's stand-in with demo orders and bad records, then
    ``intake-orders`` as a subflow. Quarantined records are then listed by ``yidi intake quarantine list``."""
    from connectors.registry import ORDER_CHANNELS
    from flows.intake import intake_orders

    with intake_standins(order_count) as options:
        return intake_orders(channels=list(ORDER_CHANNELS), options=options)
