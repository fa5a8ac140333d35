"""`modal.Volume` on the server: one directory per volume, `$SAMPAN_HOME/volumes/<workspace>/<name>/`.

Containers get it bind-mounted at their mount path (backends/isolation.py; a symbolic link on the
process runtime, server/apps.py `container_root`); clients list, read, upload and remove files through
the control API. Every path a client names is resolved inside the volume: `..` and symbolic links
cannot lead out of it.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

from ..exception import InvalidError, NotFoundError
from .objects import NAME


class Volumes:
    def __init__(self, home: Path) -> None:
        self.root = home / "volumes"

    def dir(self, workspace: str, name: str, create: bool = False) -> Path:
        if not NAME.match(name):
            raise InvalidError(f"Invalid Volume name: {name!r}. Names may contain only alphanumeric characters, "
                               "dashes, periods, and underscores, must contain a letter or digit, and must be "
                               "shorter than 64 characters.")
        base = self.root / workspace
        path = base / name
        if path.resolve().parent != base.resolve():  # never the workspace's directory, its parent, or a link out
            raise InvalidError(f"Invalid Volume name: {name!r}.")
        if not path.is_dir():
            if not create:
                raise NotFoundError(f"Volume '{name}' not found in workspace '{workspace}'.")
            path.mkdir(parents=True, exist_ok=True)
        return path

    def names(self, workspace: str) -> list[dict[str, Any]]:
        base = self.root / workspace
        if not base.is_dir():
            return []
        return [{"name": p.name, "created_at": p.stat().st_ctime} for p in sorted(base.iterdir()) if p.is_dir()]

    def delete(self, workspace: str, name: str) -> None:
        shutil.rmtree(self.dir(workspace, name))

    @staticmethod
    def _inside(volume: Path, path: str) -> Path:
        target = (volume / path.lstrip("/")).resolve()
        if target != volume.resolve() and volume.resolve() not in target.parents:
            raise InvalidError(f"Path {path!r} leads outside the volume.")
        return target

    def op(self, workspace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        volume = self.dir(workspace, name, create=bool(body.get("create_if_missing")))
        op = body.get("op")
        if op == "create":
            return {}
        if op == "listdir":
            base = self._inside(volume, body.get("path") or "/")
            if base.is_file():
                found = [base]
            elif base.is_dir():
                found = sorted(base.rglob("*") if body.get("recursive") else base.iterdir())
            else:
                raise NotFoundError(f"No such path in volume '{name}': {body.get('path')}")
            root = volume.resolve()
            return {"entries": [{"path": p.relative_to(root).as_posix(), "type": "directory" if p.is_dir() else "file",
                                 "size": p.stat().st_size, "mtime": p.stat().st_mtime} for p in found]}
        if op == "read":
            path = self._inside(volume, body["path"])
            if not path.is_file():
                raise NotFoundError(f"No such file in volume '{name}': {body['path']}")
            return {"data": base64.b64encode(path.read_bytes()).decode()}
        if op == "upload":
            for remote, data in body["files"].items():
                path = self._inside(volume, remote)
                if path.exists() and not body.get("force"):
                    raise InvalidError(f"{remote} already exists in volume '{name}' (upload with force=True).")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(base64.b64decode(data))
            return {}
        if op == "remove":
            path = self._inside(volume, body["path"])
            if path.is_dir():
                if not body.get("recursive"):
                    raise InvalidError(f"{body['path']} is a directory: remove it with recursive=True.")
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                raise NotFoundError(f"No such path in volume '{name}': {body['path']}")
            return {}
        if op == "copy":
            dst = self._inside(volume, body["dst_path"])
            for src_name in body["src_paths"]:
                src = self._inside(volume, src_name)
                target = dst / src.name if dst.is_dir() else dst
                if src.is_dir():
                    if not body.get("recursive"):
                        raise InvalidError(f"{src_name} is a directory: copy it with recursive=True.")
                    shutil.copytree(src, target, dirs_exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target)
            return {}
        raise InvalidError(f"Unknown Volume operation {op!r}.")
