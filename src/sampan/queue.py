"""`modal.queue`: Modal's module path for `Queue`."""

from .sdk.objects import Queue

__all__ = ["Queue"]
