"""`modal.volume`: Modal's module path for `Volume`."""

from .sdk.volume import Volume

__all__ = ["Volume"]
