"""`modal.stream_type.StreamType`: where a Sandbox process's output goes."""

from __future__ import annotations

import enum


class StreamType(enum.Enum):
    DEVNULL = -3  # subprocess.DEVNULL (not imported: `import modal` stays light)
    PIPE = -1  # subprocess.PIPE
    STDOUT = -2  # subprocess.STDOUT


__all__ = ["StreamType"]
