"""Sampan: Modal-compatible web functions on your own machines.

`import sampan` (or `import modal` inside anything run by `sampan`) gives the same surface as
Modal's client for web functions. Importing it does no I/O and imports no web framework.
"""

from __future__ import annotations

import os as _os

from . import (  # noqa: F401 - modal.X module attributes
    call_graph,
    config,
    container_process,
    exception,
    experimental,
    file_io,
    gpu,
    io_streams,
    stream_type,
)
from ._tunnel import Tunnel, forward
from .callcontext import current_call_id as _current_call_id
from .client import Client
from .cloud_bucket_mount import CloudBucketMount
from .exception import Error
from .exception import InvalidError as _InvalidError
from .file_pattern_matcher import FilePatternMatcher
from .mount import Mount
from .network_file_system import NetworkFileSystem
from .output import enable_output
from .proxy import Proxy
from .sandbox import Probe, Sandbox, SandboxSnapshot
from .scheduler_placement import SchedulerPlacement
from .sdk.app import App, Stub
from .sdk.calls import FunctionCall, Retries
from .sdk.functions import Cls, Function
from .sdk.image import Image
from .sdk.objects import Dict, Queue
from .sdk.partial import (
    asgi_app,
    batched,
    build,
    clustered,
    concurrent,
    enter,
    exit,
    fastapi_endpoint,
    method,
    parameter,
    sessioned,
    web_endpoint,
    web_server,
    wsgi_app,
)
from .sdk.schedule import Cron, Period
from .sdk.secret import Secret
from .sdk.server import Server
from .sdk.volume import Volume

__version__ = "0.1.0"


def is_local() -> bool:
    """False inside a Sampan container, True everywhere else."""
    return _os.environ.get("MODAL_IS_REMOTE") != "1"


def current_function_call_id() -> str | None:
    """The id of the request being handled, inside a container (None elsewhere)."""
    return _current_call_id()


def current_input_id() -> str | None:
    return current_function_call_id()


def interact() -> None:
    """Modal opens a shell back to `modal run -i`; Sampan has no interactive mode (use a local
    entrypoint, or `breakpoint()` under `sampan run` with SAMPAN_FORK=0)."""
    if is_local():
        raise _InvalidError("Interactivity only works inside a Modal Function's container.")
    raise _InvalidError("Cannot use modal.interact() without running Modal in interactive mode.")


__all__ = [
    "App",
    "Client",
    "CloudBucketMount",
    "Cls",
    "Cron",
    "Dict",
    "Error",
    "FilePatternMatcher",
    "Function",
    "FunctionCall",
    "Image",
    "Mount",
    "NetworkFileSystem",
    "Period",
    "Probe",
    "Proxy",
    "Queue",
    "Retries",
    "Sandbox",
    "SandboxSnapshot",
    "SchedulerPlacement",
    "Secret",
    "Server",
    "Stub",
    "Tunnel",
    "Volume",
    "__version__",
    "asgi_app",
    "batched",
    "build",
    "clustered",
    "concurrent",
    "current_function_call_id",
    "current_input_id",
    "enable_output",
    "enter",
    "exception",
    "exit",
    "fastapi_endpoint",
    "forward",
    "interact",
    "is_local",
    "method",
    "parameter",
    "sessioned",
    "web_endpoint",
    "web_server",
    "wsgi_app",
]
