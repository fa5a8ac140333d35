"""The Python interpreters installed on this machine, by minor version.

Images are built from the host's interpreters: uv's own Python downloads come from outside the
package index, which a self-hosted server cannot assume it can reach. So a `python_version` that
no installed interpreter has fails with the list of those that exist.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .recipe import ImageBuildError

MIN_RUNTIME_PYTHON = (3, 10)


def _candidates() -> list[str]:
    found = [getattr(sys, "_base_executable", None) or sys.executable, sys.executable]
    home = Path.home()
    patterns = [
        str(home / ".pyenv/versions/*/bin/python3"),
        str(home / ".local/share/uv/python/*/bin/python3"),
        "/usr/bin/python3.*",
        "/usr/local/bin/python3.*",
        "/opt/python/*/bin/python3",
    ]
    for pattern in patterns:
        found.extend(sorted(glob.glob(pattern)))
    for minor in range(8, 20):
        path = shutil.which(f"python3.{minor}")
        if path and "/shims/" not in path:
            found.append(path)
    return [p for p in found if os.path.isfile(p) and os.access(p, os.X_OK) and not p.endswith("-config")]


def _version(path: str) -> str | None:
    try:
        out = subprocess.run(
            [path, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def host_pythons() -> dict[str, str]:
    """{"3.11": "/path/to/python3.11", ...}; the running interpreter wins for its own version."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    for path in _candidates():
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        version = _version(path)
        if version and version not in found:
            found[version] = path
    return found


def find_python(version: str) -> str:
    pythons = host_pythons()
    if version in pythons:
        major, minor = (int(x) for x in version.split("."))
        if (major, minor) < MIN_RUNTIME_PYTHON:
            raise ImageBuildError(
                f"Python {version} is too old for Sampan's container runtime, which needs 3.10 or newer."
            )
        return pythons[version]
    installed = ", ".join(sorted(pythons, key=lambda v: tuple(int(x) for x in v.split(".")))) or "none"
    raise ImageBuildError(
        f"Python {version} is not installed on this machine (images are built from the host's interpreters). "
        f"Installed: {installed}. Install Python {version}, or use one of those in `debian_slim(python_version=...)`."
    )


def default_version() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"
