"""Channels commands (issue 18): ``yidi channels confirm [--channel]``, ``yidi channels sync [--channel]``,
``yidi channels listings FILE`` (which item is which listing on which channel).

Registered on the main CLI by the one import line in ``app/cli/main.py``'s area block.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import JsonOut, PrefectChoice, cli, console, emit_json, engine_or_exit, fail, use_prefect

channels = typer.Typer(help="Write back to the order channels: shipment confirmations, stock figures.",
                       no_args_is_help=True)
cli.add_typer(channels, name="channels")

ChannelOption = Annotated[str | None, typer.Option("--channel", "-c",
                                                   help="Only this channel (taobao, website, email, phone, fax)")]


def known_channel_or_exit(channel: str | None) -> None:
    """An unknown channel is refused with the valid ones (exit 1), not run as a filter that matches nothing."""
    from connectors.registry import STORED_CHANNELS

    if channel and channel not in STORED_CHANNELS:
        raise fail(f"unknown channel {channel!r}; valid: {', '.join(STORED_CHANNELS)}")




@channels.command("confirm")
def confirm(channel: ChannelOption = None, prefect: PrefectChoice = None, json_out: JsonOut = False,
            top_url: Annotated[str | None, typer.Option(help="TOP gateway URL (default: intake.taobao.url)")] = None,
            woo_url: Annotated[str | None, typer.Option(help="Website root (default: intake.woocommerce.url)")] = None,
            ) -> None:
    """Confirm every parcel with a waybill on its channel, once (the `confirm-shipments` flow), and check the
    shipping deadlines."""
    known_channel_or_exit(channel)
    engine_or_exit()
    if use_prefect(prefect):
        from flows.channels import confirm_shipments

        summary = confirm_shipments(channel=channel, top_url=top_url, woo_url=woo_url)
    else:
        from flows.channels import confirmation_cycle
        from flows.compose import in_process

        summary = confirmation_cycle(in_process, datetime.now(UTC), channel, top_url, woo_url)
    if json_out:
        emit_json(summary)
        return
    d = summary["deadlines"]
    console.print(f"confirmations: {summary['planned']} planned, {summary['confirmed']} confirmed, "
                  f"{summary['already']} already shipped there, {summary['notified']} customers told",
                  highlight=False)
    console.print(f"  {summary['failed']} failed (retried next run), {summary['refused']} refused, "
                  f"{summary['pending']} still pending", highlight=False)
    for problem in summary["problems"][:10]:
        console.print(f"  refused {problem['channel']} {problem['channel_order_id']}: {problem['error']}",
                      highlight=False)
    _print_skipped(summary["skipped"])
    console.print(f"shipping deadlines: {d['warning']} near, {d['escalated']} escalated, {d['missed']} missed",
                  highlight=False)
    for order in d["orders"][:20]:
        console.print(f"  {order['order_no']}  {order['channel']:<8} {order['level']:<9} due {order['deadline']} "
                      "(Asia/Shanghai)", highlight=False)


@channels.command("sync")
def sync(channel: ChannelOption = None, prefect: PrefectChoice = None, json_out: JsonOut = False,
         top_url: Annotated[str | None, typer.Option(help="TOP gateway URL (default: intake.taobao.url)")] = None,
         woo_url: Annotated[str | None, typer.Option(help="Website root (default: intake.woocommerce.url)")] = None,
         ) -> None:
    """Push each listed item's available stock to the channels where it changed (the `sync-channel-stock`
    flow), within each channel's rate."""
    known_channel_or_exit(channel)
    engine_or_exit()
    if use_prefect(prefect):
        from flows.channels import sync_channel_stock

        summary = sync_channel_stock(channel=channel, top_url=top_url, woo_url=woo_url)
    else:
        from flows.channels import stock_cycle
        from flows.compose import in_process

        summary = stock_cycle(in_process, channel, top_url, woo_url)
    if json_out:
        emit_json(summary)
        return
    console.print(f"stock: {summary['checked']} listings checked, {summary['changed']} changed, "
                  f"{summary['pushed']} pushed, {summary['refused']} refused, {summary['failed']} failed "
                  f"({summary['requests']} requests)", highlight=False)
    _print_skipped(summary["skipped"])
    for refusal in summary["refusals"][:20]:
        console.print(f"  refused {refusal['channel']} {refusal['item_code']} = {refusal['available']}: "
                      f"{refusal['error']}", highlight=False)


def _print_skipped(skipped: dict | list) -> None:
    """Channels without credentials: named, with how many confirmations wait for them (none is lost)."""
    from flows.channels import skipped_lines

    lines = skipped_lines(skipped)
    console.print(f"skipped: {len(lines)} channel(s) not configured" if lines else "skipped: none", highlight=False)
    for line in lines:
        console.print(f"  {line}", highlight=False)


@channels.command("listings")
def listings(path: Annotated[Path, typer.Argument(help="csv or xlsx: channel, item_code, listing_id[, sku_id]",
                                                  exists=True, dir_okay=False)],
             json_out: JsonOut = False) -> None:
    """Load which item is which listing on which channel (TOP num_iid/sku_id, WooCommerce product id); stock
    sync pushes only listed items. Re-loading a sheet changes only what changed; refused rows are listed."""
    from tasks.channels.listings import load_listings
    from yidi.settings import get_settings

    engine = engine_or_exit()
    try:
        result = load_listings(engine, path, set(get_settings().channels.rate_per_second))
    except ValueError as exc:  # a missing column, or text in no encoding we accept (UnreadableText)
        raise fail(str(exc)) from None
    if json_out:
        emit_json(result.as_dict())
        return
    console.print(f"listings: {result.rows} rows, {result.loaded} loaded or changed, {result.unchanged} "
                  f"unchanged, {len(result.refused)} refused", highlight=False)
    for r in result.refused[:20]:
        console.print(f"  row {r['row']}: {r['reason']}"[:80], highlight=False)
    if result.refused:
        raise typer.Exit(1)
