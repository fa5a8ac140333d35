"""Where things may be mounted in a container: Modal's rules for Volume mount paths (with its error
texts) and the absolute remote paths of `Image.add_local_*`. Pure; checked at `serve`/`deploy`,
before anything runs, so a bad path never reaches the container runtime.

Beyond Modal's own checks, nothing may cover the container's system directories: `/proc`,
`/dev` and `/sys` (and what is below them) belong to the sandbox (runtime/sandbox.py).
"""

from __future__ import annotations

import posixpath
from pathlib import PurePosixPath
from typing import Any

from .exception import InvalidError

SYSTEM_DIRS = ("/proc", "/dev", "/sys")


def _covers_system(path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in SYSTEM_DIRS)


def canonical_mount_path(path: Any, kind: str = "Volume") -> str:
    """A Volume's mount path, normalised as Modal does, or InvalidError with Modal's text."""
    text = PurePosixPath(path).as_posix() if isinstance(path, (str, PurePosixPath)) else None
    if text is None:
        raise InvalidError(f"{kind} {path!r} must be a canonical, absolute path.")
    if text != posixpath.abspath(text) or ".." in text.split("/"):
        raise InvalidError(f"{kind} {path} must be a canonical, absolute path.")
    if text == "/":
        raise InvalidError(f"{kind} {path} cannot be mounted into root directory.")
    if text in ("/root", "/tmp"):
        raise InvalidError(f"{kind} {path} cannot be mounted at '{text}'.")
    if _covers_system(text):
        raise InvalidError(f"{kind} {path} cannot be mounted at '{text}': it is a system directory of the container.")
    return text


def validate_mount_points(volumes: dict[Any, Any], kind: str = "Volume") -> list[tuple[str, Any]]:
    """`volumes={path: volume}` → [(canonical path, volume)]; two mounts at one path, or one Volume at two
    paths, fail with Modal's texts."""
    if not isinstance(volumes, dict):
        raise InvalidError(f"`volume_likes` should be a dict[str | PurePosixPath, Volume], got {type(volumes)} instead")
    out: list[tuple[str, Any]] = []
    seen: dict[str, Any] = {}
    for path, volume in volumes.items():
        canonical = canonical_mount_path(path, kind)
        if canonical in seen:
            raise InvalidError(f"Two {kind}s are mounted at the same path: {canonical}")
        seen[canonical] = volume
        out.append((canonical, volume))
    return out


def validate_remote_path(remote_path: str, method: str) -> str:
    """An `add_local_*` remote path: absolute, no `..`, not `/` itself nor a system directory."""
    text = str(remote_path)
    if not text.startswith("/"):
        raise InvalidError(f"image.{method}() currently only supports absolute remote_path values")
    if ".." in text.split("/"):
        raise InvalidError(f"image.{method}(): remote_path {text!r} must not contain '..'")
    normal = posixpath.normpath(text)
    if normal == "/" and method != "add_local_file":
        raise InvalidError(f"image.{method}(): remote_path {text!r} would cover the container's root directory")
    if _covers_system(normal):
        raise InvalidError(f"image.{method}(): remote_path {text!r} is a system directory of the container")
    return text


FS_DIR = ".sampan-fs"  # in a code bundle: files of `add_local_*(copy=False)` outside /root, by absolute path


def bundle_path(remote_path: str) -> str:
    """Where a file mounted at `remote_path` is kept in the code bundle, which becomes /root: `/root/x`
    is `x`; any other absolute path `/a/b` is `.sampan-fs/a/b`, placed at `/a/b` when the container starts."""
    if not remote_path.startswith("/"):
        raise InvalidError(f"remote_path must be absolute, got {remote_path!r}")
    if remote_path == "/root" or remote_path.startswith("/root/"):
        return remote_path[len("/root"):].strip("/")
    return f"{FS_DIR}/{remote_path.strip('/')}".rstrip("/")


def reroot(remote_path: str) -> str:
    """Where an absolute container path lands in the container's working directory.

    Only for the process runtime (no sandbox), which has no private filesystem: `/root/x` (Modal's working
    directory) becomes `x`, any other absolute path `/a/b` becomes `a/b`, relative to the container's
    working directory.
    """
    if not remote_path.startswith("/"):
        raise InvalidError(f"remote_path must be absolute, got {remote_path!r}")
    path = remote_path
    if path == "/root" or path.startswith("/root/"):
        path = path[len("/root"):]
    return path.strip("/")
