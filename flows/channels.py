"""Channels flows (issue 18): writing back to the order channels.

``confirm-shipments`` (every 10 minutes, and ``yidi channels confirm [--channel]``): its step list,
``confirmation_cycle``: plan a confirmation for every parcel that got its waybill, tell each channel (TOP
``taobao.logistics.offline.send``, WooCommerce note + status; the customer notice for channels without an API),
then check the shipping deadlines. ``sync-channel-stock`` (hourly, and ``yidi channels sync [--channel]``):
``stock_cycle`` pushes the changed available figures within each channel's rate.

Transaction scope: planning is one transaction; channel calls happen outside any transaction and each chunk of
answers is recorded in one (a row is recorded only while still pending, so concurrent runs never record twice);
the deadline check is one transaction; stock answers are recorded per 1000 items. Artifacts: counts, the orders
near or past their shipping deadline (order numbers only), the items a channel refused.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flows.compose import Run, require_store, retry_on_database_error, with_prefect
from flows.naming import run_name
from flows.params import Moment, OrderChannel, Url
from yidi.settings import get_settings
from yidi.steps import NO_CACHE, create_markdown_artifact, create_table_artifact, flow, task


def _writers(channel: str | None, top_url: str | None, woo_url: str | None, pacers: dict | None = None):
    from tasks.channels.confirmations import ChannelWriters

    wanted = {channel} if channel else None
    return ChannelWriters.from_settings(get_settings(), top_url, woo_url, wanted, pacers)


@task(name="plan-confirmations", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_on_database_error)  # fmt: skip
def plan_task() -> int:
    from tasks.channels.confirmations import plan_confirmations
    from yidi.db import get_engine

    return plan_confirmations(get_engine())


@task(name="send-confirmations", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
      retry_condition_fn=retry_on_database_error)  # fmt: skip
def send_task(channel: str | None, top_url: str | None, woo_url: str | None, writers=None) -> dict:
    from tasks.channels.confirmations import send_confirmations
    from yidi.db import get_engine

    writers = writers or _writers(channel, top_url, woo_url)
    return send_confirmations(get_engine(), writers, channel=channel).as_dict()


@task(name="check-shipping-deadlines", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_on_database_error)  # fmt: skip
def deadlines_task(as_of: datetime, channel: str | None) -> dict:
    from tasks.channels.deadlines import check_deadlines
    from yidi.db import get_engine

    return check_deadlines(get_engine(), as_of, channels=[channel] if channel else None)


@task(name="push-stock", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
      retry_condition_fn=retry_on_database_error)  # fmt: skip
def stock_task(channel: str | None, top_url: str | None, woo_url: str | None, writers=None) -> dict:
    from tasks.channels.stock_sync import make_pacers, sync_stock
    from yidi.db import get_engine

    settings = get_settings()
    channels = [channel] if channel else ["taobao", "website"]
    pacers = make_pacers(settings, channels)
    writers = writers or _writers(channel, top_url, woo_url, pacers)
    return sync_stock(get_engine(), writers, settings=settings, channels=channels, pacers=pacers).as_dict()


def confirmation_cycle(run: Run, as_of: datetime, channel: str | None = None, top_url: str | None = None,
                       woo_url: str | None = None, writers=None) -> dict:
    planned = run(plan_task)
    sent = run(send_task, channel, top_url, woo_url, writers)
    deadlines = run(deadlines_task, as_of, channel)
    return {**sent, "planned": planned, "deadlines": deadlines}


def stock_cycle(run: Run, channel: str | None = None, top_url: str | None = None, woo_url: str | None = None,
                writers=None) -> dict:
    return run(stock_task, channel, top_url, woo_url, writers)


@flow(name="confirm-shipments", flow_run_name=run_name("confirm-shipments"), log_prints=True)
def confirm_shipments(channel: OrderChannel | None = None, as_of: Moment = None, top_url: Url = None,
                      woo_url: Url = None) -> dict:
    """Confirm every parcel with a waybill on its channel once; flag and escalate shipping deadlines.

    Args:
        channel: Only orders of this channel. Empty: every channel.
        as_of: Check shipping deadlines as of this time. Empty: now.
        top_url: The platform's TOP API (a stand-in). Empty: the policy's [intake.taobao].api_url.
        woo_url: The website's WooCommerce API. Empty: the policy's [intake.woocommerce].base_url.
    """
    require_store()
    summary = confirmation_cycle(with_prefect, as_of or datetime.now(UTC), channel, top_url, woo_url)
    for line in skipped_lines(summary["skipped"]):
        print(line)
    deadlines = summary["deadlines"]
    create_markdown_artifact(key="channel-confirmations", markdown=summary_markdown(summary),
                             description="shipment confirmations to the channels")
    if deadlines["orders"]:
        create_table_artifact(key="shipping-deadlines", table=deadlines["orders"],
                              description="orders near or past the channel's shipping deadline (Asia/Shanghai)")
    return summary


@flow(name="sync-channel-stock", flow_run_name=run_name("sync-channel-stock"), log_prints=True)
def sync_channel_stock(channel: OrderChannel | None = None, top_url: Url = None, woo_url: Url = None) -> dict:
    """Push each listed item's available stock to the channels, only where the figure changed.

    Args:
        channel: Only listings on this channel. Empty: every channel.
        top_url: The platform's TOP API (a stand-in). Empty: the policy's [intake.taobao].api_url.
        woo_url: The website's WooCommerce API. Empty: the policy's [intake.woocommerce].base_url.
    """
    require_store()
    summary = stock_cycle(with_prefect, channel, top_url, woo_url)
    for line in skipped_lines(summary["skipped"]):
        print(line)
    create_markdown_artifact(key="channel-stock", markdown=stock_markdown(summary),
                             description="stock figures pushed to the channels")
    if summary["refusals"]:
        create_table_artifact(key="channel-stock-refused", table=summary["refusals"],
                              description="items a channel refused (sent again only when the figure changes)")
    return summary


def skipped_lines(skipped: dict | list) -> list[str]:
    """One INFO line per channel without credentials: a fresh stack is green, the channel simply not in use yet."""
    counts = skipped if isinstance(skipped, dict) else dict.fromkeys(skipped)
    return [f"{name}: not configured, skipped" + (f" ({n} left pending)" if n else "") for name, n in counts.items()]


def summary_markdown(summary: dict) -> str:
    d = summary["deadlines"]
    return "\n".join([
        "# Shipment confirmations", "",
        "| planned | confirmed | already shipped | customer told | failed (retried) | refused | still pending |",
        "|---|---|---|---|---|---|---|",
        f"| {summary['planned']} | {summary['confirmed']} | {summary['already']} | {summary['notified']} | "
        f"{summary['failed']} | {summary['refused']} | {summary['pending']} |", "",
        f"Shipping deadlines: {d['warning']} near, {d['escalated']} escalated, {d['missed']} missed "
        f"({d['new_escalations']} newly escalated, {d['new_missed']} newly missed).",
    ])  # fmt: skip


def stock_markdown(summary: dict) -> str:
    return (f"# Stock pushed to the channels\n\n{summary['checked']} listings checked, {summary['changed']} changed: "
            f"{summary['pushed']} pushed, {summary['refused']} refused, {summary['failed']} failed (sent again "
            f"next run), in {summary['requests']} requests.")
