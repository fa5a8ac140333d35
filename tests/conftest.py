"""Session set-up shared by every test.

Where this machine builds real images (root, the sandbox, mmdebstrap: server/images/rootfs.py), the
Debian base and Sampan's runtime layer are built once before any test runs, into the image directory
the whole run shares. On a fresh machine that takes about a minute, which would otherwise land inside
the first test that builds an image and count against its timeout.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    from sampan.runtime import sandbox

    if sandbox.probe() is not None or not sandbox.host_root() or shutil.which("mmdebstrap") is None:
        return
    from sampan.server.images.builder import ImageBuilder
    from sampan.server.images.rootfs import RootfsBuilder
    from tests.helpers import IMAGES_DIR

    images = Path(IMAGES_DIR)
    builder = RootfsBuilder(images, 100000, runtimes=ImageBuilder(images))
    base = [{"op": "debian_slim", "args": {"python_version": None}}]  # as `Image.debian_slim()` asks
    try:
        asyncio.run(builder.build(base))
    except Exception as exc:  # noqa: BLE001 - the tests that need it say why
        print(f"conftest: the Debian base could not be built in advance: {exc}", file=sys.stderr)
