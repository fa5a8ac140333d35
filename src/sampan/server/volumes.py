"""`modal.Volume` on the server: one directory per volume, `$SAMPAN_HOME/volumes/<workspace>/<name>/`.

Containers get it bind-mounted at their mount path (backends/isolation.py; a symbolic link on the
process runtime, server/apps.py `container_root`); clients list, read, upload and remove files through
the control API. Every path a client names is resolved inside the volume: `..` and symbolic links
cannot lead out of it.

Large files travel in pieces (`volume put/get` show their progress): `read` takes an offset and a
length, and `write` appends pieces to a hidden partial file (`.sampan-upload-<id>`) that the last piece
renames into place, so a file is never seen half-written and an upload cut short leaves no file.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

from ..exception import InvalidError, NotFoundError
from .objects import NAME

MAX_PIECE = 64 << 20  # bytes of one read or write: a body the control API holds at once
UPLOAD_ID = re.compile(r"[0-9a-f]{16,64}\Z")


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

    def _write_piece(self, volume: Path, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """One piece of an upload: `{path, upload_id, offset, data, final, force}`."""
        path = self._inside(volume, body["path"])
        upload_id = str(body.get("upload_id") or "")
        if not UPLOAD_ID.match(upload_id):
            raise InvalidError("`upload_id` must be 16 to 64 hexadecimal digits.")
        if path.exists() and not body.get("force"):
            raise InvalidError(f"{body['path']} already exists in volume '{name}' (upload with force=True).")
        if path == volume.resolve() or path.is_dir():
            raise InvalidError(f"{body['path']} is a directory.")
        data = base64.b64decode(body.get("data") or "")
        if len(data) > MAX_PIECE:
            raise InvalidError(f"A piece of an upload is at most {MAX_PIECE} bytes.")
        offset = int(body.get("offset") or 0)
        partial = path.parent / f".sampan-upload-{upload_id}"
        path.parent.mkdir(parents=True, exist_ok=True)
        # Containers write to volumes too: the partial file is never followed if it is a link (O_NOFOLLOW),
        # and the first piece makes it anew (O_EXCL), so no name a container planted leads the server out.
        flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        if offset == 0:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            flags |= os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(partial, flags, 0o644)
        except OSError:
            raise InvalidError(f"Upload {upload_id}: no piece ends at offset {offset} (start again from 0).") from None
        with os.fdopen(fd, "wb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_size != offset:
                raise InvalidError(f"Upload {upload_id}: no piece ends at offset {offset} (start again from 0).")
            fh.seek(offset)
            fh.write(data)
        if body.get("final"):
            os.replace(partial, path)
            done = path.stat()  # what a container's volume sync records as the server's version of the file
            return {"written": offset + len(data), "size": done.st_size, "mtime": done.st_mtime}
        return {"written": offset + len(data)}

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
            if body.get("length") is None:
                return {"data": base64.b64encode(path.read_bytes()).decode()}
            offset, length = int(body.get("offset") or 0), min(int(body["length"]), MAX_PIECE)
            if offset < 0 or length < 0:
                raise InvalidError("`offset` and `length` must not be negative.")
            with path.open("rb") as fh:
                fh.seek(offset)
                piece = fh.read(length)
            return {"data": base64.b64encode(piece).decode(), "size": path.stat().st_size}
        if op == "write":
            return self._write_piece(volume, name, body)
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
