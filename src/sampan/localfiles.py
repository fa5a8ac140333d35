"""The local files an image's `add_local_*` steps (with `copy=False`) put in its containers at start: which
local file lands where in the code bundle (mountpaths.bundle_path). Shared by the importer (`serve`,
`deploy`) and `Sandbox.create`, which send those files with the app or the sandbox.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

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


class Slot(NamedTuple):
    """One argument of an image step that names files of the building machine. `kind`: "file", "dir" (sent
    whole, or only `names` in it) or "optional" (a file sent only where it exists: a Poetry lock file)."""

    arg: str  # `requirements.2`: the third of a list
    key: str  # its files travel in the bundle under `UPLOADS/<key>/`
    kind: str
    names: tuple[str, ...] = ()


def upload_slots(op: str, args: dict[str, Any]) -> list[Slot]:
    """The slots of a step: `local_path` of `add_local_file/dir(copy=True)`, requirement files, pyproject,
    a uv project (its pyproject.toml and uv.lock), a Poetry project's pyproject and lock file. No I/O: the
    server reads this from a client's recipe. (A Dockerfile's sources are not sent.)"""
    def slot(arg: str, kind: str, names: tuple[str, ...] = ()) -> Slot:
        return Slot(arg, upload_key(op, arg, slot_value(args, arg)), kind, names)

    if op in ("add_local_file", "add_local_dir") and args.get("copy"):
        return [slot("local_path", "file" if op == "add_local_file" else "dir")]
    if op == "uv_pip_install":
        return [slot(f"requirements.{i}", "file") for i in range(len(args.get("requirements") or []))]
    if op in ("pip_install_from_requirements", "pip_install_from_pyproject"):
        return [slot("requirements_txt" if op == "pip_install_from_requirements" else "pyproject_toml", "file")]
    if op == "uv_sync":
        return [slot("uv_project_dir", "dir", ("pyproject.toml", "uv.lock"))]
    if op == "poetry_install_from_file":
        return [slot("poetry_pyproject_toml", "file"), slot("poetry_lockfile", "optional")]
    return []


def slot_value(args: dict[str, Any], arg: str) -> str:
    """The path a slot's argument names (`requirements.2`: the third requirement file; a Poetry lock file
    not named: the one beside its pyproject)."""
    name, _, index = arg.partition(".")
    if index:
        return str(args[name][int(index)])
    if name == "poetry_lockfile" and not args.get(name):
        return str(PurePosixPath(str(args["poetry_pyproject_toml"])).with_name("poetry.lock"))
    return str(args.get(name) or ".")


def image_uploads(steps: Iterable[dict[str, Any]]) -> dict[str, str]:
    """(path in the bundle -> local path) of the files a recipe's steps read from this machine (`copy=True`
    sources, requirement files, pyproject, uv and Poetry projects), for a server that builds elsewhere:
    it reads none of its own files for a client (server/apps.py `stage_uploads`). InvalidError for a path
    that is not there."""
    found: dict[str, str] = {}
    for step in steps:
        op, args = step["op"], step.get("args") or {}
        for slot in upload_slots(op, args):
            local = Path(slot_value(args, slot.arg))
            target = f"{UPLOADS}/{slot.key}"
            if slot.kind == "optional" and not local.is_file():
                continue
            if not local.exists():
                raise InvalidError(f"{op}: local path {str(local)!r} does not exist.")
            if slot.kind != "dir":
                found[f"{target}/{local.name}"] = str(local)
            elif slot.names:
                found.update((f"{target}/{n}", str(local / n)) for n in slot.names if (local / n).is_file())
            else:
                found.update((t, lc) for lc, t in expand(local, target, ignore=from_recipe(args)))
    return found
