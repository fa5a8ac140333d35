"""Code bundles: content-addressed snapshots of the files an app's code needs.

A container imports the user's module from its bundle, never from the live file, so an edit
in progress cannot leak into running containers and a version keeps its code forever. The id is
the SHA-256 of the (path, content) pairs; the same files always give the same bundle, written
once, atomically (a temporary directory renamed into place).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..exception import InvalidError


@dataclass(frozen=True)
class Bundle:
    id: str
    path: Path


def bundle_id(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0")
        digest.update(hashlib.sha256(files[rel]).digest())
    return "bu-" + digest.hexdigest()[:24]


def read_files(root: Path, relpaths: list[str]) -> dict[str, bytes]:
    return {rel: (root / rel).read_bytes() for rel in relpaths}


def check_paths(paths: Iterable[str]) -> None:
    """Every path of a bundle is relative and stays inside it: no absolute path, no `..`, no empty or
    `.` segment, no NUL. The bundle arrives from clients; a path is never trusted to stay put."""
    for rel in paths:
        parts = rel.split("/")
        if (not rel or rel.startswith("/") or "\0" in rel or "\\" in rel
                or any(part in ("", ".", "..") for part in parts)):
            raise InvalidError(f"Invalid path in the code bundle: {rel!r} (paths must be relative, without '..').")


def write_bundle(home: Path, files: dict[str, bytes]) -> Bundle:
    return write_content(home / "bundles", files)


def write_content(base: Path, files: dict[str, bytes]) -> Bundle:
    """`files` as a directory of `base` named by their content, written once (bundles; the copies of a
    client's image sources, server/apps.py `stage_uploads`)."""
    check_paths(files)
    bid = bundle_id(files)
    dest = base / bid
    if dest.is_dir():
        return Bundle(bid, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{bid}-", dir=dest.parent))
    try:
        for rel, content in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        os.chmod(tmp, 0o755)  # readable by a sandboxed container's unprivileged uid ($SAMPAN_HOME is not)
        os.rename(tmp, dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.is_dir():  # not a lost race with an identical bundle
            raise
    return Bundle(bid, dest)
