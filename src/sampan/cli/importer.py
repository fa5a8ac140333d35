"""Load a user's script the way Modal's CLI does, and describe it as a manifest.

Runs in a fresh Python process for every load (`python -m sampan.cli.importer REF --out FILE`), so
each reload imports the user's code from scratch and a broken edit cannot damage the CLI. Tells
"your file was not found" apart from "your file raised while importing" (uvicorn's importer does
the same), and shows the user's own traceback frames, not Sampan's.

App references: `app.py`, `app.py::app_var`, and with `-m`: `package.module[::app_var]`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import modal_alias
from ..exception import InvalidError
from ..localfiles import SKIP_DIRS, image_files, image_uploads
from ..sdk.app import App
from ..sdk.describe import build_manifest

EXIT_NOT_FOUND = 2
EXIT_IMPORT_ERROR = 3
EXIT_NO_APP = 4

_SAMPAN_DIR = str(Path(__file__).resolve().parents[1])
_SKIP_DIRS = SKIP_DIRS


class LoadError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AppRef:
    target: str  # a file path, or a module name with -m
    app_var: str | None
    module_mode: bool


def parse_ref(ref: str, module_mode: bool = False) -> AppRef:
    target, sep, var = ref.partition("::")
    return AppRef(target=target, app_var=var or None, module_mode=module_mode)


def _user_traceback(exc: BaseException) -> str:
    te = traceback.TracebackException.from_exception(exc)
    frames = [
        f for f in te.stack
        if not f.filename.startswith(_SAMPAN_DIR) and "importlib._bootstrap" not in f.filename
    ]
    te.stack = traceback.StackSummary.from_list(frames)
    return "".join(te.format())


def import_ref(ref: AppRef) -> tuple[Any, str, Path]:
    """Import the module; returns (module, module name, root directory of the code)."""
    if ref.module_mode:
        root = Path.cwd().resolve()
        sys.path.insert(0, str(root))
        name = ref.target
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            raise LoadError(f"Module not found: {name!r} (looked in {root} and sys.path).", EXIT_NOT_FOUND)
    else:
        path = Path(ref.target).expanduser()
        if not path.is_file():
            raise LoadError(f"File not found: {ref.target}", EXIT_NOT_FOUND)
        if path.suffix != ".py":
            raise LoadError(f"Not a Python file: {ref.target} (expected a .py file, or -m module.name)",
                            EXIT_NOT_FOUND)
        path = path.resolve()
        root = path.parent
        sys.path.insert(0, str(root))
        name = path.stem
        if name in sys.modules:  # a user file named like a stdlib module already imported
            del sys.modules[name]
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported, not raised
        raise LoadError(_user_traceback(exc), EXIT_IMPORT_ERROR) from None
    return module, name, root


def find_app(module: Any, app_var: str | None) -> tuple[Any, str]:
    if app_var is not None:
        app = getattr(module, app_var, None)
        if not isinstance(app, App):
            raise LoadError(f"{module.__name__} has no App named {app_var!r}.", EXIT_NO_APP)
        return app, app_var
    for preferred in ("app", "stub"):
        if isinstance(getattr(module, preferred, None), App):
            return getattr(module, preferred), preferred
    apps = [(k, v) for k, v in vars(module).items() if isinstance(v, App)]
    if len(apps) == 1:
        return apps[0][1], apps[0][0]
    if not apps:
        raise LoadError(
            f"No App found in {module.__name__}. Define one with `app = modal.App(...)`.", EXIT_NO_APP
        )
    names = ", ".join(k for k, _ in apps)
    raise LoadError(f"Several Apps found in {module.__name__}: {names}. Pick one: FILE::name.", EXIT_NO_APP)


def local_files(root: Path) -> list[str]:
    """The user's own modules that were imported: what the bundle must contain and serve must watch."""
    found: set[str] = set()
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    for module in list(sys.modules.values()):
        filename = getattr(module, "__file__", None)
        if not filename or not filename.endswith(".py"):
            continue
        real = Path(os.path.realpath(filename))
        if any(str(real).startswith(p + os.sep) for p in prefixes) or str(real).startswith(_SAMPAN_DIR):
            continue
        try:
            rel = real.relative_to(root)
        except ValueError:
            continue
        if any(part in _SKIP_DIRS for part in rel.parts):
            continue
        found.add(rel.as_posix())
    return sorted(found)


def mounts(manifest: Any) -> list[tuple[str, str]]:
    """Files that `add_local_*(copy=False)` put in containers at start: (local path, path in the bundle)."""
    found: dict[str, str] = {}  # path in the bundle -> local path
    for entry in manifest.functions:
        try:
            found.update(image_files(entry.image))
        except InvalidError as exc:
            raise LoadError(str(exc), EXIT_IMPORT_ERROR) from None
    return sorted((local, target) for target, local in found.items())


def uploads(manifest: Any) -> list[tuple[str, str]]:
    """Sources of `add_local_*(copy=True)` steps, sent with the app to a server that builds elsewhere:
    (local path, path in the bundle)."""
    found: dict[str, str] = {}
    for entry in [*manifest.functions, *manifest.calls]:
        try:
            found.update(image_uploads(entry.image))
        except InvalidError as exc:
            raise LoadError(str(exc), EXIT_IMPORT_ERROR) from None
    return sorted((local, target) for target, local in found.items())


def load(ref: AppRef) -> dict[str, Any]:
    modal_alias.install()
    module, name, root = import_ref(ref)
    app, app_var = find_app(module, ref.app_var)
    try:
        manifest = build_manifest(app, name, app_var)
    except Exception as exc:  # noqa: BLE001
        raise LoadError(_user_traceback(exc), EXIT_IMPORT_ERROR) from None
    files = local_files(root)
    return {"manifest": manifest.to_json(), "root": str(root), "files": files, "mounts": mounts(manifest),
            "uploads": uploads(manifest)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sampan-importer")
    parser.add_argument("ref")
    parser.add_argument("-m", dest="module_mode", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        result = load(parse_ref(args.ref, args.module_mode))
    except LoadError as exc:
        sys.stderr.write(str(exc).rstrip("\n") + "\n")
        return exc.code
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold inline secrets
    with os.fdopen(fd, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
