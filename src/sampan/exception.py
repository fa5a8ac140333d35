"""Sampan's exceptions, named and shaped like Modal's so that user code catching them keeps working.

    Error                      base of everything Sampan raises on purpose
    ├── InvalidError           a wrong decorator use, keyword or value (caught before anything runs)
    ├── ExecutionError         something failed while running (a container, the server)
    ├── NotFoundError          a named object (secret, app, function) does not exist
    ├── AuthError              a missing or wrong credential
    ├── RemoteError            a remote call failed and its exception could not be sent back
    ├── InputCancellation      a spawned call was cancelled
    └── TimeoutError           (also the built-in TimeoutError)
        └── FunctionTimeoutError   a call ran past its function's `timeout`

`DeprecationError` is a warning category, not an error: Modal made it a `UserWarning`
so that legacy spellings can warn and keep working.
"""

from __future__ import annotations

import builtins


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


class RemoteError(Error):
    """A remote call failed in a way that cannot be re-raised as the original exception."""


class InputCancellation(Error):
    """The call was cancelled (`FunctionCall.cancel()`)."""


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 - Modal's name
    """Something took longer than allowed."""


class FunctionTimeoutError(TimeoutError):
    """A call ran past its function's `timeout`."""


class OutputExpiredError(TimeoutError):
    """A spawned call's result is no longer kept (the server bounds what it holds)."""


class DeprecationError(UserWarning):
    """A legacy spelling: it still works, and the message names the new one."""


class PendingDeprecationError(UserWarning):
    """A spelling that will become deprecated."""


__all__ = [
    "AuthError",
    "DeprecationError",
    "Error",
    "ExecutionError",
    "OutputExpiredError",
    "FunctionTimeoutError",
    "InputCancellation",
    "InvalidError",
    "NotFoundError",
    "PendingDeprecationError",
    "RemoteError",
    "TimeoutError",
]
