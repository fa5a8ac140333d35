"""`modal.container_process.ContainerProcess`: a process started by `Sandbox.exec` (not built yet)."""

from ._not_built import NotBuilt


class ContainerProcess(NotBuilt):
    _name = "container_process.ContainerProcess"
    _issue = "it comes with modal.Sandbox"


__all__ = ["ContainerProcess"]
