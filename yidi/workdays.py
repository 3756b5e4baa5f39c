"""Working days on the Chinese official calendar (holidays and make-up working days), via ``chinesecalendar``.

Deadlines such as the manual review limit (V6) count working days. A date beyond the years the library knows is
an error (``CalendarOutOfRange``), never a guess: upgrade ``chinesecalendar`` when the State Council publishes the
next year's arrangement, or, until a release has it, enter that arrangement in the policy file (``[calendar]``:
the year, its holidays and its make-up working days), which is read only for years the library does not know.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
from pydantic import BaseModel, ConfigDict, Field

BUSINESS_TZ = ZoneInfo("Asia/Shanghai")


class CalendarOutOfRange(ValueError):
    """The official holiday arrangement for this date is not known to the installed calendar."""


class CalendarPolicy(BaseModel):
    """``[calendar]``: the State Council's arrangement of a year the installed ``chinesecalendar`` does not know yet
    (published each November; a library release follows). Only the years listed are read from here."""

    model_config = ConfigDict(extra="forbid")
    years: list[int] = Field([], description="Years whose arrangement is given here in full")
    holidays: list[date] = Field([], description="Official days off in those years that fall on a weekday")
    workdays: list[date] = Field([], description="Make-up working days (调休上班) in those years that fall at a weekend")


def _from_policy(day: date) -> bool | None:
    from yidi.settings import get_settings  # the policy names a year only the State Council knows so far

    calendar = get_settings().calendar
    if day.year not in calendar.years:
        return None
    return day in calendar.workdays or (day.weekday() < 5 and day not in calendar.holidays)


def _day(value: date | datetime) -> date:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(BUSINESS_TZ)
        return value.date()
    return value


def is_working_day(value: date | datetime) -> bool:
    day = _day(value)
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError as exc:
        published = _from_policy(day)
        if published is not None:
            return published
        raise CalendarOutOfRange(
            f"{day.isoformat()}: the installed chinesecalendar {chinese_calendar.__version__} does not know the "
            f"official holidays of {day.year}; upgrade it, or enter the State Council's arrangement for {day.year} "
            "in the policy file ([calendar] years, holidays, workdays)"
        ) from exc


def add_working_days(start: date | datetime, n: int) -> date | datetime:
    """``start`` moved forward by ``n`` working days (backwards for negative n).

    A datetime keeps its time of day (in Asia/Shanghai), so "2 working days from Friday 15:00" is Tuesday 15:00
    in a normal week. Starting on a non-working day counts from the next working day's start of business.
    """
    if n == 0:
        return start
    step = 1 if n > 0 else -1
    day = _day(start)
    remaining = abs(n)
    while remaining:
        day += timedelta(days=step)
        if is_working_day(day):
            remaining -= 1
    if isinstance(start, datetime):
        local = start.astimezone(BUSINESS_TZ) if start.tzinfo else start
        moved = datetime.combine(day, local.time(), tzinfo=local.tzinfo)
        return moved.astimezone(start.tzinfo) if start.tzinfo else moved
    return day


def working_days_between(start: date | datetime, end: date | datetime) -> int:
    """Working days after ``start`` up to and including ``end`` (negative when end is earlier)."""
    a, b = _day(start), _day(end)
    sign = 1
    if b < a:
        a, b, sign = b, a, -1
    count = 0
    day = a
    while day < b:
        day += timedelta(days=1)
        if is_working_day(day):
            count += 1
    return sign * count


def add_working_hours(start: datetime, hours: float, day_start: time, day_end: time) -> datetime:
    """``start`` moved forward by ``hours`` of working time: only between ``day_start`` and ``day_end`` (Asia/Shanghai)
    on working days. Feedback response limits (T3) count this way; a message at Friday 17:00 with a four-hour limit
    is due Monday 12:00 in a normal week. Returns an aware datetime in the business time zone."""
    local = start.astimezone(BUSINESS_TZ)
    remaining = timedelta(hours=hours)
    while True:
        day = local.date()
        opens = datetime.combine(day, day_start, tzinfo=BUSINESS_TZ)
        closes = datetime.combine(day, day_end, tzinfo=BUSINESS_TZ)
        if not is_working_day(day) or local >= closes:
            local = datetime.combine(day + timedelta(days=1), day_start, tzinfo=BUSINESS_TZ)
            continue
        local = max(local, opens)
        if local + remaining <= closes:
            return local + remaining
        remaining -= closes - local
        local = datetime.combine(day + timedelta(days=1), day_start, tzinfo=BUSINESS_TZ)
