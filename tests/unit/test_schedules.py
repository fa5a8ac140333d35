"""`modal.Cron` and `modal.Period` (sampan/schedules.py) and the server's scheduler, with a fake clock."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import sampan as modal
from sampan import schedules
from sampan.exception import InvalidError
from sampan.server.scheduler import Scheduler, Timer

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def next_cron(expr: str, after: str, tz: str = "UTC") -> str:
    return schedules.next_cron(schedules.parse_cron(expr, tz), at(after)).strftime("%Y-%m-%d %H:%M")


def test_cron_fields() -> None:
    assert next_cron("5 4 * * *", "2026-01-01T04:05") == "2026-01-02 04:05"  # strictly after
    assert next_cron("5 4 * * *", "2026-01-01T04:04:59") == "2026-01-01 04:05"
    assert next_cron("*/15 * * * *", "2026-01-01T10:16") == "2026-01-01 10:30"
    assert next_cron("0 9 * * 4", "2026-01-01T09:00") == "2026-01-08 09:00"  # 2026-01-01 is a Thursday
    assert next_cron("0 0 1 jan-mar *", "2026-03-02T00:00") == "2027-01-01 00:00"
    assert next_cron("0 12 * * sun,7", "2026-01-01T00:00") == "2026-01-04 12:00"
    assert next_cron("0 0 13 * fri", "2026-01-01T00:00") == "2026-01-02 00:00"  # either day field matches
    assert next_cron("0 0 29 2 *", "2026-03-01T00:00") == "2028-02-29 00:00"


def test_cron_keeps_wall_clock_time_across_dst() -> None:
    # 06:00 in New York is 11:00 UTC in winter and 10:00 UTC in summer
    assert next_cron("0 6 * * *", "2026-01-10T00:00", "America/New_York") == "2026-01-10 11:00"
    assert next_cron("0 6 * * *", "2026-07-10T00:00", "America/New_York") == "2026-07-10 10:00"
    # 02:30 does not exist on the day clocks spring forward (2026-03-08): that day is skipped
    assert next_cron("30 2 * * *", "2026-03-08T00:00", "America/New_York") == "2026-03-09 06:30"


@pytest.mark.parametrize("expr, tz, message", [
    ("0 9 * * 4 2026", "UTC", "expected 5 fields"), ("61 * * * *", "UTC", "minute field must be within 0-59"),
    ("* * * foo *", "UTC", "Invalid value 'foo' in the month field"), ("*/0 * * * *", "UTC", "must be positive"),
    ("* * * * *", "Mars/Olympus", "Unknown timezone"),
])
def test_bad_cron_strings_say_what_is_wrong(expr: str, tz: str, message: str) -> None:
    with pytest.raises(InvalidError, match=message):
        modal.Cron(expr, timezone=tz)


def test_periods_count_from_the_anchor_with_calendar_months() -> None:
    day = schedules.parse_period(days=1)
    assert schedules.next_period(day, at("2026-01-01T10:30"), at("2026-01-05T11:00")) == at("2026-01-06T10:30")
    month = schedules.parse_period(months=1)
    assert schedules.next_period(month, at("2026-01-31T00:00"), at("2026-02-01T00:00")) == at("2026-02-28T00:00")
    assert schedules.next_period(month, at("2026-01-31T00:00"), at("2026-03-01T00:00")) == at("2026-03-31T00:00")
    secs = schedules.parse_period(seconds=2.5)
    assert schedules.next_period(secs, at("2026-01-01T00:00"), at("2026-01-01T00:00")) == \
        at("2026-01-01T00:00") + dt.timedelta(seconds=2.5)
    assert schedules.describe(modal.Period(days=1, minutes=30).to_json()) == "Every 1 day, 30 minutes"
    assert schedules.describe(modal.Cron("5 4 * * *").to_json()) == "5 4 * * * (UTC)"


def test_bad_periods() -> None:
    with pytest.raises(InvalidError, match="A Period must be positive"):
        modal.Period()
    with pytest.raises(InvalidError, match="must be an integer"):
        modal.Period(days=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidError, match="must not be negative"):
        modal.Period(hours=-1)
    with pytest.raises(TypeError):
        modal.Period(2)  # type: ignore[misc]  # keyword-only, as on Modal


def test_a_scheduled_function_must_take_no_arguments() -> None:
    app = modal.App("s")
    with pytest.raises(InvalidError, match="has a schedule, so it needs to support being called with no arguments"):
        @app.function(schedule=modal.Period(hours=1))
        def needs(x):  # noqa: ANN001, ANN202
            return x
    with pytest.raises(InvalidError, match="must be a modal.Cron or modal.Period"):
        @app.function(schedule="daily")
        def nope():  # noqa: ANN202
            return None


# -- the scheduler -------------------------------------------------------------------------------
@dataclass
class FakeEntry:
    schedule: dict[str, Any] | None


@dataclass
class FakeEndpoint:
    entry: FakeEntry


@dataclass
class FakeVersion:
    number: int
    callables: dict[str, FakeEndpoint]
    ephemeral: bool = False
    workspace: str = "ws"


@dataclass
class World:
    apps: dict[str, FakeVersion] = field(default_factory=dict)
    fired: list[tuple[str, float]] = field(default_factory=list)
    now: float = 1_000_000.0


def scheduler(world: World, path: Path | None) -> Scheduler:
    def fire(timer: Timer) -> None:
        world.fired.append((timer.tag, world.now))

    return Scheduler(lambda: world.apps, fire, path, clock=lambda: world.now)


def run(world: World, s: Scheduler, seconds: float, tick: float = 0.5) -> None:
    end = world.now + seconds
    while world.now < end:
        s.step()
        world.now += tick


def test_period_ticks_survive_a_restart_without_firing_twice(tmp_path: Path) -> None:
    world = World()
    world.apps["ws/app"] = FakeVersion(1, {"job": FakeEndpoint(FakeEntry({"period": {"seconds": 2}})),
                                           "plain": FakeEndpoint(FakeEntry(None))})
    first = scheduler(world, tmp_path / "schedules.json")
    run(world, first, 5.0)  # anchor at t0: fires at +2 and +4
    assert [t for t, _ in world.fired] == ["job", "job"]
    assert first.upcoming("ws/app")[0]["schedule"] == "Every 2 seconds"
    # The server stops for 0.2 s (no tick falls in it) and starts again: same deploy, same phase.
    world.now += 0.2
    second = scheduler(world, tmp_path / "schedules.json")
    run(world, second, 3.5)
    times = [when for _, when in world.fired]
    assert len(times) == 4 and all(b - a >= 1.5 for a, b in zip(times, times[1:], strict=False))
    # A redeploy restarts the Period's count.
    world.apps["ws/app"] = FakeVersion(2, world.apps["ws/app"].callables)
    fired = len(world.fired)
    redeployed_at = world.now
    run(world, second, 1.5)
    assert len(world.fired) == fired
    run(world, second, 1.0)
    assert len(world.fired) == fired + 1 and world.fired[-1][1] - redeployed_at >= 2.0


def test_stopped_apps_stop_firing_and_ephemeral_ones_are_not_recorded(tmp_path: Path) -> None:
    world = World()
    world.apps["ws/tmp"] = FakeVersion(1, {"job": FakeEndpoint(FakeEntry({"period": {"seconds": 1}}))},
                                       ephemeral=True)
    s = scheduler(world, tmp_path / "schedules.json")
    run(world, s, 2.6)
    assert len(world.fired) == 2
    del world.apps["ws/tmp"]
    run(world, s, 3.0)
    assert len(world.fired) == 2 and s.upcoming("ws/tmp") == []
    assert not (tmp_path / "schedules.json").exists() or "ws/tmp" not in (tmp_path / "schedules.json").read_text()
