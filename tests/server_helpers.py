"""Run the embedded server in-process (real gateway, real local containers) for end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from sampan.backends.local import LocalBackend
from sampan.config import ProxyLimits, Settings
from sampan.manifest import Manifest
from sampan.server.assemble import Sinks, assemble
from sampan.server.bundle import read_files, write_bundle
from tests.helpers import IMAGES_DIR


def load(path: Path) -> tuple[Manifest, Path, list[str]]:
    out = path.with_suffix(".manifest.json")
    subprocess.run([sys.executable, "-m", "sampan.cli.importer", str(path), "--out", str(out)], check=True,
                   timeout=60)
    data = json.loads(out.read_text())
    return Manifest.from_json(data["manifest"]), Path(data["root"]), data["files"]


def settings(home: Path, limits: ProxyLimits | None = None, **overrides: Any) -> Settings:
    return Settings(home=home, workspace="tester", domain="localhost", host="127.0.0.1", gateway_port=0,
                    endpoint_port_base=0, dev_suffix="dev", debounce_ms=100, server_id="test-server",
                    images_dir=Path(IMAGES_DIR), limits=limits or ProxyLimits(), **overrides)


class Logs:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []
        self.errors: list[str] = []

    def log(self, tag: str, cid: str, stream: str, line: str) -> None:
        self.lines.append((tag, stream, line))

    def error(self, tag: str, cid: str, reason: str) -> None:
        self.errors.append(reason)

    def text(self) -> str:
        return "\n".join(line for _, _, line in self.lines)


async def running(tmp_path: Path, source: str, name: str = "app.py",  # noqa: ANN201
                  limits: ProxyLimits | None = None, **overrides: Any):
    app = tmp_path / name
    app.write_text(textwrap.dedent(source))
    manifest, root, files = load(app)
    logs = Logs()
    server = assemble(settings(tmp_path / "home", limits, **overrides), backend=LocalBackend(home=tmp_path / "home"),
                      sinks=Sinks(logs.log, logs.error), stop_grace=5).server
    await server.start()
    bundle = write_bundle(tmp_path / "home", read_files(root, files))
    version = await server.publish("app", manifest, bundle, ephemeral=True)
    return server, version, logs, manifest, bundle
