"""Legacy spellings warn with `DeprecationError` and point at the line in the user's file."""

from __future__ import annotations

import os
import sys
import warnings

from .exception import DeprecationError

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_frame() -> tuple[str, int]:
    """The first stack frame outside the Sampan package: where the legacy spelling was written."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_PACKAGE_DIR + os.sep):
            return frame.f_code.co_filename, frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return "<unknown>", 0


def deprecation_warning(date: tuple[int, int, int], message: str) -> None:
    """Warn like Modal 1.0-1.3 did: `"<date>: <message>"` attributed to the user's line."""
    filename, lineno = _user_frame()
    y, m, d = date
    warnings.warn_explicit(
        f"{y:04d}-{m:02d}-{d:02d}: {message}",
        category=DeprecationError,
        filename=filename,
        lineno=lineno,
    )
