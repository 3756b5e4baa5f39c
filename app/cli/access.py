"""``yidi access log``: the trail of personal-data access for the auditor (issue 20). Registered on the main CLI by
its import in ``app/cli/main.py``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table as RichTable

from app.cli.common import cli, console, emit_json, engine_or_exit, local_time

access_app = typer.Typer(help="Who saw or wrote out personal data (append-only trail).", no_args_is_help=True)
cli.add_typer(access_app, name="access")


@access_app.command("log")
def access_log_command(
    limit: Annotated[int, typer.Option(help="At most this many (newest first)")] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Unmasked exports, `order show` of personal fields and documents with full addresses: who, when, what, how
    many people's data (times in Asia/Shanghai)."""
    from yidi.access_log import access_log

    with engine_or_exit().connect() as conn:
        frame = access_log(conn, limit)
    rows = [{"id": int(r.id), "at": local_time(r.occurred_at), "actor": r.actor, "action": r.action,
             "subject": r.subject, "people": int(r.people),
             "details": json.loads(r.details) if isinstance(r.details, str) else None}
            for r in frame.itertuples(index=False)]  # fmt: skip
    if json_out:
        emit_json(rows)
        return
    table = RichTable(title=f"personal-data access ({len(rows)}, newest first; Asia/Shanghai)", title_justify="left")
    for column in ("at", "actor", "action", "people", "subject"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["at"], row["actor"], row["action"], str(row["people"]), row["subject"])
    console.print(table)
