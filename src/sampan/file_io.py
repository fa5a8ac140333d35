"""`modal.file_io` (removed from Modal in 1.6): `FileIO`, the file handle of `Sandbox.open`. Importable
for older scripts; it comes with the Sandbox, which is not built yet."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._not_built import NotBuilt


class FileIO(NotBuilt):
    _name = "file_io.FileIO"
    _issue = "it comes with modal.Sandbox"


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


__all__ = ["FileIO", "FileWatchEvent", "FileWatchEventType"]
