"""`modal.sandbox`: `Sandbox`, `SandboxSnapshot`, `Probe` (sdk/sandbox.py)."""

from __future__ import annotations

from .sdk.sandbox import Probe, Sandbox, SandboxSnapshot
from .sdk.sandbox_fs import FileInfo, SandboxFilesystem

__all__ = ["FileInfo", "Probe", "Sandbox", "SandboxFilesystem", "SandboxSnapshot"]
