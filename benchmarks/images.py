"""Benchmark: image resolution and builds.

Virtual environment images (builder.py, the process runtime):
- resolving an image that is already built (the full `ImageBuilder.build()` call on a cache hit,
  recipe hashing included), target < 50 ms;
- building `fastapi[standard]` from a warm uv cache, target < 5 s, next to the baseline of running
  the same uv commands by hand (`uv venv` + `uv pip install`) in the same run.

Root filesystem images (rootfs.py, a root server's sandbox), where this machine can build them:
- the first build of `debian_slim().apt_install("curl").pip_install("fastapi[standard]")` from the
  machine's Debian base tarball (made once per machine by mmdebstrap; its time is reported apart),
  and a cached rebuild, next to the same work done by hand in the same run: unpack the tarball,
  `chroot` + `apt-get install curl`, `uv pip install` into its Python. Docker and Podman build
  nothing here (no engine runs on these machines), so "by hand" is the baseline.

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
    rootfs_report, rootfs_md = rootfs_images()
    if rootfs_report:
        report["rootfs"] = rootfs_report
        md += rootfs_md
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "images.json").write_text(json.dumps(report, indent=2))
    (HERE / "results" / "images.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def rootfs_images() -> tuple[dict, list[str]]:
    """The root filesystem builder against the same steps by hand (module docstring)."""
    from sampan.runtime import sandbox
    from sampan.server.images.rootfs import RootfsBuilder

    if sandbox.probe() is not None or not sandbox.host_root() or shutil.which("mmdebstrap") is None:
        print("rootfs images: skipped (needs a root server with the sandbox and mmdebstrap)")
        return {}, []
    image = sampan.Image.debian_slim().apt_install("curl").pip_install("fastapi[standard]")
    with tempfile.TemporaryDirectory(prefix="sampan-rootfs-bench-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        runtimes = ImageBuilder(root / "shared")
        shared = RootfsBuilder(root / "shared", 100000, runtimes=runtimes)
        start = time.perf_counter()
        tarball = asyncio.run(shared.debian_tarball(lambda line: None))
        mmdebstrap_s = time.perf_counter() - start
        asyncio.run(shared.build(image.to_json()))  # warms uv's cache and the runtime layer, as a server has them
        firsts, cached, by_hand = [], [], []
        for i in range(2):
            b = RootfsBuilder(root / f"b{i}", 100000, runtimes=runtimes)
            (root / f"b{i}" / "cache").mkdir(parents=True)
            shutil.copy(tarball, root / f"b{i}" / "cache" / tarball.name)
            shutil.copytree(root / "shared" / "cache" / "uv", root / f"b{i}" / "cache" / "uv", symlinks=True)
            start = time.perf_counter()
            asyncio.run(b.build(image.to_json()))
            firsts.append(time.perf_counter() - start)
            start = time.perf_counter()
            asyncio.run(b.build(image.to_json()))
            cached.append(time.perf_counter() - start)
            by_hand.append(_by_hand(tarball, root / f"hand{i}", root / "shared" / "cache" / "uv"))
    out = {"mmdebstrap_base_s": mmdebstrap_s, "first_build_s": statistics.median(firsts),
           "by_hand_s": statistics.median(by_hand), "cached_rebuild_ms": statistics.median(cached) * 1000}
    out["ratio"] = out["first_build_s"] / out["by_hand_s"]
    md = [
        f"| rootfs: debian base by mmdebstrap (once per machine) | - | {mmdebstrap_s:.1f} s | - |",
        f"| rootfs: first build of debian_slim + apt curl + fastapi[standard] (median of 2) | {out['by_hand_s']:.1f} s "
        f"(tar + chroot apt-get + uv by hand) | {out['first_build_s']:.1f} s | {out['ratio']:.2f}x |",
        f"| rootfs: cached rebuild of that image | - | {out['cached_rebuild_ms']:.1f} ms | target < 1 s |",
    ]
    return out, md


def _by_hand(tarball: Path, where: Path, uv_cache: Path) -> float:
    """The baseline: the same image made with plain tools as root, no layers and no sandbox."""
    start = time.perf_counter()
    where.mkdir()
    subprocess.run(["tar", "--numeric-owner", "--exclude=./dev/*", "-xpf", str(tarball), "-C", str(where)], check=True)
    shutil.copy("/etc/resolv.conf", where / "etc" / "resolv.conf")
    for mount in ("proc", "dev"):
        subprocess.run(["mount", "--bind", f"/{mount}", str(where / mount)], check=True)
    try:
        subprocess.run(["chroot", str(where), "sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                        "apt-get install -y -qq curl >/dev/null && rm -rf /var/lib/apt/lists/*"], check=True)
        env = {**os.environ, "UV_CACHE_DIR": str(uv_cache), "UV_LINK_MODE": "copy"}
        subprocess.run([uv_bin(), "pip", "install", "-q", "--compile-bytecode", "--system", "--break-system-packages",
                        "--python", str(where / "usr/bin/python3"), "--prefix", str(where / "usr/local"),
                        "fastapi[standard]"], check=True, env=env)
    finally:
        for mount in ("dev", "proc"):
            subprocess.run(["umount", "-l", str(where / mount)], check=False)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
