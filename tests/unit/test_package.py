"""The package's public surface and import hygiene (httpx's `__all__` test, aiohttp's import test)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import sampan

SRC = Path(sampan.__file__).resolve().parent
MODULES = sorted(
    m.name for m in pkgutil.walk_packages([str(SRC)], prefix="sampan.") if not m.name.endswith("__main__")
)


def test_all_matches_public_names() -> None:
    public = {n for n in dir(sampan) if not n.startswith("_") and n not in {"annotations", "sdk", "naming"}}
    modules = {n for n in public if type(getattr(sampan, n)).__name__ == "module"}
    assert set(sampan.__all__) == public - (modules - {"exception"}) | {"__version__"}


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_importing_sampan_does_no_heavy_imports() -> None:
    code = (
        "import sys, sampan; heavy = {'fastapi', 'starlette', 'uvicorn', 'pydantic', 'rich', 'watchfiles', 'click'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_import_modal_resolves_to_sampan_even_with_a_real_modal_installed(tmp_path: Path) -> None:
    fake = tmp_path / "modal"
    fake.mkdir()
    (fake / "__init__.py").write_text("REAL_MODAL = True\n")
    (fake / "exception.py").write_text("REAL_MODAL = True\n")
    code = (
        "import modal as before; assert before.REAL_MODAL\n"
        "from sampan import modal_alias; modal_alias.install()\n"
        "import modal, sampan\n"
        "from modal.exception import InvalidError\n"
        "from modal import App, fastapi_endpoint\n"
        "assert modal is sampan and InvalidError is sampan.exception.InvalidError and App is sampan.App\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, env={"PYTHONPATH": f"{tmp_path}:{SRC.parent}", "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "ok", out.stderr


def test_missing_modal_submodule_is_a_clean_import_error() -> None:
    code = (
        "from sampan import modal_alias; modal_alias.install()\n"
        "try:\n    import modal.does_not_exist\nexcept ImportError as e:\n    print('ImportError')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ImportError", out.stderr
