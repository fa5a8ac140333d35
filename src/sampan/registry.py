"""Where running servers are found: one discovery file per server in `$SAMPAN_HOME/servers/`.

A server writes its file when it starts (mode 0600: it holds the server's own token) and the CLI,
the SDK and `sampan run` read them. A leaf module: the client side needs it without importing any
of the server.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ._proc import pid_alive


@dataclass(frozen=True)
class ServerInfo:
    server_id: str
    pid: int
    control_url: str
    token: str
    kind: str  # "server" (persistent, `sampan server start`) or "serve" (embedded in a `sampan serve`)
    started_at: float
    runtime: str = ""  # how containers run: "sandbox (...)" or "process (NOT isolated: why)"

    def alive(self) -> bool:
        return pid_alive(self.pid)


def servers_dir(home: Path) -> Path:
    return home / "servers"


def write(home: Path, info: ServerInfo) -> Path:
    """Publish `info` atomically, readable by this user only."""
    directory = servers_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / f"{info.server_id}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(info), fh)
    tmp.replace(path)
    return path


def running_servers(home: Path) -> list[ServerInfo]:
    """Servers whose discovery file exists and whose process is alive (stale files are removed)."""
    found: list[ServerInfo] = []
    directory = servers_dir(home)
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.json")):
        try:
            info = ServerInfo(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if info.alive():
            found.append(info)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return found
