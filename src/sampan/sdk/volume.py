"""`modal.Volume`: a directory kept by the Sampan server and mounted into containers.

A function declares `volumes={"/data": modal.Volume.from_name("models", create_if_missing=True)}`;
its containers then find the volume's directory at that path, re-rooted under their working
directory like every other remote path on the local backend (`/data` is `./data`; see
docs/architecture.md). All containers on the server's machine share the same directory, so a write
is seen at once: `commit()` and `reload()` do nothing there. A container on another machine (a Ray
node) has a copy of its own that they sync with the server, as Modal's do (volume_sync.py). From
outside a container the methods below go through the control API.

Files travel in pieces of PIECE bytes (server/volumes.py puts an upload's pieces together in a hidden
file and renames it into place on the last one), so a file of any size moves without being held whole
in memory, and a caller can show progress (`sampan volume put/get` do).
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..api import default_client, path
from ..volume_sync import synced_volumes
from .objects import ephemeral


@dataclass(frozen=True)
class FileEntry:
    path: str
    type: str  # "file" | "directory"
    size: int
    mtime: float


class Volume:
    def __init__(self, name: str, create_if_missing: bool = False) -> None:
        self.name = name
        self.create_if_missing = create_if_missing

    def __repr__(self) -> str:
        return f"Volume.from_name({self.name!r})"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "create_if_missing": self.create_if_missing}

    @staticmethod
    def from_name(name: str, *, environment_name: str | None = None, create_if_missing: bool = False,
                  version: int | None = None, create_options: Any = None, client: Any = None) -> Volume:
        return Volume(name, create_if_missing)

    @staticmethod
    def ephemeral(client: Any = None, environment_name: str | None = None, version: int | None = None,
                  create_options: Any = None) -> contextlib.AbstractContextManager[Volume]:
        return ephemeral(Volume, Volume.delete)

    @staticmethod
    def delete(name: str, *, client: Any = None, environment_name: str | None = None) -> None:
        default_client().delete(path("v1", "volumes", name), timeout=300)

    def _op(self, op: str, **fields: Any) -> Any:
        body = {"op": op, "create_if_missing": self.create_if_missing, **fields}
        return default_client().call("POST", path("v1", "volumes", self.name), body, timeout=300)

    # -- inside a container: no-ops where every container sees the same directory; on another
    # machine (a Ray node) the container's own copy is synced with the server (volume_sync.py) ----
    def commit(self) -> None:
        """Make this container's writes visible to others."""
        for sync in synced_volumes().get(self.name, ()):
            sync.commit()

    def reload(self) -> None:
        """See other containers' committed writes (this container's own are committed first)."""
        for sync in synced_volumes().get(self.name, ()):
            sync.reload()

    # -- from anywhere --------------------------------------------------------------------------
    def listdir(self, path: str = "/", *, recursive: bool = False) -> list[FileEntry]:
        return [FileEntry(**e) for e in self._op("listdir", path=path, recursive=recursive)["entries"]]

    def iterdir(self, path: str = "/", *, recursive: bool = True) -> Iterator[FileEntry]:
        return iter(self.listdir(path, recursive=recursive))

    def read_file(self, path: str) -> Iterator[bytes]:
        """The file's bytes, a piece at a time."""
        offset = 0
        while True:
            got = self._op("read", path=path, offset=offset, length=PIECE)
            data = base64.b64decode(got["data"])
            if data:
                yield data
            offset += len(data)
            if not data or offset >= got["size"]:
                return

    def read_file_into_fileobj(self, path: str, fileobj: IO[bytes],
                               progress_cb: Callable[..., Any] | None = None) -> int:
        """Write the file into `fileobj`; the number of bytes. `progress_cb(advance=n)` after each piece."""
        written = 0
        for piece in self.read_file(path):
            fileobj.write(piece)
            written += len(piece)
            if progress_cb is not None:
                progress_cb(advance=len(piece))
        return written

    def remove_file(self, path: str, recursive: bool = False) -> None:
        self._op("remove", path=path, recursive=recursive)

    def copy_files(self, src_paths: list[str], dst_path: str, recursive: bool = False) -> None:
        self._op("copy", src_paths=src_paths, dst_path=dst_path, recursive=recursive)

    @contextlib.contextmanager
    def batch_upload(self, force: bool = False) -> Iterator[_Batch]:
        batch = _Batch()
        yield batch
        self._upload(batch.files, force)

    def _upload(self, files: list[tuple[str | IO[bytes], str]], force: bool,
                progress: Callable[[int], None] | None = None) -> None:
        """Each (local path or binary file object, remote path), in pieces; `progress(n)` after each."""
        for local, remote in files:
            with contextlib.ExitStack() as stack:
                fh = stack.enter_context(open(local, "rb")) if isinstance(local, str) else local
                upload_id, offset = secrets.token_hex(16), 0
                piece = fh.read(PIECE)
                while True:
                    following = fh.read(PIECE) if len(piece) == PIECE else b""
                    self._op("write", path=remote, upload_id=upload_id, offset=offset, force=force,
                             data=base64.b64encode(piece).decode(), final=not following)
                    offset += len(piece)
                    if progress is not None:
                        progress(len(piece))
                    if not following:
                        break
                    piece = following


PIECE = 8 << 20  # bytes per request of a transfer (base64 makes it about 11 MB of JSON)


def upload_size(files: list[tuple[str | IO[bytes], str]]) -> int | None:
    """The bytes an upload will send (None when a file object's size cannot be told)."""
    total = 0
    for local, _ in files:
        if isinstance(local, str):
            total += os.path.getsize(local)
        else:
            return None
    return total


class _Batch:
    def __init__(self) -> None:
        self.files: list[tuple[str | IO[bytes], str]] = []

    def put_file(self, local_file: str | Path | IO[bytes], remote_path: str, mode: int | None = None) -> None:
        """A file to upload: a local path, or a binary file object (read when the batch ends)."""
        self.files.append((local_file if hasattr(local_file, "read") else str(local_file), remote_path))

    def put_directory(self, local_path: str | Path, remote_path: str, recursive: bool = True) -> None:
        local = Path(local_path)
        pattern = "**/*" if recursive else "*"
        for file in sorted(p for p in local.glob(pattern) if p.is_file()):
            self.files.append((str(file), os.path.join(remote_path, file.relative_to(local).as_posix())))
