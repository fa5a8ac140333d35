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


def upload_key(*parts: str) -> str:
    """Where a step's local sources travel in the bundle (`UPLOADS/<key>`): from what names them."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def upload_slots(op: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    """The arguments of a step that name files of the building machine, each with the key its sources
    travel under (`UPLOADS/<key>/`): `local_path` of `add_local_file/dir(copy=True)`, requirement
    files, pyproject, a uv project's directory, a Poetry project's pyproject (its lock file beside it).
    No I/O: the server reads this from a client's recipe. (A Dockerfile's sources are not sent.)"""
    if op in ("add_local_file", "add_local_dir") and args.get("copy"):
        return [("local_path", upload_key(op, args["local_path"]))]
    if op == "uv_pip_install":
        return [(f"requirements.{i}", upload_key(op, str(i), r)) for i, r in enumerate(args.get("requirements") or [])]
    single = {"pip_install_from_requirements": "requirements_txt", "pip_install_from_pyproject": "pyproject_toml",
              "uv_sync": "uv_project_dir", "poetry_install_from_file": "poetry_pyproject_toml"}.get(op)
    return [(single, upload_key(op, str(args.get(single) or ".")))] if single else []


def slot_value(args: dict[str, Any], slot: str) -> str:
    """The path a slot names (`requirements.2`: the third requirement file)."""
    name, _, index = slot.partition(".")
    return str(args[name][int(index)]) if index else str(args.get(name) or ".")


def _slot_files(op: str, args: dict[str, Any], slot: str) -> list[tuple[str, str]]:
    """The local files of one slot: (local path, name in its unit; "" for a directory sent whole)."""
    local = Path(slot_value(args, slot))
    if op == "uv_sync":
        return [(str(local / n), n) for n in ("pyproject.toml", "uv.lock") if (local / n).is_file()]
    if op == "poetry_install_from_file":
        lock = Path(args.get("poetry_lockfile") or local.with_name("poetry.lock"))
        return [(str(local), local.name)] + ([(str(lock), "poetry.lock")] if lock.is_file() else [])
    return [(str(local), "" if local.is_dir() else local.name)]


def image_uploads(steps: Iterable[dict[str, Any]]) -> dict[str, str]:
    """(path in the bundle -> local path) of the files a recipe's steps read from this machine (`copy=True`
    sources, requirement files, pyproject, uv and Poetry projects), for a server that builds elsewhere:
    it reads none of its own files for a client (server/apps.py `stage_uploads`). InvalidError for a path
    that is not there."""
    found: dict[str, str] = {}
    for step in steps:
        op, args = step["op"], step.get("args") or {}
        for slot, key in upload_slots(op, args):
            files = _slot_files(op, args, slot)
            if not files:
                raise InvalidError(f"{op}: nothing to send from {slot_value(args, slot)!r} (no pyproject.toml).")
            for local, name in files:
                path = Path(local)
                if not path.exists():
                    raise InvalidError(f"{op}: local path {local!r} does not exist.")
                target = f"{UPLOADS}/{key}"
                if path.is_dir():
                    found.update((t, lc) for lc, t in expand(path, target, ignore=from_recipe(args)))
                else:
                    found[f"{target}/{name}"] = local
    return found
