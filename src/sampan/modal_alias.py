"""Make `import modal` (and `from modal.exception import ...`) resolve to Sampan.

Installed by the CLI before it imports a user's script and by the runtime inside each container,
so a script written for Modal runs unchanged even where the real `modal` package is installed.
Submodules resolve lazily: `modal.X` is `sampan.X` when Sampan has it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

# Modal module paths that live elsewhere in Sampan, and Sampan's own packages, which are not Modal's.
RENAMED = {"modal.server": "sampan.sdk.server"}
NOT_MODAL = ("modal.server.", "modal.sdk", "modal.backends", "modal.runtime", "modal.api", "modal.registry")


def real_name(fullname: str) -> str | None:
    """The Sampan module that `modal.X` is, or None where Modal has no such module."""
    if fullname in RENAMED:
        return RENAMED[fullname]
    if fullname.startswith(NOT_MODAL):
        return None
    return "sampan" + fullname[len("modal"):]


class _ModalAliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "modal" and not fullname.startswith("modal."):
            return None
        real = real_name(fullname)
        if real is None:  # a package of Sampan's own, not Modal's: not importable as `modal.X`
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        try:
            importlib.util.find_spec(real)
        except ModuleNotFoundError:
            return None
        if importlib.util.find_spec(real) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(real_name(spec.name) or spec.name)

    def exec_module(self, module: ModuleType) -> None:
        return None


_FINDER = _ModalAliasFinder()


def install() -> None:
    """Idempotent. Drops an already imported real `modal` so the alias wins."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    for name in [n for n in sys.modules if n == "modal" or n.startswith("modal.")]:
        if not getattr(sys.modules[name], "__name__", "").startswith("sampan"):
            del sys.modules[name]
