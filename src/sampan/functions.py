"""`modal.functions`: Modal's module path for `Function`, `FunctionCall` and `gather`."""

from __future__ import annotations

from typing import Any

from ._deprecation import deprecation_warning
from .sdk.calls import FunctionCall
from .sdk.functions import Function


def gather(*function_calls: FunctionCall) -> list[Any]:
    """The results of `function_calls`, in order (removed from Modal in 1.4.0; warns as 0.73-1.3 did)."""
    deprecation_warning((2025, 2, 24), "`modal.functions.gather()` is deprecated; please use "
                                       "`modal.FunctionCall.gather()` instead.")
    return FunctionCall.gather(*function_calls)


__all__ = ["Function", "FunctionCall", "gather"]
