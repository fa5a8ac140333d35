"""`modal.types` (1.5.2+): `InputInfo` and `InputStatus`, what `FunctionCall.get_call_graph()` returns;
`ServerSessionCredentials`, what `Server.sessions.start()` returns."""

from .sdk.calls import FunctionAutoscalerSettings, InputInfo, InputStatus
from .sdk.logs import LogEntry, LogSource
from .sdk.server import ServerSessionCredentials

__all__ = ["FunctionAutoscalerSettings", "InputInfo", "InputStatus", "LogEntry", "LogSource",
           "ServerSessionCredentials"]
