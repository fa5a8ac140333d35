"""`modal.stream_type.StreamType`: where a Sandbox process's output goes."""

from __future__ import annotations

import enum
import subprocess


class StreamType(enum.Enum):
    DEVNULL = subprocess.DEVNULL
    PIPE = subprocess.PIPE
    STDOUT = subprocess.STDOUT


__all__ = ["StreamType"]
