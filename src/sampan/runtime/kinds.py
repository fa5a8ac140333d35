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


def call_app(target: Callable[..., Any], is_generator: bool, max_inputs: int) -> Any:
    """A function called with `.remote()`, `.spawn()` or `.map()`, as a small raw ASGI app.

    The server POSTs `cloudpickle((args, kwargs))`. The answer is one byte that says what follows,
    so that the server can tell success from failure without unpickling what user code made:
    `O` + pickle(value), or `E` + pickle((exception or None, traceback text, repr)). A generator
    answers with frames (4-byte length, then `I` + pickle(item)), closed by a `Z` frame (the end)
    or an `E` frame. Sync functions run in a thread pool as wide as
    `max_inputs`, with the request's context (so `modal.current_function_call_id()` works there).
    """
    import concurrent.futures
    import contextvars
    import functools
    import inspect
    import traceback

    import cloudpickle

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, max_inputs), thread_name_prefix="sampan-input")
    done = object()

    def failure(exc: BaseException) -> tuple[Any, ...]:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            cloudpickle.dumps(exc)
            sendable: BaseException | None = exc
        except Exception:  # noqa: BLE001 - an exception that cannot travel is sent as text
            sendable = None
        return (sendable, text, repr(exc))

    async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(ctx.run, fn, *args))

    def frame(marker: bytes, data: bytes) -> bytes:
        return (len(data) + 1).to_bytes(4, "big") + marker + data

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    pool.shutdown(wait=False)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        args, kwargs = cloudpickle.loads(bytes(body))
        if not is_generator:
            try:
                if inspect.iscoroutinefunction(target):
                    value = await target(*args, **kwargs)
                else:
                    value = await in_thread(functools.partial(target, *args, **kwargs))
                    if inspect.isawaitable(value):
                        value = await value
                data = b"O" + cloudpickle.dumps(value)
            except Exception as exc:  # noqa: BLE001 - the caller re-raises it (and one that cannot be pickled)
                data = b"E" + cloudpickle.dumps(failure(exc))
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/x-sampan-pickle"),
                                    (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/x-sampan-frames")]})
        try:
            gen = target(*args, **kwargs)
            if inspect.isasyncgen(gen):
                async for item in gen:
                    body = frame(b"I", cloudpickle.dumps(item))
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            else:
                while (item := await in_thread(next, gen, done)) is not done:
                    body = frame(b"I", cloudpickle.dumps(item))
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            last = frame(b"Z", b"")
        except Exception as exc:  # noqa: BLE001 - the caller re-raises it after the items it got
            last = frame(b"E", cloudpickle.dumps(failure(exc)))
        await send({"type": "http.response.body", "body": last})

    return app
