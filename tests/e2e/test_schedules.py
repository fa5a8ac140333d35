"""`schedule=` on a deployed app (server/scheduler.py), over a real server: a `Period` fires while no
client is attached, keeps its phase across `sampan server stop/start`, and never fires a tick twice."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.test_deploy import Sampan, sampan  # noqa: F401 - the fixture
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

APP = """
    import time
    import modal

    app = modal.App("ticker")
    vol = modal.Volume.from_name("ticks", create_if_missing=True)

    @app.function(schedule=modal.Period(seconds=2), volumes={"/ticks": vol})
    def tick():
        with open("/ticks/log", "a") as fh:
            fh.write(f"{time.time()}\\n")

    @app.function(schedule=modal.Cron("0 4 * * *", timezone="Europe/Paris"))
    def nightly():
        pass
"""


def ticks(home: Path) -> list[float]:
    path = home / "volumes" / "alice" / "ticks" / "log"
    return [float(x) for x in path.read_text().split()] if path.exists() else []


def test_a_deployed_period_fires_and_keeps_its_phase_across_restarts(sampan: Sampan, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "ticker.py").write_text(textwrap.dedent(APP))
    sampan.run("server", "start")
    sampan.run("deploy", str(tmp_path / "ticker.py"))
    deployed = time.time()
    wait_until(lambda: len(ticks(sampan.home)) >= 2, timeout=15)
    assert ticks(sampan.home)[1] - deployed <= 6.0  # >= 2 runs within about 5 s of the deploy
    apps = sampan.json("app", "list")
    assert isinstance(apps, list)
    listed = {s["function"]: s for s in apps[0]["schedules"]}
    assert listed["tick"]["schedule"] == "Every 2 seconds" and listed["tick"]["next_run"] > deployed
    assert listed["nightly"]["schedule"] == "0 4 * * * (Europe/Paris)"
    assert "ticker.tick: Every 2 seconds; next run" in sampan.run("app", "list").stdout

    sampan.run("server", "stop", "--timeout", "20")
    before = len(ticks(sampan.home))
    state = json.loads((sampan.home / "schedules.json").read_text())
    assert any(key.endswith("\ntick") for key in state)
    sampan.run("server", "start")
    wait_until(lambda: len(ticks(sampan.home)) >= before + 2, timeout=20)
    times = ticks(sampan.home)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 1.0, f"a tick fired twice: {times}"  # the same tick twice would be ms apart
