"""`modal.NetworkFileSystem` (deprecated by Modal in favour of `modal.Volume`): a shared directory that
every container mounting it sees at once. Here it is a Volume kept under the name `nfs-<name>` (so
`sampan volume list` shows it, and it never collides with a Volume of the same name), with Modal's
NFS methods; `network_file_systems={"/mnt": nfs}` mounts it like `volumes=`."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, BinaryIO

from ._deprecation import deprecation_warning
from .sdk.volume import FileEntry, Volume

PREFIX = "nfs-"


class NetworkFileSystem(Volume):
    def __repr__(self) -> str:
        return f"NetworkFileSystem.from_name({self.name[len(PREFIX):]!r})"

    @staticmethod
    def from_name(name: str, *, environment_name: str | None = None,  # type: ignore[override]
                  create_if_missing: bool = False, client: Any = None, **kwargs: Any) -> NetworkFileSystem:
        deprecation_warning((2026, 9, 16), "`modal.NetworkFileSystem` is deprecated and will be removed in a future "
                                           "release. Use `modal.Volume` instead.")
        return NetworkFileSystem(PREFIX + name, create_if_missing)

    @staticmethod
    def delete(name: str, *, client: Any = None, environment_name: str | None = None) -> None:
        Volume.delete(PREFIX + name)

    def write_file(self, remote_path: str, fp: BinaryIO, progress_cb: Any = None) -> int:
        data = fp.read()
        self._op("upload", files={remote_path: base64.b64encode(data).decode()}, force=True)
        return len(data)

    def add_local_file(self, local_path: str | Path, remote_path: str | None = None, progress_cb: Any = None) -> None:
        path = Path(local_path)
        with self.batch_upload(force=True) as batch:
            batch.put_file(path, remote_path or f"/{path.name}")

    def add_local_dir(self, local_path: str | Path, remote_path: str | None = None, progress_cb: Any = None) -> None:
        path = Path(local_path)
        with self.batch_upload(force=True) as batch:
            batch.put_directory(path, remote_path or f"/{path.name}")

    def read_file_into(self, path: str) -> bytes:
        out = io.BytesIO()
        for chunk in self.read_file(path):
            out.write(chunk)
        return out.getvalue()


__all__ = ["FileEntry", "NetworkFileSystem"]
