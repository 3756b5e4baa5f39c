"""Report periods (day, ISO week, month) in the business time zone, RAG status and text sparklines: pure helpers."""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time, timedelta

import pandas as pd

from yidi.workdays import BUSINESS_TZ

SPARK = "▁▂▃▄▅▆▇█"


class PeriodError(ValueError):
    """A period text that is not YYYY-MM, YYYY-Www or YYYY-MM-DD."""


def parse_period(text: str) -> tuple[date, date, str]:
    """(first day, day after the last, kind) of ``2026-11`` (month), ``2026-W48`` (ISO week), ``2026-11-30``;
    ``PeriodError`` naming the formats for anything else, ``2026-13`` and ``2026-02-30`` too."""
    try:
        return _parse_period(text)
    except PeriodError:
        raise
    except ValueError:  # the right shape, not a day of the calendar
        raise PeriodError(f"period {text!r} is not in the calendar: use YYYY-MM (month), YYYY-Www (ISO week) or "
                          "YYYY-MM-DD (day)") from None


def _parse_period(text: str) -> tuple[date, date, str]:
    if re.fullmatch(r"\d{4}-\d{2}", text):
        start = date(int(text[:4]), int(text[5:]), 1)
        end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
        return start, end, "month"
    if m := re.fullmatch(r"(\d{4})-W(\d{2})", text):
        start = date.fromisocalendar(int(m[1]), int(m[2]), 1)
        return start, start + timedelta(days=7), "week"
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        start = date.fromisoformat(text)
        return start, start + timedelta(days=1), "day"
    raise PeriodError(f"period {text!r}: use YYYY-MM (month), YYYY-Www (ISO week) or YYYY-MM-DD (day)")


def period_of(day: date, kind: str) -> str:
    if kind == "month":
        return f"{day:%Y-%m}"
    if kind == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return day.isoformat()


def previous_periods(period: str, n: int) -> list[str]:
    """The ``n`` periods ending with ``period``, oldest first."""
    start, _end, kind = parse_period(period)
    out = [period]
    while len(out) < n:
        start = parse_period(out[0])[0] - timedelta(days=1)
        out.insert(0, period_of(start, kind))
    return out


def default_period(as_of: datetime, kind: str = "month") -> str:
    """The period ``as_of`` falls in (business time zone)."""
    return period_of(as_of.astimezone(BUSINESS_TZ).date(), kind)


def utc_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """Business-day bounds as aware datetimes (for SQL against UTC columns)."""
    return (datetime.combine(start, time(), BUSINESS_TZ), datetime.combine(end, time(), BUSINESS_TZ))


def business_dates(times: pd.Series) -> pd.Series:
    return pd.to_datetime(times, utc=True).dt.tz_convert(BUSINESS_TZ).dt.date


def business_days(times: pd.Series) -> pd.Series:
    """``business_dates`` as naive midnight datetimes (NaT stays NaT), computed on the whole column at once."""
    return pd.to_datetime(times, utc=True).dt.tz_convert(BUSINESS_TZ).dt.tz_localize(None).dt.normalize()


def rag(value: float | None, target: float, amber: float, higher_is_better: bool = True) -> str:
    """green at or beyond the target, amber up to the amber limit, red past it; ``none`` without a value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    if higher_is_better:
        return "green" if value >= target else "amber" if value >= amber else "red"
    return "green" if value <= target else "amber" if value <= amber else "red"


RAG_MARK = {"green": "● 绿", "amber": "◐ 黄", "red": "○ 红", "none": "·"}


def sparkline(values) -> str:
    """``▁▃█`` for a series (missing values as a blank)."""
    numbers = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not numbers:
        return " " * len(list(values))
    low, high = min(numbers), max(numbers)
    span = high - low or 1
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(" ")
        else:
            out.append(
                SPARK[min(len(SPARK) - 1, int((v - low) / span * (len(SPARK) - 1) + 0.5))]
                if high > low
                else SPARK[3]
            )
    return "".join(out)
