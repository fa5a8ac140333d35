"""Sampan's exceptions, named and shaped like Modal's so that user code catching them keeps working.

    Error                      base of everything Sampan raises on purpose
    ├── InvalidError           a wrong decorator use, keyword or value (caught before anything runs)
    ├── ExecutionError         something failed while running (a container, the server)
    ├── NotFoundError          a named object (secret, app, function) does not exist
    └── AuthError              a missing or wrong credential

`DeprecationError` is a warning category, not an error: Modal made it a `UserWarning`
so that legacy spellings can warn and keep working.
"""

from __future__ import annotations


class Error(Exception):
    """Base class for all Sampan errors."""


class InvalidError(Error):
    """A declaration or argument that cannot be honoured."""


class ExecutionError(Error):
    """Something went wrong while running user code or the server."""


class NotFoundError(Error):
    """A named object does not exist."""


class AuthError(Error):
    """A credential is missing or wrong."""


class DeprecationError(UserWarning):
    """A legacy spelling: it still works, and the message names the new one."""


class PendingDeprecationError(UserWarning):
    """A spelling that will become deprecated."""


__all__ = [
    "AuthError",
    "DeprecationError",
    "Error",
    "ExecutionError",
    "InvalidError",
    "NotFoundError",
    "PendingDeprecationError",
]
