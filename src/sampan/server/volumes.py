"""`modal.Volume` on the server: one directory per volume, `$SAMPAN_HOME/volumes/<workspace>/<name>/`.

Containers get it bind-mounted at their mount path (backends/isolation.py; a symbolic link on the
process runtime, server/apps.py `container_root`); clients list, read, upload and remove files through
the control API. Every path a client names is resolved inside the volume, one component at a time
from the volume's own directory (inroot.py): `..` and symbolic links cannot lead out of it, not even
a link a container swaps in while the server works, and a link is copied as a link, never as what it
points to.

Large files travel in pieces (`volume put/get` show their progress): `read` takes an offset and a
length, and `write` appends pieces to a hidden partial file (`.sampan-upload-<id>`) that the last piece
renames into place, so a file is never seen half-written and an upload cut short leaves no file.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..exception import InvalidError, NotFoundError
from . import inroot
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

    # -- inside a volume: every path resolved from the volume's directory (inroot.py) ---------------
    @contextlib.contextmanager
    def _opened(self, volume: Path) -> Iterator[int]:
        fd = os.open(volume, inroot.DIR_FLAGS)
        try:
            yield fd
        finally:
            os.close(fd)

    @staticmethod
    def _parts(path: str) -> list[str]:
        try:
            return inroot.parts_of(path)
        except inroot.Outside:
            raise InvalidError(f"Path {path!r} leads outside the volume.") from None

    def _write_piece(self, root: int, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """One piece of an upload: `{path, upload_id, offset, data, final, force}`."""
        upload_id = str(body.get("upload_id") or "")
        if not UPLOAD_ID.match(upload_id):
            raise InvalidError("`upload_id` must be 16 to 64 hexadecimal digits.")
        parts = self._parts(body["path"])
        if not parts:
            raise InvalidError(f"{body['path']} is a directory.")
        data = base64.b64decode(body.get("data") or "")
        if len(data) > MAX_PIECE:
            raise InvalidError(f"A piece of an upload is at most {MAX_PIECE} bytes.")
        offset = int(body.get("offset") or 0)
        parent, last = inroot.locate(root, parts, create=True)
        try:
            self._may_write(parent, last, body["path"], name, bool(body.get("force")))
            partial = f".sampan-upload-{upload_id}"
            # Containers write to volumes too: the partial file is never followed if it is a link
            # (O_NOFOLLOW), and the first piece makes it anew (O_EXCL).
            flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            if offset == 0:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial, dir_fd=parent)
                flags |= os.O_CREAT | os.O_EXCL
            stale = f"Upload {upload_id}: no piece ends at offset {offset} (start again from 0)."
            try:
                fd = os.open(partial, flags, 0o644, dir_fd=parent)
            except OSError:
                raise InvalidError(stale) from None
            with os.fdopen(fd, "wb") as fh:
                if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_size != offset:
                    raise InvalidError(stale)
                fh.seek(offset)
                fh.write(data)
            if not body.get("final"):
                return {"written": offset + len(data)}
            os.replace(partial, last, src_dir_fd=parent, dst_dir_fd=parent)
            done = os.stat(last, dir_fd=parent, follow_symlinks=False)  # what a container's volume sync records
            return {"written": offset + len(data), "size": done.st_size, "mtime": done.st_mtime}
        finally:
            os.close(parent)

    @staticmethod
    def _may_write(parent: int, last: str, path: str, name: str, force: bool) -> None:
        try:
            info = os.stat(last, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            raise InvalidError(f"{path} is a directory.")
        if not force:
            raise InvalidError(f"{path} already exists in volume '{name}' (upload with force=True).")

    def op(self, workspace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        volume = self.dir(workspace, name, create=bool(body.get("create_if_missing")))
        op = body.get("op")
        if op == "create":
            return {}
        try:
            with self._opened(volume) as root:
                return self._op(root, name, op, body)
        except inroot.Outside:
            raise InvalidError(f"Path {body.get('path', '')!r} leads outside the volume.") from None

    def _op(self, root: int, name: str, op: Any, body: dict[str, Any]) -> dict[str, Any]:
        if op == "listdir":
            return {"entries": self._listdir(root, name, body.get("path") or "/", bool(body.get("recursive")))}
        if op == "read":
            return self._read(root, name, body)
        if op == "write":
            return self._write_piece(root, name, body)
        if op == "upload":
            for remote, data in body["files"].items():
                parts = self._parts(remote)
                if not parts:
                    raise InvalidError(f"{remote} is a directory.")
                parent, last = inroot.locate(root, parts, create=True)
                try:
                    self._may_write(parent, last, remote, name, bool(body.get("force")))
                    inroot.write_new(parent, last, base64.b64decode(data), f".sampan-upload-{secrets.token_hex(8)}")
                finally:
                    os.close(parent)
            return {}
        if op == "remove":
            return self._remove(root, name, body)
        if op == "copy":
            return self._copy(root, body)
        raise InvalidError(f"Unknown Volume operation {op!r}.")

    def _listdir(self, root: int, name: str, path: str, recursive: bool) -> list[dict[str, Any]]:
        parts = self._parts(path)

        def entry(at: tuple[str, ...], info: os.stat_result) -> dict[str, Any]:
            kind = "directory" if stat.S_ISDIR(info.st_mode) else "file"
            if stat.S_ISLNK(info.st_mode):  # a link within the volume shows what it leads to
                kind = {"directory": "directory", "file": "file"}.get(inroot.kind(root, list(at)), "symlink")
                if kind == "file":
                    with contextlib.suppress(OSError, inroot.Outside):
                        fd = inroot.open_file(root, list(at))
                        info = os.fstat(fd)
                        os.close(fd)
            return {"path": "/".join(at), "type": kind, "size": info.st_size, "mtime": info.st_mtime}

        try:
            base = inroot.open_dir(root, parts)
        except (NotADirectoryError, FileNotFoundError):
            try:
                fd = inroot.open_file(root, parts)
            except (FileNotFoundError, NotADirectoryError):
                raise NotFoundError(f"No such path in volume '{name}': {path}") from None
            except OSError:  # a FIFO, a socket: listed as what it is
                parent, last = inroot.locate(root, parts)
                try:
                    return [entry(tuple(parts), os.stat(last, dir_fd=parent, follow_symlinks=False))]
                finally:
                    os.close(parent)
            try:
                return [{"path": "/".join(parts), "type": "file", "size": os.fstat(fd).st_size,
                         "mtime": os.fstat(fd).st_mtime}]
            finally:
                os.close(fd)
        try:
            if recursive:
                found = list(inroot.walk(base, tuple(parts)))
            else:
                found = [((*parts, e.name), e.stat(follow_symlinks=False)) for e in inroot.entries(base)]
        finally:
            os.close(base)
        return [entry(at, info) for at, info in found]

    def _read(self, root: int, name: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            fd = inroot.open_file(root, self._parts(body["path"]))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(f"No such file in volume '{name}': {body['path']}") from None
        except inroot.Outside:
            raise
        except OSError:
            raise NotFoundError(f"No such file in volume '{name}': {body['path']}") from None
        with os.fdopen(fd, "rb") as fh:
            if body.get("length") is None:
                return {"data": base64.b64encode(fh.read()).decode()}
            offset, length = int(body.get("offset") or 0), min(int(body["length"]), MAX_PIECE)
            if offset < 0 or length < 0:
                raise InvalidError("`offset` and `length` must not be negative.")
            fh.seek(offset)
            piece = fh.read(length)
            return {"data": base64.b64encode(piece).decode(), "size": os.fstat(fd).st_size}

    def _remove(self, root: int, name: str, body: dict[str, Any]) -> dict[str, Any]:
        path = body["path"]
        parts = self._parts(path)
        recursive = bool(body.get("recursive"))
        if not parts:  # the volume's root: what it holds
            if not recursive:
                raise InvalidError(f"{path} is a directory: remove it with recursive=True.")
            for found in inroot.entries(root):
                if found.is_dir(follow_symlinks=False):
                    inroot.remove_tree(root, found.name)
                else:
                    os.unlink(found.name, dir_fd=root)
            return {}
        try:
            parent, last = inroot.locate(root, parts)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"No such path in volume '{name}': {path}") from None
        try:
            try:
                info = os.stat(last, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                raise NotFoundError(f"No such path in volume '{name}': {path}") from None
            if stat.S_ISDIR(info.st_mode):
                if not recursive:
                    raise InvalidError(f"{path} is a directory: remove it with recursive=True.")
                inroot.remove_tree(parent, last)
            else:
                os.unlink(last, dir_fd=parent)  # a link goes, not what it points to
        finally:
            os.close(parent)
        return {}

    def _copy(self, root: int, body: dict[str, Any]) -> dict[str, Any]:
        temp = f".sampan-copy-{secrets.token_hex(8)}"
        dst_parts = self._parts(body["dst_path"])
        for src_name in body["src_paths"]:
            src_parts = self._parts(src_name)
            if inroot.kind(root, dst_parts) == "directory":  # into it, under the source's name
                target = [*dst_parts, src_parts[-1]] if src_parts else dst_parts
            else:
                target = dst_parts
            try:
                src_dir = inroot.open_dir(root, src_parts)
            except (NotADirectoryError, FileNotFoundError):
                src_dir = None
            if src_dir is not None:
                try:
                    if not body.get("recursive"):
                        raise InvalidError(f"{src_name} is a directory: copy it with recursive=True.")
                    dst_dir = inroot.open_dir(root, target, create=True)
                    try:
                        inroot.copy_tree(src_dir, dst_dir, temp)
                    finally:
                        os.close(dst_dir)
                finally:
                    os.close(src_dir)
                continue
            if not target:
                raise InvalidError(f"{body['dst_path']} is a directory.")
            try:
                fd = inroot.open_file(root, src_parts)
            except (FileNotFoundError, NotADirectoryError, OSError) as exc:
                if isinstance(exc, inroot.Outside):
                    raise
                raise NotFoundError(f"No such file in volume: {src_name}") from None
            with os.fdopen(fd, "rb") as src:
                parent, last = inroot.locate(root, target, create=True)
                try:
                    inroot.write_new(parent, last, src, temp, os.fstat(fd).st_mtime)
                finally:
                    os.close(parent)
        return {}
