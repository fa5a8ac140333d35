"""Per-request context inside a container: the function call id of the request being served."""

from __future__ import annotations

import contextvars

_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("sampan_call_id", default=None)


def current_call_id() -> str | None:
    return _call_id.get()


def set_call_id(value: str | None) -> contextvars.Token[str | None]:
    return _call_id.set(value)
