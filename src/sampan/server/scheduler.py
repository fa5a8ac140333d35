"""Fires `schedule=` functions (`modal.Cron`, `modal.Period`) of the apps this server runs.

Each scheduled function of a live app version is a timer: its next firing comes from
sampan/schedules.py, and firing spawns one input with no arguments, as `.spawn()` would (retries
included; a slow run and the next tick may overlap, as on Modal). Deployed apps' timers persist in
`$SAMPAN_HOME/schedules.json` (the anchor a Period counts from, and the last firing), so a restart
neither loses a Period's phase nor fires a tick twice: the next firing is always after the last one
recorded. Ticks that fall while the server is down are not made up for. A redeploy restarts a
Period's count (Modal: "one period after the most recent deployment"); a Cron is unaffected.
Ephemeral apps (`sampan serve`, `app.run()`) fire while they run and are not recorded.

`step(now)` is the whole decision (reconcile with the live apps, fire what is due, say when to
wake); `run()` is the loop around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import schedules

MAX_SLEEP_S = 1.0  # new app versions are noticed within this
NO_ARGS = pickle.dumps(((), {}))


@dataclass
class Timer:
    app_key: str
    tag: str
    workspace: str
    schedule: dict[str, Any]
    version: int
    anchor: float
    last: float | None
    next: float
    persistent: bool

    def describe(self) -> dict[str, Any]:
        return {"function": self.tag, "schedule": schedules.describe(self.schedule), "next_run": self.next,
                "last_run": self.last}


def _next(schedule: dict[str, Any], anchor: float, after: float) -> float:
    utc = dt.timezone.utc
    return schedules.next_after(schedule, dt.datetime.fromtimestamp(anchor, utc),
                                dt.datetime.fromtimestamp(after, utc)).timestamp()


class Scheduler:
    """The timers of every live app version with scheduled functions (module docstring)."""

    def __init__(self, apps: Callable[[], dict[str, Any]], fire: Callable[[Timer], None], state_path: Path | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.apps = apps  # app key -> AppVersion (server.apps)
        self.fire = fire
        self.path = state_path
        self.clock = clock
        self.timers: dict[tuple[str, str], Timer] = {}
        self.state = self._load()
        self._task: asyncio.Task[None] | None = None

    def _load(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self) -> None:
        if self.path is None:
            return
        data = {f"{t.app_key}\n{t.tag}": {"version": t.version, "anchor": t.anchor, "last": t.last}
                for t in self.timers.values() if t.persistent}
        if data == self.state:
            return
        self.state = data
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with contextlib.suppress(OSError):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.path)

    def _reconcile(self, now: float) -> None:
        live: set[tuple[str, str]] = set()
        for app_key, version in self.apps().items():
            for tag, endpoint in version.callables.items():
                schedule = endpoint.entry.schedule
                if not schedule:
                    continue
                key = (app_key, tag)
                live.add(key)
                timer = self.timers.get(key)
                if timer is not None and timer.version == version.number and timer.schedule == schedule:
                    continue
                persistent = not version.ephemeral
                saved = self.state.get(f"{app_key}\n{tag}") if persistent else None
                if saved and saved.get("version") == version.number:  # the same deploy, after a restart
                    anchor, last = float(saved["anchor"]), saved.get("last")
                else:
                    anchor, last = now, None  # a new deploy: a Period counts from now
                after = max(now, last or 0.0)
                self.timers[key] = Timer(app_key, tag, version.workspace, schedule, version.number, anchor, last,
                                         _next(schedule, anchor, after), persistent)
        for key in [k for k in self.timers if k not in live]:
            del self.timers[key]

    def step(self, now: float | None = None) -> float:
        """Reconcile with the live apps and fire every timer that is due; returns when to look again."""
        now = self.clock() if now is None else now
        self._reconcile(now)
        for timer in list(self.timers.values()):
            if timer.next <= now:
                timer.last = timer.next
                timer.next = _next(timer.schedule, timer.anchor, max(now, timer.last))
                self.fire(timer)
        self._save()
        soonest = min((t.next for t in self.timers.values()), default=now + MAX_SLEEP_S)
        return min(soonest, now + MAX_SLEEP_S)

    def upcoming(self, app_key: str) -> list[dict[str, Any]]:
        return [t.describe() for (key, _), t in sorted(self.timers.items()) if key == app_key]

    async def run(self) -> None:
        while True:
            wake = self.step()
            await asyncio.sleep(max(0.0, wake - self.clock()))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
