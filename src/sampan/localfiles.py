"""The local files an image's `add_local_*` steps (with `copy=False`) put in its containers at start: which
local file lands where in the code bundle (mountpaths.bundle_path). Shared by the importer (`serve`,
`deploy`) and `Sandbox.create`, which send those files with the app or the sandbox.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .exception import InvalidError
from .file_pattern_matcher import from_recipe
from .mountpaths import bundle_path

SKIP_DIRS = {".venv", "venv", "site-packages", "dist-packages", "__pycache__", ".git", "node_modules", ".tox"}
UPLOADS = ".sampan-uploads"  # in a bundle sent to a server: the sources of `add_local_*(copy=True)` steps


def expand(local: Path, target: str, only_python: bool = False,
           ignore: Callable[[Path], bool] | None = None) -> list[tuple[str, str]]:
    """A file, or every file under a directory (virtual environments, caches and VCS left out)."""
    if local.is_file():
        return [(str(local), target)]
    out = []
    for path in sorted(local.rglob("*")):
        rel = path.relative_to(local)
        if not path.is_file() or any(part in SKIP_DIRS for part in rel.parts):
            continue
        if ignore is not None and ignore(rel):  # `add_local_dir(ignore=...)`
            continue
        if only_python and path.suffix != ".py":
            continue
        out.append((str(path), f"{target}/{rel.as_posix()}" if target else rel.as_posix()))
    return out


def image_files(steps: Iterable[dict[str, Any]]) -> dict[str, str]:
    """(path in the bundle -> local path) of one image's recipe (one local file may land in two places);
    InvalidError for a path that is not there."""
    found: dict[str, str] = {}
    for step in steps:
        op, args = step["op"], step.get("args") or {}
        if not op.startswith("add_local_") or args.get("copy"):
            continue
        if op == "add_local_python_source":
            for name in args.get("modules") or []:
                spec = importlib.util.find_spec(name)
                if spec is None:
                    raise InvalidError(f"add_local_python_source: module {name!r} not found.")
                if spec.submodule_search_locations:
                    local = Path(list(spec.submodule_search_locations)[0])
                    found.update((t, lc) for lc, t in expand(local, name.replace(".", "/"), only_python=True))
                else:
                    found[name.replace(".", "/") + ".py"] = str(spec.origin)
            continue
        local = Path(args["local_path"])
        if not local.exists():
            raise InvalidError(f"{op}: local path {str(local)!r} does not exist.")
        target = bundle_path(args["remote_path"])
        if op == "add_local_file" and args["remote_path"].endswith("/"):
            target = f"{target}/{local.name}" if target else local.name
        found.update((t, lc) for lc, t in expand(local, target, ignore=from_recipe(args)))
    return found


def upload_key(args: dict[str, Any]) -> str:
    """Where a `copy=True` step's sources travel in the bundle (`UPLOADS/<key>`): from its local path."""
    return hashlib.sha256(str(args.get("local_path") or "").encode()).hexdigest()[:24]


def image_uploads(steps: Iterable[dict[str, Any]]) -> dict[str, str]:
    """(path in the bundle -> local path) of the files a recipe's `add_local_file/dir(copy=True)` steps copy
    into the image, for a server that builds images elsewhere than on this machine (it reads none of its
    own files for a client: server/apps.py `stage_uploads`). InvalidError for a path that is not there."""
    found: dict[str, str] = {}
    for step in steps:
        op, args = step["op"], step.get("args") or {}
        if op not in ("add_local_file", "add_local_dir") or not args.get("copy"):
            continue
        local = Path(args["local_path"])
        if not local.exists():
            raise InvalidError(f"{op}: local path {str(local)!r} does not exist.")
        target = f"{UPLOADS}/{upload_key(args)}"
        if local.is_file():
            found[f"{target}/{local.name}"] = str(local)
        else:
            found.update((t, lc) for lc, t in expand(local, target, ignore=from_recipe(args)))
    return found
