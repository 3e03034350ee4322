"""next_due: `every` (with and without `at`, in a timezone, across DST transitions) and cron (lists, ranges, steps,
day of week 7, the day-of-month / day-of-week OR rule); invalid specs raise ValueError."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from server.domain.schedule import canonical, next_due

NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def ticks(spec: dict[str, Any], after: datetime, count: int, *, anchor: datetime | None = None) -> list[datetime]:
    anchor = anchor or after
    out = []
    for _ in range(count):
        after = next_due(spec, after, anchor=anchor)
        out.append(after)
    return out


# --------------------------------------------------------------------------- every


def test_every_hours_counts_from_the_anchor() -> None:
    anchor = utc(2026, 1, 10, 9, 17, 5)
    assert next_due({"every": "6h"}, anchor, anchor=anchor) == anchor + timedelta(hours=6)
    assert next_due({"every": "6h"}, anchor + timedelta(hours=13), anchor=anchor) == anchor + timedelta(hours=18)
    # strictly after: a tick exactly at `after` is not the next one
    assert next_due({"every": "6h"}, anchor + timedelta(hours=12), anchor=anchor) == anchor + timedelta(hours=18)
    # the timezone plays no part in minute and hour intervals
    spec = {"every": "6h", "timezone": "Asia/Tokyo"}
    assert next_due(spec, anchor + timedelta(hours=1), anchor=anchor) == anchor + timedelta(hours=6)


def test_every_minutes_and_default_anchor() -> None:
    after = utc(2026, 1, 10, 9, 0)
    assert next_due({"every": "30m"}, after) == utc(2026, 1, 10, 9, 30)
    assert ticks({"every": "30m"}, after, 3) == [
        utc(2026, 1, 10, 9, 30),
        utc(2026, 1, 10, 10),
        utc(2026, 1, 10, 10, 30),
    ]


def test_missed_ticks_give_one_next_tick_on_the_grid() -> None:
    anchor = utc(2026, 1, 1)
    late = anchor + timedelta(days=3, minutes=7)  # 72 hourly ticks were missed
    assert next_due({"every": "1h"}, late, anchor=anchor) == anchor + timedelta(days=3, hours=1)


def test_daily_at_in_a_timezone_stays_at_local_time_across_dst() -> None:
    spec = {"every": "1d", "at": "02:00", "timezone": "America/New_York"}
    anchor = utc(2026, 10, 30, 12)  # 08:00 in New York, daylight time
    local = [t.astimezone(NEW_YORK) for t in ticks(spec, anchor, 5, anchor=anchor)]
    assert [(t.day, t.hour, t.minute) for t in local] == [(31, 2, 0), (1, 2, 0), (2, 2, 0), (3, 2, 0), (4, 2, 0)]
    # New York falls back on 1 November 2026: the UTC hour of 02:00 local moves from 06:00 to 07:00
    assert [t.astimezone(UTC).hour for t in local] == [6, 7, 7, 7, 7]


def test_a_local_time_that_does_not_exist_fires_at_the_next_valid_instant() -> None:
    # 8 March 2026: New York jumps from 02:00 EST to 03:00 EDT, so 02:00 and 02:30 do not exist that day
    anchor = utc(2026, 3, 6, 12)
    spec = {"every": "1d", "at": "02:30", "timezone": "America/New_York"}
    got = ticks(spec, anchor, 3, anchor=anchor)
    assert got == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]
    assert got[1].astimezone(NEW_YORK).strftime("%H:%M %Z") == "03:00 EDT"


def test_an_ambiguous_local_time_fires_once_at_its_first_occurrence() -> None:
    # 1 November 2026: 01:30 happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST)
    anchor = utc(2026, 10, 31, 12)
    spec = {"every": "1d", "at": "01:30", "timezone": "America/New_York"}
    assert ticks(spec, anchor, 2, anchor=anchor) == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_days_without_at_keep_the_anchors_local_time() -> None:
    anchor = utc(2026, 10, 30, 13, 15)  # 09:15 EDT
    spec = {"every": "1d", "timezone": "America/New_York"}
    local = [t.astimezone(NEW_YORK) for t in ticks(spec, anchor, 4, anchor=anchor)]
    assert [(t.day, t.hour, t.minute) for t in local] == [(31, 9, 15), (1, 9, 15), (2, 9, 15), (3, 9, 15)]
    # in UTC (no timezone) a day is 24 hours
    assert next_due({"every": "2d"}, anchor, anchor=anchor) == anchor + timedelta(days=2)


def test_weekly_at_midnight_starts_at_the_first_midnight_after_the_anchor() -> None:
    anchor = utc(2026, 1, 7, 15)  # a Wednesday afternoon
    spec = {"every": "7d", "at": "00:00"}
    assert ticks(spec, anchor, 3, anchor=anchor) == [utc(2026, 1, 8), utc(2026, 1, 15), utc(2026, 1, 22)]
    # long after the anchor: still Thursdays
    assert next_due(spec, utc(2026, 6, 1), anchor=anchor) == utc(2026, 6, 4)
    # at a time still ahead on the anchor's day: that day is the first
    assert next_due({"every": "2d", "at": "18:00"}, anchor, anchor=anchor) == utc(2026, 1, 7, 18)
    assert next_due({"every": "2d", "at": "18:00"}, utc(2026, 1, 7, 18), anchor=anchor) == utc(2026, 1, 9, 18)


def test_at_in_tokyo() -> None:
    spec = {"every": "1d", "at": "09:00", "timezone": "Asia/Tokyo"}
    assert next_due(spec, utc(2026, 1, 1, 0, 0)) == utc(2026, 1, 2, 0, 0)  # 09:00 JST = 00:00 UTC
    assert next_due(spec, utc(2025, 12, 31, 23, 59)) == utc(2026, 1, 1, 0, 0)


# --------------------------------------------------------------------------- cron


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("* * * * *", utc(2026, 1, 1, 10, 0, 30), [utc(2026, 1, 1, 10, 1), utc(2026, 1, 1, 10, 2)]),
        ("*/15 * * * *", utc(2026, 1, 1, 10, 50), [utc(2026, 1, 1, 11, 0), utc(2026, 1, 1, 11, 15)]),
        ("5,35 14 * * *", utc(2026, 1, 1, 14, 5), [utc(2026, 1, 1, 14, 35), utc(2026, 1, 2, 14, 5)]),
        ("0 9-17/4 * * *", utc(2026, 1, 1, 9, 0), [utc(2026, 1, 1, 13), utc(2026, 1, 1, 17), utc(2026, 1, 2, 9)]),
        ("30 8 1-10/3 * *", utc(2026, 1, 2), [utc(2026, 1, 4, 8, 30), utc(2026, 1, 7, 8, 30), utc(2026, 1, 10, 8, 30)]),
        ("0 0 1 1,7 *", utc(2026, 1, 1), [utc(2026, 7, 1), utc(2027, 1, 1)]),
        # 2026-01-01 is a Thursday; 7 and 0 are both Sunday
        ("0 12 * * 7", utc(2026, 1, 1), [utc(2026, 1, 4, 12), utc(2026, 1, 11, 12)]),
        ("0 12 * * 0", utc(2026, 1, 1), [utc(2026, 1, 4, 12), utc(2026, 1, 11, 12)]),
        ("0 12 * * 5-7", utc(2026, 1, 1), [utc(2026, 1, 2, 12), utc(2026, 1, 3, 12), utc(2026, 1, 4, 12)]),
        # working hours, Monday to Friday: Friday evening -> Monday morning
        ("*/30 9-17 * * 1-5", utc(2026, 1, 2, 17, 30), [utc(2026, 1, 5, 9), utc(2026, 1, 5, 9, 30)]),
        # both day fields restricted: the 13th OR a Friday
        ("0 0 13 * 5", utc(2026, 2, 1), [utc(2026, 2, 6), utc(2026, 2, 13), utc(2026, 2, 20)]),
        # a field starting with * is unrestricted (as in Vixie cron): both must match, the 13th AND Sun/Tue/Thu/Sat
        ("0 0 13 * */2", utc(2026, 2, 1), [utc(2026, 6, 13), utc(2026, 8, 13)]),
        ("0 0 29 2 *", utc(2026, 1, 1), [utc(2028, 2, 29), utc(2032, 2, 29)]),
    ],
)
def test_cron(cron: str, after: datetime, expected: list[datetime]) -> None:
    assert ticks({"cron": cron}, after, len(expected)) == expected


def test_cron_in_a_timezone_across_dst() -> None:
    spec = {"cron": "30 2 * * *", "timezone": "America/New_York"}
    # 02:30 does not exist on 8 March 2026: the next valid instant, 03:00 EDT (07:00 UTC)
    assert ticks(spec, utc(2026, 3, 7, 0), 3) == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)]
    # every 15 minutes through the fall-back hour: the repeated 01:xx fire once (first occurrence)
    quarter = {"cron": "*/15 1-2 * * *", "timezone": "America/New_York"}
    got = [t.astimezone(NEW_YORK).strftime("%H:%M%z") for t in ticks(quarter, utc(2026, 11, 1, 5, 20), 3)]
    assert got == ["01:30-0400", "01:45-0400", "02:00-0500"]
    after_second_one = utc(2026, 11, 1, 6, 20)  # 01:20 EST, the second 01:20
    assert next_due(quarter, after_second_one) == utc(2026, 11, 1, 7, 0)  # 02:00 EST


# --------------------------------------------------------------------------- invalid


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"every": "2w"},
        {"every": "0h"},
        {"every": "6h", "at": "02:00"},
        {"every": "1d", "at": "24:00"},
        {"every": "1d", "timezone": "Mars/Olympus_Mons"},
        {"every": "1h", "cron": "* * * * *"},
        {"every": "1h", "extra": 1},
        {"cron": "* * * *"},
        {"cron": "60 * * * *"},
        {"cron": "* 24 * * *"},
        {"cron": "* * 0 * *"},
        {"cron": "* * 32 * *"},
        {"cron": "* * * 13 *"},
        {"cron": "* * * * 8"},
        {"cron": "5-1 * * * *"},
        {"cron": "*/0 * * * *"},
        {"cron": "5/15 * * * *"},
        {"cron": "1,,2 * * * *"},
        {"cron": "- * * * *"},
        {"cron": "0 0 30 2 *"},
        {"cron": "0 0 31 4,6,9,11 *"},
        {"cron": "MON * * * *"},
        {"cron": 5},
    ],
)
def test_invalid_specs_raise_value_error(spec: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        next_due(spec, utc(2026, 1, 1))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_due({"every": "1h"}, datetime(2026, 1, 1))


def test_canonical_text_ignores_key_order_and_nulls() -> None:
    assert canonical({"timezone": "UTC", "every": "1d", "at": None}) == canonical({"every": "1d", "timezone": "UTC"})
    assert canonical({"every": "1d", "timezone": "UTC"}) == '{"every":"1d","timezone":"UTC"}'
