"""The benchmarks' `--quick` variant, run by CI: every scenario must complete with no failed request. No
timing is asserted here (these machines are shared and noisy): the figures live in docs/performance.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
QUICK = "reload,burst,calls,requestlog"  # the scenarios of issue 17's goals that fit the suite's time


def test_the_quick_benchmarks_complete_without_errors(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--only", QUICK,
                           "--results", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    reload, burst = report["reload"], report["burst"]
    assert reload["failed"] == 0 and reload["answered"] == reload["edits"], reload
    assert burst["sampan_from_zero"]["ok"] == burst["requests"], burst["sampan_from_zero"]
    assert burst["sampan_from_zero"]["peak_containers"] <= 16
    assert report["calls"]["map_inputs"] > 0 and report["calls"]["remote_p50_ms"] > 0
    assert report["requestlog"]["rps_on"] > 0 and report["requestlog"]["record"]["logged_us"] > 0
    assert "| reload:" in (tmp_path / "report.md").read_text()
