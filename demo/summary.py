"""The demo's summary, told where people look: a markdown artifact of the ``lifecycle-demo`` run, the run's log, and
the terminal (80 columns). It ends with what needs a person, each with the command that shows it, spelled so it
runs from the repository (``.venv/bin/yidi`` when ``yidi`` is not on PATH)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from sqlalchemy import Engine, func, select

from yidi.schema import intake_records, notification_outbox, orders
from yidi.schema_settlement import settlement_cases
from yidi.schema_tracking import tracking_incidents


def yidi_command(home: Path | None = None) -> str:
    """How to call the CLI from here: ``yidi`` when it is on PATH and this interpreter's, else the venv's script
    by a path relative to the current directory (``.venv/bin/yidi``), else ``python -m app.cli.main``; with
    ``YIDI_HOME=...`` in front when the demo's store is not the default one (and ``YIDI_CONFIG=...`` when that home
    has its own policy file: the demo's staff list)."""
    here = Path(sys.executable).parent
    on_path = shutil.which("yidi")
    if on_path and Path(on_path).parent == here:
        command = "yidi"
    elif (here / "yidi").exists():
        command = _relative(here / "yidi")
    else:
        command = f"{_relative(Path(sys.executable))} -m app.cli.main"
    if home and (home / "yidi.toml").exists():  # the demo's policy (its staff list): commands run as the demo did
        return f"YIDI_HOME={_relative(home)} YIDI_CONFIG={_relative(home / 'yidi.toml')} {command}"
    return f"YIDI_HOME={_relative(home)} {command}" if home else command


def _relative(path: Path) -> str:
    """Relative to the current directory when below it (``.venv/bin/yidi``), else absolute."""
    try:
        return str(Path(path).absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def counts(engine: Engine) -> dict[str, list[tuple[str, int]]]:
    """Orders by state, channel, region and payment state, most first."""
    out = {}
    with engine.connect() as conn:
        for column in (orders.c.state, orders.c.channel, orders.c.region, orders.c.payment_state):
            rows = conn.execute(select(column, func.count()).group_by(column).order_by(func.count().desc())).all()
            out[column.name] = [(str(value), int(n)) for value, n in rows]
    return out


def needs_action(engine: Engine, command: str) -> list[dict]:
    """What a person has to look at after the run, each with how many and the command that lists them."""
    checks = [
        ("intake records quarantined (could not be read)", select(func.count()).select_from(intake_records)
         .where(intake_records.c.status == "quarantined"), "intake quarantine list"),
        ("orders waiting for manual review", select(func.count()).select_from(orders)
         .where(orders.c.state == "pending_review"), "review list"),
        ("tracking incidents open (delay, damage, loss, refusal)", select(func.count()).select_from(tracking_incidents)
         .where(tracking_incidents.c.status == "open"), "tracking incidents"),
        ("settlement discrepancy cases open", select(func.count()).select_from(settlement_cases)
         .where(settlement_cases.c.status == "open"), "settlement cases list"),
        ("customer notices that failed (retried later)", select(func.count()).select_from(notification_outbox)
         .where(notification_outbox.c.status == "failed"), None),
    ]  # fmt: skip
    found = []
    with engine.connect() as conn:
        for what, query, sub in checks:
            n = int(conn.execute(query).scalar_one())
            if n:
                found.append({"what": what, "count": n, "command": f"{command} {sub}" if sub else "Prefect UI: "
                              "artifact notification-outbox"})  # fmt: skip
    return found


def summary_markdown(tallies: dict[str, list[tuple[str, int]]], actions: list[dict], ui_runs: str | None) -> str:
    total = sum(n for _, n in tallies.get("state", []))
    lines = [f"# Demo: {total:,} orders through the whole lifecycle", ""]
    for key, title in (("state", "by state"), ("channel", "by channel"), ("region", "by region"),
                       ("payment_state", "by payment state")):  # fmt: skip
        lines.append(f"- **{title}**: " + ", ".join(f"{value} {n:,}" for value, n in tallies.get(key, [])))
    lines += ["", "## Needs action", ""]
    if actions:
        lines += ["| what | how many | command |", "|---|---:|---|"]
        lines += [f"| {a['what']} | {a['count']:,} | `{a['command']}` |" for a in actions]
    else:
        lines.append("Nothing: every record was read, every order decided, no incident or case open.")
    if ui_runs:
        lines += ["", f"Runs: {ui_runs}"]
    return "\n".join(lines)


def terminal_lines(tallies: dict[str, list[tuple[str, int]]], actions: list[dict], width: int = 80) -> list[str]:
    """The same summary for a terminal: short lines that fit ``width`` columns (wrapped by hand, not by the
    terminal), commands on lines of their own."""
    import textwrap

    out = []
    total = sum(n for _, n in tallies.get("state", []))
    out.append(f"Demo: {total:,} orders through the whole lifecycle")
    for key, title in (("state", "by state"), ("channel", "by channel"), ("region", "by region"),
                       ("payment_state", "by payment"), ):  # fmt: skip
        text = f"{title}: " + ", ".join(f"{value} {n:,}" for value, n in tallies.get(key, []))
        out += textwrap.wrap(text, width, subsequent_indent="    ")
    out.append("")
    if actions:
        out.append("Needs action:")
        for a in actions:
            out += textwrap.wrap(f"- {a['count']:,} {a['what']}", width, subsequent_indent="  ")
            out.append(f"    {a['command']}")  # whole, for copy and paste (short from the repository)
    else:
        out.append("Needs action: nothing.")
    return out
