"""`modal.exception` has Modal's class tree (fact sheet modal-surface.md, "modal.exception"): code that
catches a base class catches what Modal's would, and nothing more."""

from __future__ import annotations

import builtins

import pytest

from sampan import exception

# Each class with the base Modal gives it.
BASES = {
    "AlreadyExistsError": "Error", "AuthError": "Error", "ConflictError": "InvalidError",
    "DataLossError": "Error", "InternalError": "Error", "InvalidError": "Error", "NotFoundError": "Error",
    "PermissionDeniedError": "Error", "ResourceExhaustedError": "Error", "ServiceError": "Error",
    "UnimplementedError": "Error", "RemoteError": "Error", "ImageBuildError": "RemoteError",
    "WorkspaceManagementError": "Error", "LogsFetchError": "Error", "TimeoutError": "Error",
    "SandboxTimeoutError": "TimeoutError", "ExecTimeoutError": "TimeoutError",
    "FunctionTimeoutError": "TimeoutError", "MountUploadTimeoutError": "TimeoutError",
    "VolumeUploadTimeoutError": "TimeoutError", "InteractiveTimeoutError": "TimeoutError",
    "OutputExpiredError": "TimeoutError", "SandboxTerminatedError": "Error", "SnapshotCreationError": "Error",
    "ConnectionError": "Error", "VersionError": "Error", "ExecutionError": "Error",
    "DeserializationError": "Error", "SerializationError": "Error", "RequestSizeError": "Error",
    "InternalFailure": "Error", "ClientClosed": "Error", "SandboxFilesystemError": "Error",
    "SandboxFilesystemNotFoundError": "SandboxFilesystemError",
    "InputCancellation": "BaseException", "DeprecationError": "UserWarning",
}


@pytest.mark.parametrize(("name", "base"), sorted(BASES.items()))
def test_each_class_has_modals_base(name: str, base: str) -> None:
    cls = getattr(exception, name)
    parent = getattr(exception, base, None) or getattr(builtins, base)
    assert issubclass(cls, parent)


def test_modal_timeouts_are_not_the_builtin_timeout() -> None:
    """`except TimeoutError:` (the built-in) around `.remote()` does not catch a function's timeout in
    Modal; only `FunctionCall.get(timeout=)` raises the built-in one."""
    assert not issubclass(exception.FunctionTimeoutError, builtins.TimeoutError)
    assert not issubclass(exception.TimeoutError, builtins.TimeoutError)


def test_input_cancellation_passes_through_except_exception() -> None:
    with pytest.raises(exception.InputCancellation):
        try:
            raise exception.InputCancellation("cancelled")
        except Exception:  # noqa: BLE001 - what a user's retry loop writes
            pytest.fail("a cancellation was caught by `except Exception`")
