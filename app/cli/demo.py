"""``yidi demo`` (what ``make demo`` runs): the local Prefect server, a fresh demo store, the ``lifecycle-demo`` flow
against the stand-ins, and a summary of the orders it left."""

from __future__ import annotations

import os
import shutil
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from app.cli.common import cli, console, fail
from app.local_stack import API_URL, UI_URL, ForeignServer, start_server
from yidi.db import get_engine, init_db
from yidi.schema import orders
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



def summary_tables(console: Console) -> None:
    engine = get_engine()
    with engine.connect() as conn:
        for column, title in ((orders.c.state, "orders by state"), (orders.c.channel, "orders by channel"),
                              (orders.c.region, "orders by region (remote = outside Chongqing)"),
                              (orders.c.payment_state, "orders by payment state")):  # fmt: skip
            rows = conn.execute(
                select(column, func.count()).group_by(column).order_by(func.count().desc())
            ).all()
            table = Table(title=title, title_justify="left")
            table.add_column(column.name)
            table.add_column("orders", justify="right")
            for value, count in rows:
                table.add_row(str(value), f"{count:,}")
            console.print(table)


def run_demo(orders: int = 3000, fresh: bool = True, console: Console | None = None) -> dict:
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
        result = lifecycle_demo(order_count=orders)
    summary_tables(console)
    console.print(
        f"\nDemo store: {demo_home / 'yidi.db'}   (inspect: YIDI_HOME={demo_home} yidi order show 1)"
    )
    console.print(f"Watch the runs in the Prefect UI: {UI_URL}/runs   — stop the server with `make down`.")
    return result
