"""Working days on the Chinese official calendar, across 2026's Spring Festival and National Day."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from yidi.workdays import CalendarOutOfRange, add_working_days, is_working_day, working_days_between

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_spring_festival_2026_holidays_and_make_up_days():
    # 2026: holiday 15–23 February; Saturdays 14 and 28 February are make-up working days.
    assert is_working_day(date(2026, 2, 14))
    assert not any(is_working_day(date(2026, 2, d)) for d in range(15, 24))
    assert is_working_day(date(2026, 2, 28))
    assert not is_working_day(date(2026, 2, 21))  # a Saturday inside the holiday


def test_adding_working_days_across_spring_festival():
    assert add_working_days(date(2026, 2, 13), 1) == date(2026, 2, 14)  # Friday -> make-up Saturday
    assert add_working_days(date(2026, 2, 13), 2) == date(2026, 2, 24)  # skips the whole holiday
    assert add_working_days(date(2026, 2, 27), 1) == date(2026, 2, 28)  # make-up Saturday after it
    assert add_working_days(date(2026, 2, 24), -2) == date(2026, 2, 13)


def test_adding_working_days_across_national_day_keeps_time_of_day():
    pending_since = datetime(2026, 9, 30, 16, 30, tzinfo=SHANGHAI)
    due = add_working_days(pending_since, 2)
    assert due == datetime(2026, 10, 9, 16, 30, tzinfo=SHANGHAI)  # 1–7 Oct off, 8 and 9 Oct work
    assert is_working_day(date(2026, 10, 10))  # make-up Saturday
    # UTC input is read in Asia/Shanghai: 2026-09-30 20:00 UTC is already 1 October 04:00 there.
    due_utc = add_working_days(datetime(2026, 9, 30, 20, 0, tzinfo=UTC), 1)
    assert due_utc.tzinfo == UTC
    assert due_utc.astimezone(SHANGHAI) == datetime(2026, 10, 8, 4, 0, tzinfo=SHANGHAI)


def test_working_days_between_counts_only_official_working_days():
    assert working_days_between(date(2026, 2, 13), date(2026, 2, 24)) == 2
    assert working_days_between(date(2026, 2, 24), date(2026, 2, 13)) == -2
    assert working_days_between(date(2026, 11, 27), date(2026, 11, 27)) == 0


def test_years_the_calendar_does_not_know_are_an_error_not_a_guess():
    with pytest.raises(CalendarOutOfRange, match="upgrade"):
        add_working_days(date(2030, 6, 1), 1)
    with pytest.raises(CalendarOutOfRange):
        is_working_day(date(2003, 1, 1))


def test_a_year_the_library_does_not_know_yet_is_read_from_the_policy_file(tmp_path, monkeypatch):
    """chinesecalendar 1.11 ends with 2026, so from mid-December a two-day review deadline falls in a year it does
    not know. Until a release has it, operations enter the State Council's arrangement in [calendar]; only the
    years listed there are read from it. (The dates below are an example arrangement, not 2027's.)"""
    from yidi.settings import get_settings

    policy = tmp_path / "yidi.toml"
    policy.write_text("[calendar]\nyears = [2027]\nholidays = [2027-01-01, 2027-01-04]\n"
                      "workdays = [2027-01-09]\n", encoding="utf-8")  # fmt: skip
    monkeypatch.setenv("YIDI_CONFIG", str(policy))
    get_settings.cache_clear()
    assert not is_working_day(date(2027, 1, 1))  # a Friday, listed as a holiday
    assert not is_working_day(date(2027, 1, 2))  # a Saturday
    assert is_working_day(date(2027, 1, 9))  # a make-up Saturday
    assert is_working_day(date(2027, 1, 5))  # a plain Tuesday
    # Thursday 31 December 2026 (the library's year) + 2 working days: 1 and 4 January off, a weekend between,
    # so Tuesday 5 and Wednesday 6 January 2027.
    assert add_working_days(datetime(2026, 12, 31, 16, 0, tzinfo=SHANGHAI), 2) == datetime(2027, 1, 6, 16, 0,
                                                                                          tzinfo=SHANGHAI)  # fmt: skip
    with pytest.raises(CalendarOutOfRange, match=r"\[calendar\]"):
        is_working_day(date(2028, 3, 1))  # a year neither knows
