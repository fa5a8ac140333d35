"""`modal.retries`: Modal's module path for `Retries`."""

from .sdk.calls import Retries

__all__ = ["Retries"]
