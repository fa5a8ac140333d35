"""Modal's Volume consistency for containers that cannot share the server's directory (Ray nodes).

On the server's machine every container of a Volume sees one directory, so `commit()` and `reload()`
have nothing to do. A container on another machine gets a directory of its own, filled from the
server when it starts, and then behaves as Modal documents:

- writes stay in the container until `commit()` (or the container's exit) sends them to the server;
- `reload()` commits what this container changed, then brings in what others committed since;
- the last commit of a file wins, as in Modal.

Which Volumes are kept this way is in SAMPAN_VOLUME_SYNC (set by the Ray backend's node agent): a
JSON list of `{"name", "dir"}`, `dir` being where the container sees the Volume. The decisions
(`commit_plan`, `reload_plan`) are pure and compare two records per file: its local (size, mtime_ns)
and the server's (size, mtime) as last seen, so neither machine's clock is compared with the other's.
Symbolic links and empty directories stay local.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .api import default_client, path

ENV = "SAMPAN_VOLUME_SYNC"
PARTIAL_PREFIX = ".sampan-upload-"  # the server's unfinished uploads (server/volumes.py): never copied
PIECE = 8 << 20

Local = tuple[int, int]  # size, mtime_ns on this machine
Remote = tuple[int, float]  # size, mtime on the server


@dataclass
class Synced:
    """What one container last agreed on with the server: each file's local and remote versions."""
    local: dict[str, Local] = field(default_factory=dict)
    remote: dict[str, Remote] = field(default_factory=dict)


def commit_plan(synced: Synced, now: Mapping[str, Local]) -> tuple[list[str], list[str]]:
    """(files to upload, files to remove on the server): what changed here since the last sync."""
    uploads = sorted(p for p, stat in now.items() if synced.local.get(p) != stat)
    removals = sorted(p for p in synced.local if p not in now)
    return uploads, removals


def reload_plan(synced: Synced, now: Mapping[str, Local], remote: Mapping[str, Remote]
                ) -> tuple[list[str], list[str]]:
    """(files to download, local files to delete): what others committed since the last sync. Called
    after this container's own changes were committed, so a local file that differs is theirs to win."""
    downloads = sorted(p for p, version in remote.items() if synced.remote.get(p) != version or p not in now)
    deletions = sorted(p for p in synced.remote if p not in remote and p in now)
    return downloads, deletions


def safe_relative(path: str) -> bool:
    """A path from the server's listing that stays inside the directory (the server checks too)."""
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and ".." not in parts and "" not in parts and "." not in parts


def scan(root: str) -> dict[str, Local]:
    """Every regular file under `root` (links not followed), by its path relative to `root`."""
    out: dict[str, Local] = {}
    for current, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(current, d))]
        for name in files:
            if name.startswith(PARTIAL_PREFIX):
                continue
            full = os.path.join(current, name)
            with contextlib.suppress(OSError):
                st = os.lstat(full)
                if os.path.isfile(full) and not os.path.islink(full):
                    out[os.path.relpath(full, root).replace(os.sep, "/")] = (st.st_size, st.st_mtime_ns)
    return out


class VolumeSync:
    """One synced Volume in this container: its directory and the records of the last sync."""

    def __init__(self, name: str, directory: str, op: Any) -> None:
        self.name = name
        self.dir = directory
        self.op = op  # op(name, body) -> answer: a Volume operation on the server (the control API)
        self.synced = Synced()
        self.lock = threading.Lock()

    def _remote(self) -> dict[str, Remote]:
        entries = self.op(self.name, {"op": "listdir", "path": "/", "recursive": True})["entries"]
        return {e["path"]: (int(e["size"]), float(e["mtime"])) for e in entries
                if e["type"] == "file" and safe_relative(e["path"])
                and not e["path"].rsplit("/", 1)[-1].startswith(PARTIAL_PREFIX)}

    def _download(self, rel: str) -> Local:
        target = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = os.path.join(os.path.dirname(target), f"{PARTIAL_PREFIX}{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "wb") as fh:
                offset = 0
                while True:
                    got = self.op(self.name, {"op": "read", "path": rel, "offset": offset, "length": PIECE})
                    data = base64.b64decode(got["data"])
                    fh.write(data)
                    offset += len(data)
                    if not data or offset >= got["size"]:
                        break
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        st = os.lstat(target)
        return st.st_size, st.st_mtime_ns

    def _upload(self, rel: str) -> Remote | None:
        full = os.path.join(self.dir, rel)
        try:
            fh = open(full, "rb")  # noqa: SIM115 - read in pieces below
        except OSError:  # gone since the scan: the next commit removes it
            return None
        with fh:
            upload_id, offset, answer = secrets.token_hex(16), 0, {}
            piece = fh.read(PIECE)
            while True:
                following = fh.read(PIECE) if len(piece) == PIECE else b""
                answer = self.op(self.name, {"op": "write", "path": rel, "upload_id": upload_id, "offset": offset,
                                             "force": True, "data": base64.b64encode(piece).decode(),
                                             "final": not following})
                offset += len(piece)
                if not following:
                    break
                piece = following
        return int(answer["size"]), float(answer["mtime"])

    def pull(self) -> None:
        """Fill the (empty) directory with the Volume as committed: at the container's start."""
        with self.lock:
            os.makedirs(self.dir, exist_ok=True)
            remote = self._remote()
            for rel, version in remote.items():
                self.synced.local[rel] = self._download(rel)
                self.synced.remote[rel] = version

    def commit(self) -> None:
        with self.lock:
            self._commit()

    def _commit(self) -> None:
        uploads, removals = commit_plan(self.synced, scan(self.dir))
        for rel in uploads:
            st = os.lstat(os.path.join(self.dir, rel))
            version = self._upload(rel)
            if version is not None:
                self.synced.remote[rel] = version
                self.synced.local[rel] = (st.st_size, st.st_mtime_ns)
        for rel in removals:
            with contextlib.suppress(Exception):  # already removed there by another container: fine
                self.op(self.name, {"op": "remove", "path": rel})
            self.synced.local.pop(rel, None)
            self.synced.remote.pop(rel, None)

    def reload(self) -> None:
        with self.lock:
            self._commit()
            now = scan(self.dir)
            remote = self._remote()
            downloads, deletions = reload_plan(self.synced, now, remote)
            for rel in downloads:
                self.synced.local[rel] = self._download(rel)
                self.synced.remote[rel] = remote[rel]
            for rel in deletions:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.dir, rel))
                self.synced.local.pop(rel, None)
                self.synced.remote.pop(rel, None)


_synced: dict[str, list[VolumeSync]] | None = None


def _control_op(name: str, body: dict[str, Any]) -> Any:
    return default_client().call("POST", path("v1", "volumes", name), body, timeout=300)


def synced_volumes() -> dict[str, list[VolumeSync]]:
    """This container's synced Volumes by name (none on the server's machine), from SAMPAN_VOLUME_SYNC."""
    global _synced
    if _synced is None:
        found: dict[str, list[VolumeSync]] = {}
        for item in json.loads(os.environ.get(ENV) or "[]"):
            found.setdefault(item["name"], []).append(VolumeSync(item["name"], item["dir"], _control_op))
        _synced = found
    return _synced


def pull_all() -> None:
    """At the container's start, before the user's module is imported."""
    for syncs in synced_volumes().values():
        for sync in syncs:
            sync.pull()


def commit_all() -> None:
    """At the container's exit (Modal commits then too). Failures are printed, not raised."""
    for syncs in synced_volumes().values():
        for sync in syncs:
            try:
                sync.commit()
            except Exception:  # noqa: BLE001 - the container is ending; say what was not saved
                traceback.print_exc()
