"""`modal.cls`: Modal's module path for `Cls` and `parameter`."""

from .sdk.functions import Cls
from .sdk.partial import parameter

__all__ = ["Cls", "parameter"]
