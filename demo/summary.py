"""The demo's summary, told where people look: a markdown artifact of the ``lifecycle-demo`` run, the run's log, and
the terminal (80 columns). It ends with what needs a person, each with the command that shows it, spelled so it
runs from the repository (``.venv/bin/yidi`` when ``yidi`` is not on PATH)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from sqlalchemy import Engine, func, select

from yidi import schema_aftersales as aftersales_tables
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


def summary_markdown(tallies: dict[str, list[tuple[str, int]]], actions: list[dict], ui_runs: str | None,
                     aftersales: dict | None = None) -> str:
    total = sum(n for _, n in tallies.get("state", []))
    lines = [f"# Demo: {total:,} orders through the whole lifecycle", ""]
    for key, title in (("state", "by state"), ("channel", "by channel"), ("region", "by region"),
                       ("payment_state", "by payment state")):  # fmt: skip
        lines.append(f"- **{title}**: " + ", ".join(f"{value} {n:,}" for value, n in tallies.get(key, [])))
    told = aftersales_lines(aftersales or {}, width=1000)
    if told:
        lines += ["", "## After-sales and feedback", ""]
        lines += [f"{'  ' if line.startswith('  ') else ''}- {line.strip()}" for line in told]
    lines += ["", "## Needs action", ""]
    if actions:
        # the store's settings said once above the table: the UI cuts a long command column off
        environment = split_environment(actions[0]["command"])[0]
        if environment:
            lines += [f"The commands act on the demo's store; in a shell at the repository, first: `export {environment}`",
                      ""]  # fmt: skip
        lines += ["| what | how many | command |", "|---|---:|---|"]
        lines += [f"| {a['what']} | {a['count']:,} | `{without_environment(a['command'], environment)}` |"
                  for a in actions]  # fmt: skip
    else:
        lines.append("Nothing: every record was read, every order decided, no incident or case open.")
    if ui_runs:
        lines += ["", f"Runs: {ui_runs}"]
    return "\n".join(lines)


def split_environment(command: str) -> tuple[str, str]:
    """``YIDI_HOME=… YIDI_CONFIG=… .venv/bin/yidi`` → (``YIDI_HOME=… YIDI_CONFIG=…``, ``.venv/bin/yidi``)."""
    words = command.split(" ")
    settings = next((i for i, word in enumerate(words) if "=" not in word), len(words))
    return " ".join(words[:settings]), " ".join(words[settings:])


def without_environment(command: str, environment: str) -> str:
    """``command`` without the ``environment`` settings in front (said once above it instead)."""
    return command.removeprefix(f"{environment} ") if environment else command


def terminal_lines(tallies: dict[str, list[tuple[str, int]]], actions: list[dict], width: int = 80,
                   command: str | None = None) -> list[str]:
    """The same summary for a terminal: short lines that fit ``width`` columns (wrapped by hand, not by the
    terminal), commands on lines of their own. The store's settings in front of ``command`` (the CLI as
    ``yidi_command`` gives it) are said once, as an ``export`` line, so each command fits a line and can be pasted."""
    import textwrap

    environment = split_environment(command or "")[0]
    out = []
    total = sum(n for _, n in tallies.get("state", []))
    out.append(f"Demo: {total:,} orders through the whole lifecycle")
    for key, title in (("state", "by state"), ("channel", "by channel"), ("region", "by region"),
                       ("payment_state", "by payment"), ):  # fmt: skip
        text = f"{title}: " + ", ".join(f"{value} {n:,}" for value, n in tallies.get(key, []))
        out += textwrap.wrap(text, width, subsequent_indent="    ")
    out.append("")
    if environment:
        out += ["The commands below act on the demo's store; in this shell, first:", f"    export {environment}"]
    if actions:
        out.append("Needs action:")
        for a in actions:
            out += textwrap.wrap(f"- {a['count']:,} {a['what']}", width, subsequent_indent="  ")
            out.append(f"    {without_environment(a['command'], environment)}")  # whole, for copy and paste
    else:
        out.append("Needs action: nothing.")
    return out


# After-sales (issue 14): what the demo's cases, feedback, surveys and refunds came to, in words a manager reads.
RULE_WORDS = {
    "NO_REASON_RETURN_7D": "returned within 7 days (no reason)",
    "NO_REASON_WINDOW_PASSED": "refused: past the 7 days",
    "NO_REASON_NOT_APPLICABLE": "refused: no-reason returns are for consumers",
    "QUALITY_EXCHANGE_7D": "exchanged (quality, within 7 days)",
    "QUALITY_RETURN_7D": "returned (quality, within 7 days)",
    "QUALITY_REPAIR": "repaired (quality, after 7 days)",
    "QUALITY_REPLACE": "replaced (quality, after 7 days)",
    "WARRANTY_REPAIR": "repaired under warranty",
    "INSTALLATION_REVISIT": "installation revisit",
}


def _rule_words(rule: str) -> str:
    if rule.startswith("NO_REASON_EXCEPTION_"):
        return f"refused: statutory exception ({rule.removeprefix('NO_REASON_EXCEPTION_').lower()})"
    return RULE_WORDS.get(rule, rule)


def aftersales_figures(engine: Engine) -> dict:
    """Cases by decision and outcome, return parcels, service jobs, feedback, survey replies and refunds."""
    t = aftersales_tables
    case, inbox, job, item, refund, survey = (t.aftersales_cases.c, t.aftersales_inbox.c, t.service_jobs.c,
                                              t.feedback_items.c, t.refund_requests.c, t.surveys.c)  # fmt: skip

    def grouped(conn, *columns) -> list[tuple]:
        return [tuple(r) for r in conn.execute(select(*columns, func.count()).group_by(*columns)
                                               .order_by(*columns)).all()]  # fmt: skip

    def count(conn, where) -> int:
        return int(conn.execute(select(func.count()).where(where)).scalar_one())

    with engine.connect() as conn:
        replies = conn.execute(select(func.count(), func.avg(survey.score)).where(survey.score.is_not(None))).one()
        return {"cases": grouped(conn, case.decision_rule, case.status),
                "unreadable": count(conn, inbox.status == "quarantined"),
                "tracked_to_arrival": count(conn, case.return_parcel_state == "arrived"),
                "jobs": grouped(conn, job.kind, job.status), "feedback": grouped(conn, item.category),
                "channels": grouped(conn, item.channel), "survey_replies": int(replies[0]),
                "average_score": None if replies[1] is None else round(float(replies[1]), 1),
                "refunds": grouped(conn, refund.route, refund.status),
                # of the after-sales refunds' orders (the settlement demo's own refunds without a case are its own)
                "refund_without_return": count(conn, (settlement_cases.c.case_class == "refund_without_return")
                                               & settlement_cases.c.order_id.in_(select(refund.order_id)))}


def aftersales_lines(figures: dict, width: int = 80) -> list[str]:
    """The after-sales figures as short lines (each wrapped to ``width``)."""
    import textwrap

    if not figures.get("cases") and not figures.get("feedback"):
        return []
    total = sum(n for *_, n in figures["cases"])
    unreadable = figures["unreadable"]
    out = [f"After-sales: {total} cases; {unreadable} unreadable inbound "
           f"{'record' if unreadable == 1 else 'records'} kept (quarantined)"]
    for rule, status, n in figures["cases"]:
        out.append(f"  {n} {_rule_words(rule) if rule else 'not decided'} → {status}")
    out.append(f"  return parcels tracked to arrival (Kuaidi100): {figures['tracked_to_arrival']}")
    if figures["jobs"]:  # by status (the kinds listed once): a line, not a wrapped table
        by_status: dict[str, int] = {}
        for _, status, n in figures["jobs"]:
            by_status[status] = by_status.get(status, 0) + n
        kinds = sorted({kind for kind, _, _ in figures["jobs"]})
        out.append(f"  service jobs ({', '.join(kinds)}): "
                   + ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in by_status.items()))
    out.append("Feedback: " + ", ".join(f"{n} {category}" for category, n in figures["feedback"])
               + " (by " + ", ".join(f"{channel} {n}" for channel, n in figures["channels"]) + ")")
    average = f", average {figures['average_score']} of 5" if figures["average_score"] is not None else ""
    out.append(f"  survey replies: {figures['survey_replies']}{average}")
    out.append("Refunds: " + (", ".join(f"{n} {route} {status}" for route, status, n in figures["refunds"]) or "none")
               + f"; settlement flagged {figures['refund_without_return']} as refund without a return")
    return [part for line in out
            for part in textwrap.wrap(line, width, subsequent_indent="    " if line.startswith("  ") else "  ")]
