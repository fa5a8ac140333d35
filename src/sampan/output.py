"""`modal.output`: `enable_output()`, the context manager that makes `app.run()` and `app.deploy()`
print their progress and logs (a script without it runs quietly, as with Modal)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_enabled = 0


@contextlib.contextmanager
def enable_output(show_progress: bool = True) -> Iterator[None]:
    """Print build logs, object creation and function logs while inside; yields None (Modal 1.4+)."""
    global _enabled
    _enabled += 1
    try:
        yield None
    finally:
        _enabled -= 1


def is_enabled() -> bool:
    return _enabled > 0


__all__ = ["enable_output"]
