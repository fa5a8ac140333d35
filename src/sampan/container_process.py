"""`modal.container_process.ContainerProcess`: a process started by `Sandbox.exec` (sdk/sandbox_io.py)."""

from .sdk.sandbox_io import ContainerProcess

__all__ = ["ContainerProcess"]
