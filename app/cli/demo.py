"""``yidi demo`` (what ``make demo`` runs): the local Prefect server, a fresh demo store, the ``lifecycle-demo`` flow
against the stand-ins, and a summary of the orders it left."""

from __future__ import annotations

import os
import shutil
from typing import Annotated

import typer
from rich.console import Console

from app.cli.common import cli, console, fail
from app.local_stack import API_URL, UI_URL, ForeignServer, start_server
from yidi.db import init_db
from yidi.settings import reload_settings, yidi_home


@cli.command()
def demo(
    orders: Annotated[int, typer.Option(help="How many orders the stand-in channels serve")] = 3000,
    fresh: Annotated[bool, typer.Option(help="Start from an empty demo home")] = True,
) -> None:
    """Run the whole order lifecycle against the local stand-ins and print a summary."""
    try:
        started = start_server()
    except ForeignServer as exc:
        raise fail(str(exc)) from None
    # Before Prefect is first imported, so every flow, subflow and thread of the demo reports to this server.
    os.environ["PREFECT_API_URL"] = API_URL
    console.print(f"Prefect server {'started' if started else 'already running'} at {UI_URL}")
    run_demo(orders=orders, fresh=fresh, console=console)



def run_demo(orders: int = 3000, fresh: bool = True, console: Console | None = None, **demo_options) -> dict:
    """The demo on the local Prefect server (`yidi demo` starts it before Prefect is imported)."""
    console = console or Console()
    base = yidi_home()
    demo_home = base / "demo"
    if fresh and demo_home.exists():
        shutil.rmtree(demo_home)
    demo_home.mkdir(parents=True, exist_ok=True)
    os.environ["YIDI_HOME"] = str(demo_home)
    os.environ.pop("YIDI_DATABASE_URL", None)  # the demo always runs on the embedded SQLite store
    os.environ.pop("YIDI_CONFIG", None)
    reload_settings()
    init_db()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from demo.flows import lifecycle_demo

    with temporary_settings({PREFECT_API_URL: API_URL}):
        result = lifecycle_demo(order_count=orders, **demo_options)  # approve/reject: how many the reviewer decides
    from demo.summary import aftersales_lines, split_environment, terminal_lines, yidi_command

    summary = result.get("summary") or {}
    command = yidi_command(demo_home)
    for line in terminal_lines(summary.get("counts", {}), summary.get("needs_action", []), command=command):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    for line in aftersales_lines(summary.get("aftersales") or {}):  # issue 14: cases, feedback, surveys, refunds
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if "risk" in result:  # issue 13: the assessment's headline figures
        risk, audit = result["risk"], result["audit"]
        legal = {k: v for k, v in risk["legal"]["violations"].items() if v}
        for line in (f"Risk {risk['period']}: credit grades {risk['credit']['by_grade']}",
                     f"  carriers: {risk['carriers']['penalised']} routes penalised, {risk['carriers']['excluded']} excluded",
                     f"  legal rules broken: {legal or 'none'}",
                     f"  audit: {audit['findings']} findings (yidi audit list; yidi kpi)"):  # fmt: skip
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    if "channels" in result:  # issue 18: what the platform and the website were told
        ch = result["channels"]
        for line in (f"Channels: {ch['confirmed']} parcels confirmed on the platform/website, "
                     f"{ch['already_shipped']} already there",
                     f"  {ch['customers_told']} customers told (no API), {ch['stock_pushed']} stock figures pushed",
                     f"  {ch.get('merged_parcels_confirmed', 0)} parcels carried several orders, each confirmed"):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    if "fulfilment" in result:  # issue 18: orders of one customer to one address shipped together
        merged = result["fulfilment"].get("parcels") or {}
        console.print(f"Parcels: {merged.get('parcels', 0)} merged, carrying {merged.get('orders', 0)} orders "
                      "(yidi fulfilment parcels)", highlight=False, markup=False, soft_wrap=True)
    if "tracking" in result and "interceptions" in result["tracking"]:  # issue 18: 拦截
        i = result["tracking"]["interceptions"]
        for line in (f"Interceptions: {i['requested']} stopped, {i['returned']} back in stock, "
                     f"{i['too_late']} too late",
                     f"  {i['delivered']} delivered anyway: after-sales (yidi tracking intercept)"):  # fmt: skip
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    from demo.data import DEMO_STAFF

    logins = [p["login"] for p in DEMO_STAFF]
    for line in ("", f"Demo store: {demo_home / 'yidi.db'}", "Look at an order:",
                 f"    {split_environment(command)[1]} order show 1",
                 "The demo's staff (its policy file lists them; act as one with --as LOGIN):",
                 f"    {', '.join(logins[:3])},", f"    {', '.join(logins[3:])}",
                 f"Runs in the Prefect UI: {UI_URL}/runs", "Stop the server: make down"):  # fmt: skip
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    return result
