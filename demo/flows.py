"""`make demo`: the whole order lifecycle on the embedded default (SQLite + a local Prefect server), against the
local stand-ins of every external system, in a fresh demo home (``$YIDI_HOME/demo``).

The parent flow ``lifecycle-demo`` runs each stage's real flow as a subflow, so the Prefect UI shows the run tree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from prefect import flow
from pydantic import Field

from demo.data import demo_catalog, demo_customers
from flows.naming import run_name
from yidi.settings import reload_settings, yidi_home


def write_reference_files(home: Path) -> tuple[Path, Path]:
    """The demo's staff spreadsheets: catalog as GBK csv with Chinese headers, customers as UTF-8 csv."""
    catalog = demo_catalog().rename(
        columns={"code": "商品编码", "name": "名称", "spec": "规格", "model": "型号", "unit": "单位",
                 "list_price": "单价", "weight_kg": "重量", "volume_m3": "体积", "kind": "类型",
                 "sourcing": "供应方式", "lead_time_days": "交期", "max_order_qty": "限购量",
                 "preferred_supplier": "首选供应商"}
    )  # fmt: skip
    catalog["类型"] = catalog["类型"].map({"product": "商品", "service": "服务"})
    catalog["供应方式"] = catalog["供应方式"].map({"stock": "库存", "make_to_order": "生产", "buy": "采购"})
    catalog_path = home / "inbox" / "catalog.csv"
    catalog_path.parent.mkdir(parents=True, exist_ok=True)
    catalog.to_csv(catalog_path, index=False, encoding="gbk")
    customers_path = home / "inbox" / "customers.csv"
    demo_customers().to_csv(customers_path, index=False, encoding="utf-8")
    return catalog_path, customers_path


@flow(name="lifecycle-demo", log_prints=True, flow_run_name=run_name("demo", "order_count"))
def lifecycle_demo(order_count: Annotated[int, Field(ge=1, examples=[3000])] = 3000,
                   approve: Annotated[int, Field(ge=0, examples=[280])] = 280,
                   reject: Annotated[int, Field(ge=0, examples=[20])] = 20) -> dict:
    """Reference data, then every stage of the order lifecycle, each as a subflow against the stand-ins:
    intake from all channels → automated review → a reviewer's decisions through the review form → fulfilment
    (stock, production/purchase requests, carrier choice, waybills) → carrier tracking (delays, damage, loss)
    → settlement (bills, statements, COD remittances) → after-sales and feedback → customer notifications.

    Args:
        order_count: How many demo orders arrive over all channels.
        approve: How many pending orders the demo's reviewer approves through the review form.
        reject: How many it rejects (with a reason and a proposed solution).
    """
    from demo.aftersales import aftersales_demo
    from demo.channels import channels_demo
    from demo.fulfilment import fulfilment_demo
    from demo.intake import intake_demo
    from demo.review import demo_review
    from demo.risk import seed_history
    from demo.settlement import settlement_demo
    from demo.standins import sms, smtp
    from demo.tracking import tracking_demo
    from flows.notifications import send_notifications
    from flows.reference import load_reference_data
    from flows.review import auto_review
    from flows.risk import assess_risk_and_kpis, internal_audit
    from tasks.risk.periods import default_period
    from yidi.bulk import utc_now

    home = yidi_home()
    catalog_path, customers_path = write_reference_files(home)
    result: dict = {"reference": load_reference_data(str(catalog_path), str(customers_path))}
    with smtp.start() as mail, sms.start() as gateway:
        point_notifications_at(home, mail.port, gateway.url)
        result["intake"] = intake_demo(order_count=order_count)
        result["auto_review"] = auto_review()
        result["manual_review"] = demo_review(approve=approve, reject=reject)
        result["fulfilment"] = fulfilment_demo(home / "inbox")
        result["channels"] = channels_demo()  # issue 18: platform and website told what shipped; stock pushed
        result["tracking"] = tracking_demo()
        result["settlement"] = settlement_demo()
        result["aftersales"] = aftersales_demo()
        seed_history()  # back-dated facts a one-day demo cannot have (tenure, long overdue, a missed promise)
        result["risk"] = assess_risk_and_kpis()  # issue 13: credit, KPIs, carriers, legal rules, receivables
        result["audit"] = internal_audit(period=default_period(utc_now()))  # the demo's orders are this month's
        result["notifications"] = send_notifications()
        result["notifications"]["emails_received"] = len(mail.received())
        result["notifications"]["sms_received"] = len(gateway.messages)
    result["summary"] = publish_summary(home)
    return result


def publish_summary(home: Path) -> dict:
    """The demo's summary as a markdown artifact of this run (``demo-summary``) and in its log: orders by state,
    channel, region and payment, then what needs a person with the command for each."""
    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact

    from demo.summary import (
        aftersales_figures,
        aftersales_lines,
        counts,
        needs_action,
        summary_markdown,
        yidi_command,
    )
    from yidi.db import get_engine

    engine = get_engine()
    tallies = counts(engine)
    actions = needs_action(engine, yidi_command(home))
    aftersales = aftersales_figures(engine)
    api = os.environ.get("PREFECT_API_URL", "")
    ui_runs = api.removesuffix("/api") + "/runs" if api else None
    create_markdown_artifact(summary_markdown(tallies, actions, ui_runs, aftersales), key="demo-summary",
                             description="What the demo did, and what needs action")  # fmt: skip
    logger = get_run_logger()
    for key in ("state", "channel", "region", "payment_state"):
        logger.info("orders by %s: %s", key.replace("_", " "), ", ".join(f"{v} {n:,}" for v, n in tallies[key]))
    for line in aftersales_lines(aftersales, width=1000):
        logger.info("%s", line.strip())
    for action in actions:
        logger.info("needs action: %s %s → %s", action["count"], action["what"], action["command"])
    return {"counts": tallies, "needs_action": actions, "aftersales": aftersales}


def point_notifications_at(home: Path, smtp_port: int, sms_url: str) -> None:
    """The demo's policy file: notices go to the SMTP and SMS stand-ins; review forms show 100 orders a page; the
    demo's staff are listed (``demo.data.DEMO_STAFF``), so the demo runs the real checks as them."""
    from demo.data import demo_staff_toml

    policy = home / "yidi.toml"
    policy.write_text(
        f'''[notifications]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
sms_gateway_url = "{sms_url}"

[review]
ui_batch_size = 100

{demo_staff_toml()}''',
        encoding="utf-8",
    )
    os.environ["YIDI_CONFIG"] = str(policy)
    reload_settings()
