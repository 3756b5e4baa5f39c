"""Run names that say what ran (``reconcile wechatpay 2026-11-30``, ``intake 10:05``) instead of Prefect's random
``sweet-dogfish``: each ``@flow`` passes ``flow_run_name=run_name(...)``; Prefect calls it when the run starts.

The time in a name is the run's scheduled (else actual) start in Asia/Shanghai, the business time zone, as ``HH:MM``;
runs of a daily flow get the date instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from yidi.workdays import BUSINESS_TZ


def _started() -> datetime:
    from prefect.runtime import flow_run

    when = None
    try:
        when = flow_run.scheduled_start_time
    except Exception:  # noqa: BLE001 - outside a run (tests calling the namer directly)
        when = None
    return (when or datetime.now(BUSINESS_TZ)).astimezone(BUSINESS_TZ)


def _parameters() -> dict:
    from prefect.runtime import flow_run

    try:
        return dict(flow_run.parameters or {})
    except Exception:  # noqa: BLE001 - outside a run
        return {}


def _shown(value) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    if isinstance(value, datetime):
        return value.astimezone(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M")
    return str(getattr(value, "value", value))


def run_name(label: str, *shown: str, when: str = "%H:%M", default: dict[str, str] | None = None) -> Callable[[], str]:
    """``label``, then the values of the parameters ``shown`` that were given (or their ``default`` text), then the
    start time formatted by ``when`` (empty: no time)."""
    default = default or {}

    def name() -> str:
        params = _parameters()
        parts = [label]
        for key in shown:
            value = params.get(key)
            if value not in (None, "", [], {}):
                parts.append(_shown(value))
            elif key in default:
                parts.append(default[key])
        if when:
            parts.append(_started().strftime(when))
        return " ".join(parts)

    return name


def reconcile_name() -> str:
    """``reconcile wechatpay 2026-11-30``: the source (or every source), then the period asked for, else the
    business day it reconciles (yesterday), else the file's name."""
    from datetime import timedelta
    from pathlib import Path

    params = _parameters()
    if params.get("file_path"):
        return f"reconcile file {Path(str(params['file_path'])).name}"
    source = _shown(params["source"]) if params.get("source") else "all"
    period = params.get("period") or (_started().date() - timedelta(days=1)).isoformat()
    if params.get("as_of"):
        return f"reconcile {source} {params.get('period') or ''} as of {params['as_of']}".replace("  ", " ")
    return f"reconcile {source} {period}"


def risk_name() -> str:
    """``risk 2026-12-04``: the period asked for, else the business day the run started."""
    period = _parameters().get("period")
    return f"risk {period or _started().date().isoformat()}"


def audit_name() -> str:
    """``audit 2026-11``: the month asked for, else the previous month (the audit's default)."""
    from datetime import timedelta

    period = _parameters().get("period")
    if not period:
        period = f"{_started().date().replace(day=1) - timedelta(days=1):%Y-%m}"
    return f"audit {period}"
