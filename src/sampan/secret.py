"""`modal.secret`: Modal's module path for `Secret`."""

from .sdk.secret import Secret

__all__ = ["Secret"]
