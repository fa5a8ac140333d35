"""The control API: JSON over HTTP, what the CLI, the SDK and containers talk to.

    server.py      the listener: one request per connection, authenticated, routed, answered
    routes.py      the route table (every route, with its body)
    router.py      matching a route, the request a handler gets, exception -> status
    auth.py        tokens -> the caller's workspace; the server's credentials
    wire.py        answers as bytes: JSON, NDJSON and text streams
    apps.py, calls.py, containers.py, objects.py, accounts.py, images.py: one module per resource

The one client is sampan/api.py.
"""

from __future__ import annotations

from .auth import Credentials
from .containers import container_pid
from .routes import ROUTES
from .server import EPHEMERAL_TIMEOUT_S, ControlServer

__all__ = ["EPHEMERAL_TIMEOUT_S", "ROUTES", "ControlServer", "Credentials", "container_pid"]
