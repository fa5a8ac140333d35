"""Sampan: Modal-compatible web functions on your own machines.

`import sampan` (or `import modal` inside anything run by `sampan`) gives the same surface as
Modal's client for web functions. Importing it does no I/O and imports no web framework.
"""

from __future__ import annotations

import os as _os

from . import call_graph, exception, gpu
from .exception import Error
from .output import enable_output
from .sdk.app import App, Stub
from .sdk.calls import FunctionCall, Retries
from .sdk.functions import Cls, Function
from .sdk.image import Image
from .sdk.objects import Dict, Queue
from .sdk.partial import (
    asgi_app,
    batched,
    concurrent,
    enter,
    exit,
    fastapi_endpoint,
    method,
    parameter,
    web_endpoint,
    web_server,
    wsgi_app,
)
from .sdk.schedule import Cron, Period
from .sdk.secret import Secret
from .sdk.volume import Volume

__version__ = "0.1.0"


def is_local() -> bool:
    """False inside a Sampan container, True everywhere else."""
    return _os.environ.get("MODAL_IS_REMOTE") != "1"


def current_function_call_id() -> str | None:
    """The id of the request being handled, inside a container (None elsewhere)."""
    from .runtime.context import current_call_id

    return current_call_id()


def current_input_id() -> str | None:
    return current_function_call_id()


__all__ = [
    "App",
    "Cls",
    "Cron",
    "Dict",
    "Error",
    "Function",
    "FunctionCall",
    "Image",
    "Period",
    "Queue",
    "Retries",
    "Secret",
    "Stub",
    "Volume",
    "__version__",
    "asgi_app",
    "batched",
    "call_graph",
    "concurrent",
    "current_function_call_id",
    "current_input_id",
    "enable_output",
    "enter",
    "exception",
    "exit",
    "fastapi_endpoint",
    "gpu",
    "is_local",
    "method",
    "parameter",
    "web_endpoint",
    "web_server",
    "wsgi_app",
]
