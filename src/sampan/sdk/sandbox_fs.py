"""`sb.filesystem` (Modal 1.4+): a Sandbox's files from outside it, through its agent
(runtime/sandbox_files.py): whole-file reads and writes in pieces, directories, stat, watch. Errors are
Modal's `SandboxFilesystem*Error`s, chosen by the error the agent met."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exception import (
    SandboxFilesystemError,
    SandboxFilesystemIsADirectoryError,
    SandboxFilesystemNotADirectoryError,
    SandboxFilesystemNotFoundError,
    SandboxFilesystemPathAlreadyExistsError,
    SandboxFilesystemPermissionError,
)
from ..file_io import FileWatchEvent, FileWatchEventType
from .sandbox_io import twin

PIECE = 4 << 20


@dataclass(frozen=True)
class FileInfo:
    name: str
    path: str
    type: str  # "file" | "directory" | "symlink"
    size: int
    mode: int
    permissions: str
    owner: int
    group: int
    modified_time: float
    symlink_target: str | None = None


def fs_error(answer: dict[str, Any]) -> Exception:
    kinds = {"FileNotFoundError": SandboxFilesystemNotFoundError,
             "IsADirectoryError": SandboxFilesystemIsADirectoryError,
             "NotADirectoryError": SandboxFilesystemNotADirectoryError,
             "PermissionError": SandboxFilesystemPermissionError,
             "FileExistsError": SandboxFilesystemPathAlreadyExistsError}
    return kinds.get(answer.get("kind", ""), SandboxFilesystemError)(answer["error"])


class SandboxFilesystem:
    """`sb.filesystem` (Modal 1.4+): whole-file reads and writes, directories, stat, watch."""

    def __init__(self, sandbox: Any) -> None:  # a Sandbox (sdk/sandbox.py)
        self._sb = sandbox

    @twin
    def read_bytes(self, remote_path: str) -> bytes:
        out, offset = bytearray(), 0
        while True:
            got = self._sb._fs("read", path=remote_path, offset=offset, length=PIECE)
            data = base64.b64decode(got["data"])
            out += data
            offset += len(data)
            if not data or offset >= got["size"]:
                return bytes(out)

    @twin
    def read_text(self, remote_path: str) -> str:
        return self.read_bytes(remote_path).decode()

    @twin
    def write_bytes(self, data: bytes, remote_path: str) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("data must be bytes-like")
        data = bytes(data)
        for start in range(0, max(len(data), 1), PIECE):
            self._sb._fs("write", path=remote_path, data=base64.b64encode(data[start:start + PIECE]).decode(),
                         append=start > 0)

    @twin
    def write_text(self, data: str, remote_path: str) -> None:
        if not isinstance(data, str):
            raise TypeError("data must be str")
        self.write_bytes(data.encode(), remote_path)

    @twin
    def copy_from_local(self, local_path: str | Path, remote_path: str) -> None:
        self.write_bytes(Path(local_path).read_bytes(), remote_path)

    @twin
    def copy_to_local(self, remote_path: str, local_path: str | Path) -> None:
        Path(local_path).write_bytes(self.read_bytes(remote_path))

    @twin
    def make_directory(self, remote_path: str, *, create_parents: bool = True) -> None:
        self._sb._fs("mkdir", path=remote_path, parents=create_parents)

    @twin
    def remove(self, remote_path: str, *, recursive: bool = False) -> None:
        self._sb._fs("remove", path=remote_path, recursive=recursive)

    @twin
    def list_files(self, remote_path: str) -> list[FileInfo]:
        return [FileInfo(**e) for e in self._sb._fs("list", path=remote_path)["entries"]]

    @twin
    def stat(self, remote_path: str) -> FileInfo:
        return FileInfo(**self._sb._fs("stat", path=remote_path))

    def watch(self, remote_path: str, *, filter: list[FileWatchEventType] | None = None,  # noqa: A002
              recursive: bool = False, timeout: int | None = None) -> Iterator[FileWatchEvent]:
        """Changes under `remote_path` (polled inside the sandbox) until `timeout` seconds pass."""
        deadline = time.monotonic() + (timeout if timeout is not None else 3600)
        while time.monotonic() < deadline:
            left = deadline - time.monotonic()
            for event in self._sb._fs("watch", path=remote_path, recursive=recursive, timeout=min(left, 50))["events"]:
                kind = FileWatchEventType(event["type"])
                if filter is None or kind in filter:
                    yield FileWatchEvent(event["paths"], kind)
