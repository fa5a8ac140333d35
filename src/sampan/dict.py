"""`modal.dict`: Modal's module path for `Dict`."""

from .sdk.objects import Dict

__all__ = ["Dict"]
