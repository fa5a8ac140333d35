"""Turn a web function into something servable, one builder per kind (fact sheet §8).

    fastapi_endpoint -> a FastAPI app with one route `/` for the declared method, CORS open
    asgi_app         -> whatever the user's factory returns
    wsgi_app         -> the factory's WSGI app inside a2wsgi's thread pool
    web_server       -> nothing to wrap: call the function, wait for its port, report the port
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

from ..exception import InvalidError

FASTAPI_MISSING = (
    "Modal functions decorated with `fastapi_endpoint` require FastAPI to be installed in the modal.Image. "
    "Please update your Image definition code, e.g. with `.pip_install(\"fastapi[standard]\")`."
)


def fastapi_endpoint_app(handler: Callable[..., Any], method: str, docs: bool) -> Any:
    try:
        from fastapi import FastAPI
        from fastapi.middleware.cors import CORSMiddleware
    except ImportError:
        raise InvalidError(FASTAPI_MISSING) from None
    app = FastAPI(
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_credentials=True, allow_methods=["*"], allow_headers=["*"]
    )
    app.add_api_route("/", handler, methods=[method])
    return app


def wsgi_asgi_app(wsgi_app: Any, max_inputs: int) -> Any:
    from a2wsgi import WSGIMiddleware

    # One worker thread per concurrent input the container may take (Modal uses a large pool).
    return WSGIMiddleware(wsgi_app, workers=max(10, max_inputs))


def port_timeout_message(port: int) -> str:
    return (
        f"Waited too long for port {port} to start accepting connections. Make sure the web server is bound to "
        "0.0.0.0 (rather than localhost or 127.0.0.1), or adjust `startup_timeout`."
    )


async def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> None:
    """Poll until something accepts TCP connections on `port`, or raise Modal's TimeoutError."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
            writer.close()
            return
        except (OSError, asyncio.TimeoutError):
            if time.monotonic() >= deadline:
                raise TimeoutError(port_timeout_message(port)) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)


def port_is_free(port: int, host: str = "0.0.0.0") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
