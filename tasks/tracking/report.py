"""What a polling cycle reports: the cycle's summary, its markdown for the Prefect UI, and the run's incidents
as a table without personal data (phones and signers' names inside carrier text masked).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection

from tasks.tracking import store
from tasks.tracking.applying import BatchSummary
from yidi.bulk import frame_records
from yidi.masking import mask_name, mask_phone
from yidi.workdays import BUSINESS_TZ

_PHONE_IN_TEXT = re.compile(r"(?<!\d)(1\d{10}|0\d{2,3}-?\d{7,8})(?!\d)")
_SIGNER_IN_TEXT = re.compile(r"((?:签收人|收件人|收货人)\s*[:：]\s*)([^\s,，。;；【】()（）:：]{1,6})")
_NOT_A_NAME = ("本人", "寄件人", "家人", "同事", "前台", "门卫", "快递柜", "驿站", "代收点")


def _mask_signer(match: re.Match) -> str:
    name = match.group(2)
    return match.group(0) if name.startswith(_NOT_A_NAME) else match.group(1) + mask_name(name)


def mask_text(text: str | None) -> str:
    """Phones and signers' names inside carrier text masked (checkpoints carry both)."""
    return _SIGNER_IN_TEXT.sub(_mask_signer, _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text or ""))


def exceptions_table(conn: Connection, incident_ids: Sequence[int]) -> list[dict]:
    """The run's incidents for the UI: no names, no addresses, phones masked."""
    if not incident_ids:
        return []
    frame = store.incident_report_rows(conn, [int(i) for i in incident_ids][:2000])
    return [
        {
            "incident": int(r["id"]),
            "order": r["order_no"],
            "type": r["incident_type"],
            "carrier": r["carrier"],
            "waybill": r["waybill_no"],
            "owner": r["owner"],
            "due (Asia/Shanghai)": r["due_at"].astimezone(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M"),
            "evidence": mask_text(r["evidence"])[:120],
        }
        for r in frame_records(frame)
    ]


def cycle_summary(total: BatchSummary, timed: dict, *, due: int, now: datetime, seconds: float) -> dict:
    """One cycle's counts: the batches' (and pushes') summary plus the time-based exceptions."""
    summary = total.as_dict()
    exceptions: Counter = Counter()
    summary["incident_ids"] = list(total.incidents) + list(timed.get("incident_ids", []))
    summary.update(
        as_of=now.isoformat(),
        due=due,
        seconds=seconds,
        time_based=timed,
        claims=total.claims + timed.get("claims", 0),
        notices=total.notices + timed.get("notices", 0),
        errors=total.errors,
    )
    summary["orders_moved"] = dict(Counter(total.orders_moved) + Counter(timed.get("orders_moved", {})))
    exceptions.update(total.incident_types)
    exceptions.update(timed.get("incidents_opened", {}))
    summary["exceptions_from_events"] = len(total.incidents)
    summary["exceptions"] = dict(exceptions)
    return summary


def summary_markdown(summary: dict) -> str:
    lines = ["# Carrier polling", ""]
    lines.append(f"- as of: {summary.get('as_of')}")
    lines.append(f"- due shipments: {summary.get('due', 0)}; cycle seconds: {summary.get('seconds', 0):.1f}")
    if summary.get("breaker"):
        lines.append(f"- **polling stopped early**: {summary['breaker']}")
    lines += ["", "| outcome | waybills |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(summary.get("outcomes", {}).items())]
    lines += ["", "| canonical status (polled shipments) | shipments |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(summary.get("statuses", {}).items())]
    lines += ["", "| exceptions found | incidents |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(summary.get("exceptions", {}).items())] or ["| none | 0 |"]
    lines += ["", f"new checkpoints: {summary.get('new_events', 0)}; orders moved: {summary.get('orders_moved', {})}; "
              f"claims opened: {summary.get('claims', 0)}; notices queued: {summary.get('notices', 0)}; "
              f"carrier code changes: {summary.get('carrier_changes', 0)}"]  # fmt: skip
    return "\n".join(lines)
