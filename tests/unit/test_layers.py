"""The package's shape, checked over its source (ast): layers import downwards, imports sit at the top of
their module, `import sampan` stays light, and long modules say why they are long.

    sdk (and the Modal module paths: sampan/app.py, ...)   the user's side
    cli                                                    may use everything
    server  ->  backends  ->  runtime                      the platform
    shared leaves (sampan/config.py, api.py, manifest.py, ...) below all of them
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import sampan

SRC = Path(sampan.__file__).parent
LAYERS = ("sdk", "cli", "server", "backends", "runtime")
# What a layer must not import. cli is the top: it may import anything.
FORBIDDEN = {
    "sdk": {"cli", "server", "backends", "runtime"},
    "server": {"cli", "sdk"},
    "backends": {"cli", "sdk", "server"},
    "runtime": {"cli", "server", "backends"},
}
# Pure rules and the client both sides share: they import only each other.
SHARED = {"exception", "config", "api", "registry", "manifest", "classparams", "callcontext", "mountpaths",
          "naming", "resources", "schedules", "profiles", "_proc", "_deprecation", "_not_built",
          "file_pattern_matcher", "localfiles", "volume_sync", "httpclient"}
# Imports inside functions that are there on purpose (module, imported module): why.
LOCAL_IMPORTS = {
    ("sampan.runtime.template", "sampan.runtime.sandbox"):
        "the template enters its sandbox before it imports anything of the image",
    ("sampan.runtime.template", "sampan.runtime.container"):
        "a root filesystem template re-executes the image's own interpreter first; the container code "
        "(and the SDK under it) is imported by that interpreter",
    ("sampan.runtime.template", "sampan.modal_alias"): "idem",
    ("sampan.runtime.container", "sampan.runtime.sandbox"): "idem, for a spawned container",
}
MAX_LINES = 400
LONG_REASON = "Longer than 400 lines because"
# Never loaded by `import sampan` (so `import modal` in a user's script costs what Modal's does).
HEAVY = ("asyncio", "ssl", "socket", "http.client", "urllib.request", "subprocess", "concurrent.futures",
         "logging")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def layer(module: str) -> str:
    if module == "sampan.__main__":  # `python -m sampan`: the CLI
        return "cli"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return "shared" if len(parts) > 1 and parts[1] in SHARED else "top"


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported sampan module, line, inside a function) for every import of `module`."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor) + (f".{base}" if base else "")
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        out.extend((n, node.lineno, id(node) in in_function) for n in names if n.split(".")[0] == "sampan")
    return out


def test_the_checker_sees_the_tree() -> None:
    assert "sampan.server.control.routes" in MODULES and "sampan.sdk.calls" in MODULES
    assert any(m == "sampan.api" and not local for m, _, local in imports("sampan.sdk.calls"))
    assert ("sampan.runtime.sandbox", True) in {(m, local) for m, _, local in imports("sampan.runtime.template")}
    assert layer("sampan.server.control.auth") == "server" and layer("sampan.manifest") == "shared"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layers_import_downwards(module: str) -> None:
    mine = layer(module)
    for target, line, _ in imports(module):
        theirs = layer(target)
        if mine == "shared":
            assert theirs == "shared", f"{module}:{line} is a shared leaf and imports {target}"
        elif mine == "top" and theirs in LAYERS:
            # A Modal module path (sampan/app.py, ...) re-exports the SDK, nothing else.
            assert theirs == "sdk", f"{module}:{line} imports {target}"
        else:
            assert theirs not in FORBIDDEN.get(mine, set()), f"{module}:{line} ({mine}) imports {target} ({theirs})"


def test_imports_are_at_the_top() -> None:
    found = sorted({(module, target) for module in MODULES for target, _, local in imports(module) if local}
                   - set(LOCAL_IMPORTS))
    assert not found, f"imports of Sampan's own modules inside functions: {found}"
    stale = set(LOCAL_IMPORTS) - {(m, t) for m in MODULES for t, _, local in imports(m) if local}
    assert not stale, f"LOCAL_IMPORTS names imports that are gone: {stale}"


def test_long_modules_say_why() -> None:
    long = [module for module, path in MODULES.items()
            if len(path.read_text().splitlines()) > MAX_LINES and LONG_REASON not in path.read_text()[:4000]]
    assert not long, f"modules over {MAX_LINES} lines without '{LONG_REASON} ...' at their top: {long}"


def test_import_sampan_is_light() -> None:
    code = f"import sys, sampan; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"`import sampan` loads {loaded}"


def test_the_sdk_alone_imports_no_server() -> None:
    """`Function.from_name(...)` and `Dict.from_name(...)` from plain Python must not load the platform."""
    code = ("import sys, sampan\n"
            "sampan.Function.from_name('a', 'f'); sampan.Dict.from_name('d')\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[:2] in "
            "(['sampan', 'server'], ['sampan', 'cli'], ['sampan', 'backends'], ['sampan', 'runtime']))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
