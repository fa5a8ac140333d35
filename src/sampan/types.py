"""`modal.types` (1.5.2+): `InputInfo` and `InputStatus`, what `FunctionCall.get_call_graph()` returns."""

from .sdk.calls import InputInfo, InputStatus

__all__ = ["InputInfo", "InputStatus"]
