"""`modal.image`: Modal's module path for `Image`."""

from .sdk.image import Image

__all__ = ["Image"]
