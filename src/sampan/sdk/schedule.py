"""`modal.Cron`, `modal.Period` and their base `modal.schedule.Schedule`: when `schedule=` fires.

Declared here and checked at once (sampan/schedules.py holds the rules); fired by the server
(server/scheduler.py) for deployed apps and while an ephemeral app runs.
"""

from __future__ import annotations

from typing import Any

from .. import schedules
from ..exception import InvalidError


class Schedule:
    """A schedule of `@app.function(schedule=...)`: `Cron` or `Period`."""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


class Cron(Schedule):
    """Fire at the times a five-field cron string names, in `timezone` (an IANA name, default UTC).

    `modal.Cron("5 4 * * *")` fires at 04:05 every day; `modal.Cron("0 9 * * 4", timezone="America/New_York")`
    at 09:00 New York time every Thursday."""

    def __init__(self, cron_string: str, timezone: str = "UTC") -> None:
        try:
            schedules.parse_cron(cron_string, timezone)
        except schedules.ScheduleError as exc:
            raise InvalidError(str(exc)) from None
        self.cron_string = cron_string
        self.timezone = timezone

    def __repr__(self) -> str:
        return f"Cron({self.cron_string!r}, {self.timezone!r})"

    def to_json(self) -> dict[str, Any]:
        return {"cron": self.cron_string, "timezone": self.timezone}


class Period(Schedule):
    """Fire every period, counted from the deploy: `modal.Period(days=1)`, `modal.Period(hours=4, minutes=30)`.
    `days=1` keeps the clock time of the deploy; `months=1` its day of the month."""

    def __init__(self, *, years: int = 0, months: int = 0, weeks: int = 0, days: int = 0, hours: int = 0,
                 minutes: int = 0, seconds: float = 0) -> None:
        units = {"years": years, "months": months, "weeks": weeks, "days": days, "hours": hours,
                 "minutes": minutes, "seconds": seconds}
        try:
            schedules.parse_period(**units)
        except schedules.ScheduleError as exc:
            raise InvalidError(str(exc)) from None
        self.units = {k: v for k, v in units.items() if v}

    def __repr__(self) -> str:
        return "Period(" + ", ".join(f"{k}={v}" for k, v in self.units.items()) + ")"

    def to_json(self) -> dict[str, Any]:
        return {"period": dict(self.units)}
