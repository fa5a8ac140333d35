"""When a scheduled function fires: `modal.Cron` and `modal.Period` as pure rules. No I/O, no clock.

Shared by the SDK (which validates a schedule where it is declared) and the server's scheduler
(server/scheduler.py), which asks `next_after(schedule, anchor, after)` and sleeps until then.

- A Cron string is the standard five fields `minute hour day-of-month month day-of-week` (numbers,
  `*`, ranges `a-b`, steps `*/n` and `a-b/n`, lists, and the names `jan`..`dec`, `sun`..`sat`; 7 is
  Sunday too), read as wall-clock time in its IANA timezone, so 06:00 New York stays 06:00 across
  DST. As in cron, when both day fields are restricted a day matching either fires. A wall-clock
  time that does not exist (spring forward) is skipped; one that happens twice fires once.
- A Period counts from an anchor (the deploy): `days=1` fires at the anchor's clock time every day,
  `months=1` on the anchor's day of the month (the last day of shorter months), like
  `dateutil.relativedelta`; it fires first one period after the anchor.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

UTC = dt.timezone.utc
_MONTHS = {name: i for i, name in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                             "nov", "dec"), 1)}
_DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}), ("month", 1, 12, _MONTHS),
           ("day of week", 0, 7, _DAYS))
PERIOD_UNITS = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")


class ScheduleError(ValueError):
    """A schedule that cannot fire; the message says which part is wrong."""


@dataclass(frozen=True)
class CronRule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is `*`
    any_weekday: bool  # day of week is `*`
    zone: dt.tzinfo


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
        except ValueError:
            raise ScheduleError(f"Invalid step {step_text!r} in the {name} field.") from None
        if step < 1:
            raise ScheduleError(f"The step of the {name} field must be positive, not {step}.")
        if body == "*":
            start, end = low, high
        else:
            first, dash, last = body.partition("-")
            try:
                start = names.get(first.lower()) if first.lower() in names else int(first)
                end = (names.get(last.lower()) if last.lower() in names else int(last)) if dash else start
            except ValueError:
                raise ScheduleError(f"Invalid value {body!r} in the {name} field.") from None
            if step_text and not dash:
                end = high
        assert start is not None and end is not None
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise ScheduleError(f"The {name} field must be within {low}-{high}: {part!r}.")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse_cron(expression: str, timezone: str = "UTC") -> CronRule:
    """Raises ScheduleError naming the field, or the timezone, that is wrong."""
    if not isinstance(expression, str):
        raise ScheduleError(f"A Cron string must be a string, not {type(expression).__name__}.")
    parts = expression.split()
    if len(parts) != 5:
        raise ScheduleError(
            f"Invalid Cron string {expression!r}: expected 5 fields (minute hour day-of-month month "
            f"day-of-week), got {len(parts)}.")
    sets = [_field(text, name, low, high, names) for text, (name, low, high, names) in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])
    return CronRule(sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] == "*", parts[4] == "*", zone(timezone))


def zone(name: str) -> dt.tzinfo:
    if name in ("UTC", "utc", "Etc/UTC"):
        return UTC
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"Unknown timezone {name!r}: expected an IANA name such as 'America/New_York'.") \
            from None


def _day_matches(rule: CronRule, day: dt.date) -> bool:
    weekday = (day.weekday() + 1) % 7  # Python: Monday 0; cron: Sunday 0
    if rule.any_day and rule.any_weekday:
        return True
    if rule.any_day:
        return weekday in rule.weekdays
    if rule.any_weekday:
        return day.day in rule.days
    return day.day in rule.days or weekday in rule.weekdays


def next_cron(rule: CronRule, after: dt.datetime) -> dt.datetime:
    """The first firing strictly after `after` (an aware datetime), in UTC."""
    local = after.astimezone(rule.zone)
    day = local.date()
    for _ in range(366 * 8 + 1):  # every rule fires within 8 years (Feb 29 on a given weekday: 28)
        if day.month in rule.months and _day_matches(rule, day):
            for hour in sorted(rule.hours):
                for minute in sorted(rule.minutes):
                    wall = dt.datetime(day.year, day.month, day.day, hour, minute)
                    when = _localize(wall, rule.zone)
                    if when is not None and when > after:
                        return when.astimezone(UTC)
        day += dt.timedelta(days=1)
    raise ScheduleError("This Cron schedule never fires.")


def _localize(wall: dt.datetime, tz: dt.tzinfo) -> dt.datetime | None:
    """`wall` in `tz`; None when that wall-clock time does not exist there (a DST gap); the first of
    two when it happens twice."""
    first = wall.replace(tzinfo=tz, fold=0)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
        return None
    return first


@dataclass(frozen=True)
class PeriodRule:
    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: float = 0

    @property
    def calendar_months(self) -> int:
        return self.years * 12 + self.months

    @property
    def fixed(self) -> dt.timedelta:
        return dt.timedelta(weeks=self.weeks, days=self.days, hours=self.hours, minutes=self.minutes,
                            seconds=self.seconds)


def parse_period(**units: Any) -> PeriodRule:
    for name, value in units.items():
        if name not in PERIOD_UNITS:
            raise ScheduleError(f"Period() got an unexpected keyword argument '{name}'")
        if name != "seconds" and not isinstance(value, int):
            raise ScheduleError(f"Period {name} must be an integer, not {value!r}.")
        if not isinstance(value, (int, float)) or value < 0:
            raise ScheduleError(f"Period {name} must not be negative, not {value!r}.")
    rule = PeriodRule(**units)
    if rule.calendar_months == 0 and rule.fixed <= dt.timedelta(0):
        raise ScheduleError("A Period must be positive: give at least one of "
                            "years, months, weeks, days, hours, minutes or seconds.")
    return rule


def _add_months(when: dt.datetime, months: int) -> dt.datetime:
    total = when.year * 12 + (when.month - 1) + months
    year, month = divmod(total, 12)
    import calendar

    day = min(when.day, calendar.monthrange(year, month + 1)[1])
    return when.replace(year=year, month=month + 1, day=day)


def period_tick(rule: PeriodRule, anchor: dt.datetime, n: int) -> dt.datetime:
    """The anchor moved by `n` periods (calendar months first, then the fixed part)."""
    return _add_months(anchor, rule.calendar_months * n) + rule.fixed * n


def next_period(rule: PeriodRule, anchor: dt.datetime, after: dt.datetime) -> dt.datetime:
    """The first tick `anchor + n*period` (n >= 1) strictly after `after`."""
    if after < anchor:
        return period_tick(rule, anchor, 1)
    if rule.calendar_months == 0:
        step = rule.fixed.total_seconds()
        n = max(1, int((after - anchor).total_seconds() // step))
    else:
        approx_seconds = rule.calendar_months * 28 * 86400 + rule.fixed.total_seconds()
        n = max(1, int((after - anchor).total_seconds() // approx_seconds) - 1)
    while period_tick(rule, anchor, n) <= after:
        n += 1
    while n > 1 and period_tick(rule, anchor, n - 1) > after:
        n -= 1
    return period_tick(rule, anchor, n)


def next_after(schedule: dict[str, Any], anchor: dt.datetime, after: dt.datetime) -> dt.datetime:
    """The next firing of a schedule in its JSON form (`{"cron": ..., "timezone": ...}` or
    `{"period": {...}}`) strictly after `after`; `anchor` is when its Period started counting."""
    if "cron" in schedule:
        return next_cron(parse_cron(schedule["cron"], schedule.get("timezone") or "UTC"), after)
    return next_period(parse_period(**schedule["period"]), anchor, after)


def describe(schedule: dict[str, Any]) -> str:
    """As `modal app` shows it: `5 4 * * * (UTC)`, or `Every 1 day, 30 minutes`."""
    if "cron" in schedule:
        return f"{schedule['cron']} ({schedule.get('timezone') or 'UTC'})"
    parts = []
    for unit in PERIOD_UNITS:
        value = schedule["period"].get(unit) or 0
        if value:
            value = int(value) if float(value).is_integer() else value
            parts.append(f"{value} {unit[:-1] if value == 1 else unit}")
    return "Every " + ", ".join(parts)
