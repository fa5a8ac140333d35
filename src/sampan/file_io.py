"""`modal.file_io` (removed from Modal in 1.6): `FileIO`, the file handle of `Sandbox.open` (Modal 1.5), and
the watch events of `Sandbox.watch` / `sb.filesystem.watch`.

A handle reads the whole file when opened for reading and keeps writes until `flush()` or `close()`,
when it writes the file back through the sandbox's agent: the same bytes as Modal's handle, with
fewer round trips for the small files this API is used for."""

from __future__ import annotations

import enum
import io
from dataclasses import dataclass
from typing import Any

from .exception import InvalidError

MODES = {"r", "rb", "w", "wb", "a", "ab", "r+", "rb+", "r+b", "w+", "wb+", "w+b", "a+", "ab+", "a+b", "x", "xb"}


class FileWatchEventType(enum.Enum):
    Unknown = "Unknown"
    Access = "Access"
    Create = "Create"
    Modify = "Modify"
    Remove = "Remove"


@dataclass(frozen=True)
class FileWatchEvent:
    paths: list[str]
    type: FileWatchEventType


class FileIO:
    """A file in a Sandbox, opened with `sb.open(path, mode)`."""

    def __init__(self, sandbox: Any, path: str, mode: str = "r") -> None:
        if mode not in MODES:
            raise ValueError(f"Invalid file mode: {mode}")
        self._sb, self._path, self._mode = sandbox, path, mode
        self._binary = "b" in mode
        self._readable = "r" in mode or "+" in mode
        self._writable = any(c in mode for c in "wax+")
        self._dirty = False
        self._closed = False
        data = b""
        if "r" in mode or "a" in mode:
            try:
                data = sandbox.filesystem.read_bytes(path)
            except Exception:
                if "r" in mode:
                    raise
        elif "x" in mode:
            try:
                sandbox._fs("stat", path=path)
            except Exception:
                pass
            else:
                raise FileExistsError(f"{path} exists already")
        self._buffer = io.BytesIO(data)
        if "a" in mode:
            self._buffer.seek(0, io.SEEK_END)
        if "w" in mode or "x" in mode:
            self._dirty = True  # an empty file, even if nothing is written

    def _check(self, writing: bool = False) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file")
        if writing and not self._writable:
            raise InvalidError("File is not writable")
        if not writing and not self._readable:
            raise InvalidError("File is not readable")

    def _out(self, data: bytes) -> Any:
        return data if self._binary else data.decode()

    def read(self, n: int | None = None) -> Any:
        self._check()
        return self._out(self._buffer.read(-1 if n is None else n))

    def readline(self) -> Any:
        self._check()
        return self._out(self._buffer.readline())

    def readlines(self) -> list[Any]:
        self._check()
        return [self._out(line) for line in self._buffer.readlines()]

    def write(self, data: bytes | str) -> None:
        self._check(writing=True)
        if isinstance(data, str):
            if self._binary:
                raise TypeError("Expected bytes when writing to a file in binary mode")
            data = data.encode()
        if "a" in self._mode:
            self._buffer.seek(0, io.SEEK_END)
        self._buffer.write(data)
        self._dirty = True

    def seek(self, offset: int, whence: int = 0) -> None:
        self._check(writing=self._writable and not self._readable)
        self._buffer.seek(offset, whence)

    def flush(self) -> None:
        if self._dirty and not self._closed:
            self._sb.filesystem.write_bytes(self._buffer.getvalue(), self._path)
            self._dirty = False

    def close(self) -> None:
        if not self._closed:
            self.flush()
            self._closed = True

    def __enter__(self) -> FileIO:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def create(path: str, mode: str, client: Any = None, task_id: str | None = None) -> FileIO:
        raise InvalidError("Open files in a Sandbox with `sb.open(path, mode)`.")


def delete_bytes(file: FileIO, start: int | None = None, end: int | None = None) -> None:
    """Remove a range of bytes of an open file (Modal's `file_io.delete_bytes`)."""
    data = file._buffer.getvalue()
    file._buffer = io.BytesIO(data[:start or 0] + data[end if end is not None else len(data):])
    file._dirty = True


def replace_bytes(file: FileIO, data: bytes, start: int | None = None, end: int | None = None) -> None:
    """Replace a range of bytes of an open file (Modal's `file_io.replace_bytes`)."""
    old = file._buffer.getvalue()
    file._buffer = io.BytesIO(old[:start or 0] + data + old[end if end is not None else len(old):])
    file._dirty = True


__all__ = ["FileIO", "FileWatchEvent", "FileWatchEventType", "delete_bytes", "replace_bytes"]
