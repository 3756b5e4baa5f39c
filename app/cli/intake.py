"""Intake commands (issue 3): ``yidi intake run`` and ``yidi intake quarantine list|show|replay|discard``.

Registered on the main CLI by the one import line in ``app/cli/main.py``'s area block. The old top-level names
``yidi ingest`` and ``yidi quarantine …`` are hidden aliases for one release.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table as RichTable

from app.cli.common import (
    LIMIT_HELP,
    PREFECT_OPTION_HELP,
    cli,
    console,
    emit_json,
    engine_or_exit,
    fail,
    local_time,
    regular_file,
    shown_of_total,
    use_prefect,
)

SHOW_LINES = 40  # of a record's content, unless --full (a bulk drop's chunk holds thousands of rows)
COUNT_COLUMNS = ["read", "new", "updated", "unchanged", "quarantined", "remote", "local", "unknown"]

RENAMED = "renamed to `yidi intake {}`; this name goes in the next release"

intake_app = typer.Typer(help="Order intake from every channel, and the records it could not understand.",
                         no_args_is_help=True)
quarantine_app = typer.Typer(help="Records that could not be understood: look, fix, replay.", no_args_is_help=True)
intake_app.add_typer(quarantine_app, name="quarantine")
cli.add_typer(intake_app, name="intake")
cli.add_typer(quarantine_app, name="quarantine", hidden=True, help=RENAMED.format("quarantine"))


def _print_summary(results: dict[str, dict]) -> None:
    table = RichTable(title="order intake", title_justify="left")
    table.add_column("channel")
    for column in COUNT_COLUMNS:
        table.add_column(column, justify="right")
    table.add_column("error")
    for name, result in results.items():
        table.add_row(name, *(f"{result.get(c, 0):,}" for c in COUNT_COLUMNS), result.get("error") or "")
    console.print(table)


@intake_app.command("run")
def intake_run(
    channel: Annotated[list[str] | None, typer.Option("--channel", "-c", help="Only this channel (repeatable): "
                                                      "taobao, woocommerce, email, spreadsheet")] = None,
    file: Annotated[list[Path] | None, typer.Option("--file", "-f", help="Take in this csv/xlsx/eml file "
                                                    "(repeatable; the file is not moved)")] = None,
    prefect: Annotated[bool | None, typer.Option("--prefect/--no-prefect", help=PREFECT_OPTION_HELP)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Pull orders now: every enabled channel, the ones named, or the given files (the `intake-orders` flow)."""
    from connectors.registry import ORDER_CHANNELS

    for name in channel or []:
        if name not in ORDER_CHANNELS:
            raise fail(f"unknown channel {name!r}; channels: {', '.join(ORDER_CHANNELS)}")
    files = [str(regular_file(p).resolve()) for p in file or []]
    engine_or_exit()
    failed = False
    if not use_prefect(prefect):
        from flows.compose import in_process
        from flows.intake import order_intake

        results = order_intake(in_process, channels=channel or None, files=files or None)
        failed = any(result.get("error") for result in results.values())
    else:
        from flows.intake import intake_orders

        state = intake_orders(channels=channel or None, files=files or None, return_state=True)
        try:
            results = state.result()
        except Exception as exc:  # noqa: BLE001 - the flow failed: show what each channel did
            failed = True
            results = _results_from_artifact() or {"(run)": {"error": str(exc)}}
    if json_out:
        emit_json(results)
    else:
        _print_summary(results)
    if failed:
        raise typer.Exit(1)


cli.command("ingest", hidden=True, help=RENAMED.format("run"))(intake_run)


def _results_from_artifact() -> dict | None:
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.sorting import ArtifactSort

        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(limit=1, sort=ArtifactSort.CREATED_DESC)
        if artifacts and artifacts[0].key == "intake-summary":
            import json

            rows = artifacts[0].data if isinstance(artifacts[0].data, list) else json.loads(artifacts[0].data)
            return {row["channel"]: row for row in rows}
    except Exception:  # noqa: BLE001 - best effort
        return None
    return None


@quarantine_app.command("list")
def quarantine_list(
    channel: Annotated[str | None, typer.Option("--channel", "-c")] = None,
    status: Annotated[str, typer.Option(help="quarantined, replayed, discarded, accepted, to_feedback (a message without an order, moved to the feedback queue), or all")] = "quarantined",
    limit: Annotated[int, typer.Option(min=1, help=LIMIT_HELP)] = 50,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Records waiting for a person, newest first, with the reason."""
    from sqlalchemy import func, select

    from yidi.schema import intake_records as r

    engine = engine_or_exit()
    query = select(r.c.id, r.c.channel, r.c.received_at, r.c.status, r.c.source_ref, r.c.source_key, r.c.reason)
    count = select(func.count()).select_from(r)
    if status != "all":
        query, count = query.where(r.c.status == status), count.where(r.c.status == status)
    if channel:
        query, count = query.where(r.c.channel == channel), count.where(r.c.channel == channel)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(r.c.id.desc()).limit(limit)).mappings().all()
        total = conn.execute(count).scalar()
    if json_out:
        emit_json({"total": total, "records": [dict(row) for row in rows]})
        return
    table = RichTable(title=f"intake records ({status}): {total:,}", title_justify="left")
    for column in ("id", "channel", "received (Asia/Shanghai)", "source", "reason"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(str(row["id"]), row["channel"], local_time(row["received_at"]), (row["source_ref"] or "")[-60:],
                      (row["reason"] or "")[:300])
    console.print(table)
    console.print(shown_of_total(len(rows), total, "newest first"), highlight=False)
    if total and status == "quarantined":
        console.print("fix one: `yidi intake quarantine show ID`, then "
                      "`yidi intake quarantine replay ID [--edit | --content-file F]`")


@quarantine_app.command("show")
def quarantine_show(
    record_id: int,
    full: Annotated[bool, typer.Option("--full", help="All of a long content (a bulk drop's chunk)")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One record: where it came from, why it was quarantined, and its raw content."""
    from sqlalchemy import select

    from yidi.schema import intake_records as r

    engine = engine_or_exit()
    with engine.connect() as conn:
        row = conn.execute(select(r).where(r.c.id == record_id)).mappings().first()
        replays = conn.execute(select(r.c.id, r.c.status).where(r.c.replay_of == record_id)).all()
    if row is None:
        raise fail(f"no intake record {record_id}")
    if json_out:
        emit_json(dict(row) | {"replays": [dict(id=i, status=s) for i, s in replays]})
        return
    console.print(f"[bold]record {row['id']}[/bold]  channel {row['channel']}  status {row['status']}  "
                  f"received {local_time(row['received_at'])}")
    console.print(f"source: {row['source_ref']}  key: {row['source_key'] or '-'}  type: {row['content_type']}")
    if row["order_id"]:
        console.print(f"order: {row['order_id']}")
    if row["replay_of"]:
        console.print(f"replay of record {row['replay_of']}")
    if replays:
        console.print("replays: " + ", ".join(f"{i} ({s})" for i, s in replays))
    if row["reason"]:
        console.print(f"[yellow]reason:[/yellow] {row['reason']}")
    console.rule("content")
    lines = row["content"].split("\n")
    shown = lines if full or len(lines) <= SHOW_LINES else lines[:SHOW_LINES]
    console.print("\n".join(shown), markup=False, highlight=False, soft_wrap=True)
    if len(shown) < len(lines):
        console.print(f"[dim]… {len(lines) - len(shown):,} more lines (--full shows them all)[/dim]")


@quarantine_app.command("replay")
def quarantine_replay(
    record_id: int,
    content_file: Annotated[Path | None, typer.Option("--content-file", help="Corrected content (UTF-8)")] = None,
    edit: Annotated[bool, typer.Option("--edit", help="Correct the content in $EDITOR first")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Send a quarantined record through intake again (as it is, corrected from a file, or edited)."""
    from sqlalchemy import select

    from connectors.registry import build_connector
    from tasks.intake.landing import replay_record
    from yidi.schema import intake_records as r

    engine = engine_or_exit()
    with engine.connect() as conn:
        row = conn.execute(select(r.c.channel, r.c.content, r.c.status).where(r.c.id == record_id)).first()
    if row is None:
        raise fail(f"no intake record {record_id}")
    from tasks.onboarding.rules import IMPORT_CHANNEL

    if row.channel == IMPORT_CHANNEL:  # refused by `yidi load orders`: corrected in its file, not replayed
        raise fail(f"record {record_id} is an order refused by `yidi load orders`: fix its rows in the file and "
                   "load the file again (orders already imported stay as they are), or discard the record")  # fmt: skip
    content = None
    if content_file is not None:
        try:
            content = regular_file(content_file).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise fail(f"{content_file}: not UTF-8 text") from None
    elif edit:
        content = _edit(row.content)
        if content == row.content:
            console.print("content unchanged: replaying as it is")
    try:
        new_id, counts, outcome = replay_record(engine, build_connector(row.channel), record_id, content)
    except (LookupError, ValueError) as exc:
        raise fail(str(exc)) from None
    with engine.connect() as conn:
        new = conn.execute(select(r.c.status, r.c.reason, r.c.order_id).where(r.c.id == new_id)).first()
    result = {"record": record_id, "replay": new_id, "status": new.status if new else None,
              "reason": new.reason if new else None, "order_id": new.order_id if new else None,
              **{k: getattr(counts, k) for k in ("new", "updated", "unchanged", "quarantined")}}
    if json_out:
        emit_json(result)
    elif new is not None and new.status == "accepted":
        console.print(f"record {record_id} replayed as {new_id}: accepted (order {new.order_id}; "
                      f"{counts.new} new, {counts.updated} updated, {counts.unchanged} unchanged)")
    else:
        console.print(f"[yellow]record {record_id} replayed as {new_id}: still quarantined[/yellow] — "
                      f"{new.reason if new else ''}")
    if new is None or new.status != "accepted":
        raise typer.Exit(1)


@quarantine_app.command("discard")
def quarantine_discard(record_id: int, reason: Annotated[str, typer.Option(help="Why (kept with the record)")]
                       ) -> None:
    """Mark a quarantined record as dealt with outside the system (it stays stored, marked discarded)."""
    from tasks.intake.store import discard_record

    engine = engine_or_exit()
    try:
        discard_record(engine, record_id, reason)
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print(f"record {record_id} discarded")


def _edit(text: str) -> str:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as handle:
        handle.write(text)
        path = handle.name
    try:
        subprocess.run([*editor.split(), path], check=True)
        return Path(path).read_text(encoding="utf-8")
    finally:
        Path(path).unlink(missing_ok=True)
