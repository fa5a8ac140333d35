"""`modal.mount.Mount`: the legacy way (Modal < 1.0) of adding local files to containers. Each
`Mount.from_local_*` stands for the `Image.add_local_*` step that replaced it, and `mounts=[...]` on
`App`, `@app.function` and `@app.cls` appends those steps to the function's image, with Modal's
deprecation text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._deprecation import deprecation_warning


def _warn(replacement: str) -> None:
    deprecation_warning((2025, 1, 8), "modal.Mount usage will soon be deprecated.\n\nUse "
                                      f"{replacement} instead, which is functionally and performance-wise "
                                      "equivalent.\n")


class Mount:
    def __init__(self, steps: tuple[tuple[str, dict[str, Any]], ...] = ()) -> None:
        self.steps = steps  # (Image method, its keywords)

    def __repr__(self) -> str:
        return f"Mount({', '.join(f'{op}({kw})' for op, kw in self.steps)})"

    @staticmethod
    def from_local_dir(local_path: str | Path, *, remote_path: str | None = None, condition: Any = None,
                       recursive: bool = True) -> Mount:
        _warn("image.add_local_dir")
        local = Path(local_path).expanduser()
        ignore = (lambda p: not condition(str(local / p))) if condition is not None else ()
        return Mount((("add_local_dir", {"local_path": local, "remote_path": remote_path or f"/root/{local.name}",
                                         "ignore": ignore}),))

    @staticmethod
    def from_local_file(local_path: str | Path, remote_path: str | None = None) -> Mount:
        _warn("image.add_local_file")
        local = Path(local_path).expanduser()
        return Mount((("add_local_file", {"local_path": local, "remote_path": remote_path or f"/root/{local.name}"}),))

    @staticmethod
    def from_local_python_packages(*module_names: str, remote_dir: str = "/root", condition: Any = None,
                                   ignore: Any = None) -> Mount:
        _warn("image.add_local_python_source")
        return Mount((("add_local_python_source", {"modules": module_names}),))

    def add_local_dir(self, local_path: str | Path, *, remote_path: str | None = None, condition: Any = None,
                      recursive: bool = True) -> Mount:
        return Mount(self.steps + Mount.from_local_dir(local_path, remote_path=remote_path, condition=condition).steps)

    def add_local_file(self, local_path: str | Path, remote_path: str | None = None) -> Mount:
        return Mount(self.steps + Mount.from_local_file(local_path, remote_path).steps)

    def apply(self, image: Any) -> Any:
        """The image with this mount's files added (at container start, as `copy=False`)."""
        for op, kwargs in self.steps:
            if op == "add_local_python_source":
                image = image.add_local_python_source(*kwargs["modules"])
            else:
                image = getattr(image, op)(**kwargs)
        return image


__all__ = ["Mount"]
