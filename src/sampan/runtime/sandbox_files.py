"""A Sandbox's files, as its agent works on them (runtime/sandbox_agent.py): read and write in pieces, stat,
list, make directories, remove, and watch for changes. Inside the container: its root, its permissions.
Paths must be absolute, as on Modal."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import stat
import time
from typing import Any

MAX_READ = 4 << 20  # bytes of one answer to a read


def info(path: str) -> dict[str, Any]:
    st = os.lstat(path)
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
    return {"name": os.path.basename(path.rstrip("/")) or "/", "path": path, "type": kind, "size": st.st_size,
            "mode": st.st_mode, "permissions": stat.filemode(st.st_mode), "owner": st.st_uid, "group": st.st_gid,
            "modified_time": st.st_mtime, "symlink_target": os.readlink(path) if kind == "symlink" else None}


async def operate(body: dict[str, Any]) -> dict[str, Any]:
    op, path = body.get("op"), str(body.get("path") or "")
    if not path.startswith("/"):
        raise ValueError(f"paths in a sandbox are absolute, got: {path!r}")
    if op == "read":
        offset, length = int(body.get("offset") or 0), body.get("length")
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(MAX_READ if length is None else min(int(length), MAX_READ))
        return {"data": base64.b64encode(data).decode(), "size": os.path.getsize(path)}
    if op == "write":
        mode = "r+b" if body.get("offset") else ("ab" if body.get("append") else "wb")
        with open(path, mode) as fh:
            if body.get("offset"):
                fh.seek(int(body["offset"]))
            fh.write(base64.b64decode(body.get("data") or ""))
            if body.get("truncate"):
                fh.truncate()
        return {}
    if op == "stat":
        return info(path)
    if op == "list":
        return {"entries": [info(os.path.join(path, name)) for name in sorted(os.listdir(path))]}
    if op == "mkdir":
        if body.get("parents"):
            os.makedirs(path, exist_ok=True)
        else:
            os.mkdir(path)
        return {}
    if op == "remove":
        if os.path.isdir(path) and not os.path.islink(path):
            if body.get("recursive"):
                shutil.rmtree(path)
            else:
                os.rmdir(path)
        else:
            os.unlink(path)
        return {}
    if op == "watch":
        return {"events": await watch(path, bool(body.get("recursive")), float(body.get("timeout") or 1))}
    raise ValueError(f"unknown file operation {op!r}")


def _scan(path: str, recursive: bool) -> dict[str, tuple[float, int]]:
    found: dict[str, tuple[float, int]] = {}
    if not os.path.isdir(path):
        with contextlib.suppress(OSError):
            st = os.stat(path)
            found[path] = (st.st_mtime_ns, st.st_size)
        return found
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            full = os.path.join(root, name)
            with contextlib.suppress(OSError):
                st = os.lstat(full)
                found[full] = (st.st_mtime_ns, st.st_size)
        if not recursive:
            break
    return found


async def watch(path: str, recursive: bool, timeout: float) -> list[dict[str, Any]]:
    """Changes under `path` within `timeout` seconds (polled every 50 ms), as Modal's FileWatchEvents."""
    before = _scan(path, recursive)
    deadline = time.monotonic() + min(timeout, 55.0)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        after = _scan(path, recursive)
        events = [{"type": "Create", "paths": [p]} for p in after if p not in before]
        events += [{"type": "Remove", "paths": [p]} for p in before if p not in after]
        events += [{"type": "Modify", "paths": [p]} for p in after if p in before and after[p] != before[p]]
        if events:
            return events
    return []
