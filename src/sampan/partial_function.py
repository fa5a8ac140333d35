"""`modal.partial_function`: Modal's module path for the function decorators."""

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
    sessioned,
    web_endpoint,
    web_server,
    wsgi_app,
)

__all__ = ["asgi_app", "batched", "build", "clustered", "concurrent", "enter", "exit", "fastapi_endpoint",
           "method", "sessioned", "web_endpoint", "web_server", "wsgi_app"]
