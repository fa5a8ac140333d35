"""What `import modal` costs a user's script under Sampan: `import sampan`, next to the standard-library
modules any SDK of this kind needs (json, dataclasses, typing, inspect, pathlib, base64, pickle, enum)
imported in the same run, both measured over a bare `python -c pass`. Minimum of N fresh interpreters
each (the least disturbed run), so the ratio holds on a noisy machine.

    .venv/bin/python benchmarks/startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

FLOOR = "import json, dataclasses, typing, inspect, pathlib, base64, pickle, enum"
CASES = {
    "bare python": "pass",
    "stdlib floor": FLOOR,
    "import sampan": "import sampan",
    "import sampan, then Function.from_name": "import sampan; sampan.Function.from_name('a', 'f')",
}
HEAVY = ("asyncio", "ssl", "socket", "http.client", "urllib.request", "subprocess", "logging")


def timed(code: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    results = {name: timed(code, args.runs) for name, code in CASES.items()}
    bare = min(results["bare python"])
    floor = min(results["stdlib floor"]) - bare
    print(f"{'case':42s} {'min ms':>8s} {'p50 ms':>8s} {'over bare':>10s}")
    for name, times in results.items():
        print(f"{name:42s} {min(times):8.1f} {statistics.median(times):8.1f} {min(times) - bare:10.1f}")
    own = min(results["import sampan"]) - bare
    print(f"\nimport sampan over bare python: {own:.1f} ms; the stdlib floor: {floor:.1f} ms; "
          f"ratio {own / floor:.2f}x the floor")
    loaded = subprocess.run([sys.executable, "-c", f"import sys, sampan; print([m for m in {HEAVY!r} "
                                                   "if m in sys.modules])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    print(f"heavy modules loaded by import sampan: {loaded}")


if __name__ == "__main__":
    main()
