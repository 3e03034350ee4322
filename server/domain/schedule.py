"""Workflow schedules (``definition.schedule``, spec section 4.1): when is the next tick due.

This module is pure: :func:`next_due` maps a schedule spec and an instant to the next instant the
schedule fires; storage and the scheduler loop live in ``server/store/schedules.py`` and
``server/runtime/scheduler.py``.  Instants are timezone-aware; results are in UTC.

Two shapes (the structural checks are :func:`server.domain.dsl.validate_definition`'s):

* ``{"every": "<N>m|<N>h|<N>d", "at": "HH:MM", "timezone": "<IANA>"}`` -- ``timezone`` defaults to UTC, ``at`` is
  only allowed when the interval is in days.

  - minutes and hours are elapsed time counted from the schedule's *anchor* (the instant the schedule was created
    or last changed): ``every: "6h"`` fires at ``anchor + k * 6h`` (k >= 1); the timezone plays no part;
  - days without ``at`` are calendar days in the timezone, at the anchor's local time of day:
    ``every: "1d"`` created at 09:15 New York time fires at 09:15 New York time, summer and winter;
  - days with ``at`` fire at that local time on the anchor's local date (when that time is still ahead of the
    anchor, else the next day) and every N days after: ``{"every": "7d", "at": "00:00"}`` fires at midnight on
    the weekday of the first midnight after the schedule was created.

* ``{"cron": "m h dom mon dow", "timezone": "<IANA>"}`` -- five fields evaluated on the local wall clock: numbers,
  ``*``, lists ``a,b``, ranges ``a-b``, steps ``*/n`` and ``a-b/n`` (no names, no ``a/n``); minute 0-59, hour 0-23,
  day of month 1-31, month 1-12, day of week 0-7 (0 and 7 are Sunday).  When both day of month and day of week
  are restricted (the field does not start with ``*``), a day matches if *either* matches (classic cron OR
  semantics); otherwise both must.  A cron that can never match (``0 0 30 2 *``) is invalid.

Local times and daylight saving time (zoneinfo): a local time that does not exist (spring forward: 02:30 in New
York on the day clocks jump from 02:00 to 03:00) fires at the next valid instant (03:00 local, the transition);
a local time that happens twice (fall back) fires once, at its first occurrence.

Invalid specs raise :class:`ValueError` (a :class:`~server.domain.dsl.DefinitionError` whose path is rooted at
``definition.schedule``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from server.domain import dsl

__all__ = ["Cron", "Every", "Schedule", "canonical", "next_due", "parse"]

ROOT = "definition.schedule"
_EVERY_RE = re.compile(r"([0-9]{1,6})(m|h|d)")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
CRON_HORIZON_DAYS = 366 * 9
"""How far ahead a cron is searched: February 29 recurs within 8 years (2096 -> 2104)."""
# (name, lowest, highest) of the five cron fields; day of week 7 is folded onto 0 (Sunday).
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February 29 exists in leap years


@dataclass(frozen=True)
class Every:
    interval: timedelta
    days: int  # the interval in days when given in days, else 0
    at: time | None
    zone: ZoneInfo


@dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday ... 6 = Saturday
    dom_restricted: bool
    dow_restricted: bool
    zone: ZoneInfo
    text: str

    def matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days_of_month
        dow = day.isoweekday() % 7 in self.days_of_week
        if self.dom_restricted and self.dow_restricted:
            return dom or dow
        return dom and dow


Schedule = Every | Cron


def _error(field: str, message: str) -> dsl.DefinitionError:
    return dsl.DefinitionError(f"{ROOT}.{field}" if field else ROOT, message)


def _cron_values(text: str, field: str, low: int, high: int) -> tuple[set[int], bool]:
    """The values one cron field denotes, and whether it is restricted (does not start with ``*``)."""
    values: set[int] = set()

    def number(part: str) -> int:
        if not (part.isascii() and part.isdigit()) or len(part) > 4:
            raise _error("cron", f"invalid {field} {part!r} in cron field {text!r}")
        value = int(part)
        if not low <= value <= high:
            raise _error("cron", f"{field} {value} is out of range {low}-{high} in cron field {text!r}")
        return value

    for item in text.split(","):
        range_text, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()) or len(step_text) > 4 or int(step_text) == 0:
                raise _error("cron", f"invalid step {step_text!r} in cron field {text!r} (a positive number)")
            step = int(step_text)
        if range_text == "*":
            first, last = low, (6 if field == "day of week" else high)
        elif "-" in range_text:
            start, _, end = range_text.partition("-")
            first, last = number(start), number(end)
            if first > last:
                raise _error("cron", f"range {range_text!r} runs backwards in cron field {text!r}")
        else:
            if slash:
                raise _error("cron", f"a step needs '*' or a range before it ('*/n', 'a-b/n'), got {item!r}")
            first = last = number(range_text)
        values.update(range(first, last + 1, step))
    if field == "day of week" and 7 in values:
        values.discard(7)
        values.add(0)
    return values, not text.startswith("*")


def _parse_cron(text: str, zone: ZoneInfo) -> Cron:
    fields = text.split()
    parsed = [_cron_values(f, name, low, high) for f, (name, low, high) in zip(fields, _CRON_FIELDS, strict=True)]
    (minutes, _), (hours, _), (doms, dom_restricted), (months, _), (dows, dow_restricted) = parsed
    cron = Cron(
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days_of_month=frozenset(doms),
        months=frozenset(months),
        days_of_week=frozenset(dows),
        dom_restricted=dom_restricted,
        dow_restricted=dow_restricted,
        zone=zone,
        text=text,
    )
    # Only day-of-month-and-month combinations can be impossible (30 February); any weekday comes round.
    if not (dom_restricted and dow_restricted) and not any(
        d <= _DAYS_IN_MONTH[m - 1] for m in cron.months for d in cron.days_of_month
    ):
        raise _error("cron", f"cron {text!r} never fires (no month has such a day)")
    return cron


def parse(spec: Mapping[str, Any]) -> Schedule:
    """The schedule of a ``definition.schedule`` value; ValueError (DefinitionError) when it is invalid."""
    dsl.validate_definition({"actions": [], "schedule": dict(spec)}, step_types=())
    zone = ZoneInfo(spec.get("timezone") or "UTC")
    every = spec.get("every")
    if every is not None:
        match = _EVERY_RE.fullmatch(every)
        assert match is not None  # validated above
        count, unit = int(match.group(1)), match.group(2)
        at_text = spec.get("at")
        at = time(int(at_text[:2]), int(at_text[3:])) if at_text is not None else None
        return Every(count * _UNITS[unit], count if unit == "d" else 0, at, zone)
    return _parse_cron(spec["cron"], zone)


def canonical(spec: Mapping[str, Any]) -> str:
    """The stored text of a schedule: keys sorted, absent (null) fields dropped, so equal schedules compare equal."""
    return json.dumps({k: v for k, v in spec.items() if v is not None}, sort_keys=True, separators=(",", ":"))


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def resolve(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of local time ``at`` on ``day``: the first occurrence when it happens twice, the end of the
    gap (the next valid instant) when it does not exist."""
    wall = datetime.combine(day, at.replace(tzinfo=None, fold=0))
    first = wall.replace(tzinfo=zone).astimezone(UTC)
    if _wall(first, zone) == wall:
        return first
    # In a gap: fold=0 and fold=1 use the offsets before and after it and bracket the transition; the transition
    # is the first instant whose local time is past `wall` (tz transitions fall on whole seconds).
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = int(min(first, other).timestamp()), int(max(first, other).timestamp()) + 1
    while low < high:
        middle = (low + high) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), zone) > wall:
            high = middle
        else:
            low = middle + 1
    return datetime.fromtimestamp(low, UTC)


def _every(schedule: Every, after: datetime, anchor: datetime) -> datetime:
    zone = schedule.zone
    if not schedule.days:  # elapsed time: anchor + k * interval, k >= 1
        k = max((after - anchor) // schedule.interval + 1, 1)
        return anchor + k * schedule.interval
    if schedule.at is None:  # calendar days at the anchor's local time of day, k >= 1
        start, at, k = _wall(anchor, zone).date(), _wall(anchor, zone).time(), 1
    else:  # days at `at`, from the first such local time at or after the anchor, k >= 0
        start, at, k = _wall(anchor, zone).date(), schedule.at, 0
        if resolve(start, at, zone) < anchor:
            start += timedelta(days=1)
    elapsed_days = (_wall(after, zone).date() - start).days
    k = max(k, elapsed_days // schedule.days - 1)
    while True:
        due = resolve(start + timedelta(days=k * schedule.days), at, zone)
        if due > after:
            return due
        k += 1


def _cron(cron: Cron, after: datetime) -> datetime:
    zone = cron.zone
    local = _wall(after, zone)
    for offset in range(CRON_HORIZON_DAYS):
        day = local.date() + timedelta(days=offset)
        if not cron.matches(day):
            continue
        for hour in cron.hours:
            if offset == 0 and hour < local.hour:  # earlier local times are earlier instants
                continue
            for minute in cron.minutes:
                due = resolve(day, time(hour, minute), zone)
                if due > after:
                    return due
    raise _error("cron", f"cron {cron.text!r} never fires (nothing within {CRON_HORIZON_DAYS // 366} years)")


def next_due(spec: Mapping[str, Any], after: datetime, *, anchor: datetime | None = None) -> datetime:
    """The first instant strictly after ``after`` at which ``spec`` fires (UTC).

    ``anchor`` (default: ``after``) is when the schedule was created: ``every`` counts from it.
    Raises ValueError for an invalid spec or a naive datetime.
    """
    if after.tzinfo is None or (anchor is not None and anchor.tzinfo is None):
        raise ValueError("next_due needs timezone-aware datetimes")
    after = after.astimezone(UTC)
    anchor = after if anchor is None else anchor.astimezone(UTC)
    schedule = parse(spec)
    if isinstance(schedule, Every):
        return _every(schedule, after, anchor)
    return _cron(schedule, after)
