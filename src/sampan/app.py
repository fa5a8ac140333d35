"""`modal.app`: Modal's module path for `App`."""

from .sdk.app import App, Stub

__all__ = ["App", "Stub"]
