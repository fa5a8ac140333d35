"""Benchmark: image resolution and builds.

- resolving an image that is already built (the full `ImageBuilder.build()` call on a cache hit,
  recipe hashing included), target < 50 ms;
- building `fastapi[standard]` from a warm uv cache, target < 5 s, next to the baseline of running
  the same uv commands by hand (`uv venv` + `uv pip install`) in the same run.

    .venv/bin/python benchmarks/images.py

Writes benchmarks/results/images.{json,md}.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import sampan  # noqa: E402
from sampan.server.images.builder import ImageBuilder, uv_bin  # noqa: E402
from sampan.server.images.pythons import find_python  # noqa: E402


def main() -> None:
    image = sampan.Image.debian_slim().pip_install("fastapi[standard]")
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    with tempfile.TemporaryDirectory(prefix="sampan-images-bench-") as tmp:
        root = Path(tmp)
        # Warm uv's cache and the runtime layer once; they are shared across builds.
        warm = ImageBuilder(root / "warm")
        asyncio.run(warm.build(image.to_json()))

        builds, baselines = [], []
        for i in range(3):
            builder = ImageBuilder(root / f"b{i}")
            asyncio.run(builder.runtime_layer(version, lambda line: None))  # as on a server that built before
            start = time.perf_counter()
            asyncio.run(builder.build(image.to_json()))
            builds.append(time.perf_counter() - start)
            venv = root / f"plain{i}"
            start = time.perf_counter()
            subprocess.run([uv_bin(), "venv", "--seed", "--python", find_python(version), str(venv)], check=True,
                           capture_output=True)
            subprocess.run([uv_bin(), "pip", "install", "--compile-bytecode", "--python", str(venv / "bin/python"),
                            "fastapi[standard]"], check=True, capture_output=True)
            baselines.append(time.perf_counter() - start)
            shutil.rmtree(venv)

        async def resolve_many(n: int) -> list[float]:
            builder = ImageBuilder(root / "warm")
            out = []
            for _ in range(n):
                start = time.perf_counter()
                built = await builder.build(image.to_json())
                out.append(time.perf_counter() - start)
                assert built.cached
            return out

        resolves = asyncio.run(resolve_many(200))
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "resolve_built_ms": {"median": statistics.median(resolves) * 1000, "max": max(resolves) * 1000},
        "build_fastapi_standard_warm_cache_s": {"sampan_median": statistics.median(builds),
                                               "uv_by_hand_median": statistics.median(baselines)},
    }
    b = report["build_fastapi_standard_warm_cache_s"]
    b["ratio"] = b["sampan_median"] / b["uv_by_hand_median"]
    r = report["resolve_built_ms"]
    md = [
        "| measure | baseline | sampan | ratio / target |",
        "|---|---|---|---|",
        f"| resolve an already built image (median of 200) | - | {r['median']:.2f} ms (max {r['max']:.2f}) "
        "| target < 50 ms |",
        f"| build fastapi[standard], warm uv cache (median of 3) | {b['uv_by_hand_median']:.2f} s (uv by hand) "
        f"| {b['sampan_median']:.2f} s | {b['ratio']:.2f}x, target < 5 s |",
    ]
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "images.json").write_text(json.dumps(report, indent=2))
    (HERE / "results" / "images.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
