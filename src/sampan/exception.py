"""Sampan's exceptions, named and shaped like Modal's so that user code catching them keeps working.

    Error                      base of everything Sampan raises on purpose
    ├── InvalidError           a wrong decorator use, keyword or value (caught before anything runs)
    ├── ExecutionError         something failed while running (a container, the server)
    ├── NotFoundError          a named object (secret, app, function) does not exist
    ├── AuthError              a missing or wrong credential
    ├── RemoteError            a remote call failed and its exception could not be sent back
    └── TimeoutError           base of the timeouts (not the built-in TimeoutError, as in Modal)
        └── FunctionTimeoutError   a call ran past its function's `timeout`

`InputCancellation` (a cancelled input) is a `BaseException`, as Modal made it, so that a bare
`except Exception:` in user code (retry loops) does not swallow a cancellation. `FunctionCall.get(timeout=)`
with no result yet raises the *built-in* `TimeoutError`, which is what Modal's polling examples catch.

`DeprecationError` is a warning category, not an error: Modal made it a `UserWarning`
so that legacy spellings can warn and keep working. The rest of Modal 1.6's `modal.exception` is
below them (AlreadyExistsError, ResourceExhaustedError, the Sandbox and filesystem errors, ...),
so that code catching any of them imports and works.
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


class RemoteError(Error):
    """A remote call failed in a way that cannot be re-raised as the original exception."""


class InputCancellation(BaseException):
    """The call was cancelled (`FunctionCall.cancel()`); a BaseException so `except Exception` lets it by."""


class TimeoutError(Error):  # noqa: A001 - Modal's name
    """Something took longer than allowed."""


class FunctionTimeoutError(TimeoutError):
    """A call ran past its function's `timeout`."""


class OutputExpiredError(TimeoutError):
    """A spawned call's result is no longer kept (the server bounds what it holds)."""


class DeprecationError(UserWarning):
    """A legacy spelling: it still works, and the message names the new one."""


class PendingDeprecationError(UserWarning):
    """A spelling that will become deprecated."""

# The rest of Modal's `modal.exception` (1.6), so that code catching them imports and works.
class AlreadyExistsError(Error):
    """A named object of that name exists already."""


class ConflictError(InvalidError):
    """The object is not in a state that allows this."""


class DataLossError(Error):
    pass


class InternalError(Error):
    pass


class PermissionDeniedError(Error):
    pass


class ResourceExhaustedError(Error):
    """No room: a cap on containers, or the server's capacity."""


class ServiceError(Error):
    pass


class UnimplementedError(Error):
    pass


class ImageBuildError(RemoteError):
    def __init__(self, message: str = "", image_id: str | None = None) -> None:
        super().__init__(message)
        self.image_id = image_id


class WorkspaceManagementError(Error):
    pass


class LogsFetchError(Error):
    pass


class SandboxTimeoutError(TimeoutError):
    """A Sandbox ran past its `timeout`."""


class ExecTimeoutError(TimeoutError):
    pass


class MountUploadTimeoutError(TimeoutError):
    pass


class VolumeUploadTimeoutError(TimeoutError):
    pass


class InteractiveTimeoutError(TimeoutError):
    pass


class SandboxTerminatedError(Error):
    """A Sandbox was terminated (by `terminate()`, its idle timeout, or the platform)."""


class SnapshotCreationError(Error):
    pass


class ConnectionError(Error):  # noqa: A001 - Modal's name
    pass


class VersionError(Error):
    pass


class DeserializationError(Error):
    pass


class SerializationError(Error):
    pass


class RequestSizeError(Error):
    pass


class InternalFailure(Error):
    pass


class ClientClosed(Error):
    pass


class SandboxFilesystemError(Error):
    """A `Sandbox.filesystem` operation failed."""


class SandboxFilesystemNotFoundError(SandboxFilesystemError):
    pass


class SandboxFilesystemDirectoryNotEmptyError(SandboxFilesystemError):
    pass


class SandboxFilesystemIsADirectoryError(SandboxFilesystemError):
    pass


class SandboxFilesystemNotADirectoryError(SandboxFilesystemError):
    pass


class SandboxFilesystemPermissionError(SandboxFilesystemError):
    pass


class SandboxFilesystemFileTooLargeError(SandboxFilesystemError):
    pass


class SandboxFilesystemPathAlreadyExistsError(SandboxFilesystemError):
    pass


class ModuleNotMountable(Exception):
    pass


class ServerWarning(UserWarning):
    pass


class AsyncUsageWarning(UserWarning):
    pass


class InternalAPIWarning(UserWarning):
    pass


def simulate_preemption(wait_seconds: int, jitter_seconds: int = 0) -> None:
    """Modal's test helper: SIGINT this process after `wait_seconds` (plus up to `jitter_seconds`)."""
    import random
    import signal

    if wait_seconds <= 0:
        raise ValueError("Time to wait must be greater than 0")
    signal.signal(signal.SIGALRM, lambda *_: signal.raise_signal(signal.SIGINT))
    signal.alarm(int(wait_seconds + random.randint(0, max(0, jitter_seconds))))


__all__ = [
    "AlreadyExistsError",
    "AsyncUsageWarning",
    "AuthError",
    "ClientClosed",
    "ConflictError",
    "ConnectionError",
    "DataLossError",
    "DeprecationError",
    "DeserializationError",
    "Error",
    "ExecTimeoutError",
    "ExecutionError",
    "FunctionTimeoutError",
    "ImageBuildError",
    "InputCancellation",
    "InteractiveTimeoutError",
    "InternalAPIWarning",
    "InternalError",
    "InternalFailure",
    "InvalidError",
    "LogsFetchError",
    "ModuleNotMountable",
    "MountUploadTimeoutError",
    "NotFoundError",
    "OutputExpiredError",
    "PendingDeprecationError",
    "PermissionDeniedError",
    "RemoteError",
    "RequestSizeError",
    "ResourceExhaustedError",
    "SandboxFilesystemDirectoryNotEmptyError",
    "SandboxFilesystemError",
    "SandboxFilesystemFileTooLargeError",
    "SandboxFilesystemIsADirectoryError",
    "SandboxFilesystemNotADirectoryError",
    "SandboxFilesystemNotFoundError",
    "SandboxFilesystemPathAlreadyExistsError",
    "SandboxFilesystemPermissionError",
    "SandboxTerminatedError",
    "SandboxTimeoutError",
    "SerializationError",
    "ServerWarning",
    "ServiceError",
    "SnapshotCreationError",
    "TimeoutError",
    "UnimplementedError",
    "VersionError",
    "VolumeUploadTimeoutError",
    "WorkspaceManagementError",
    "simulate_preemption",
]
