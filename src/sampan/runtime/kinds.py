"""Turn a web function into something servable, one builder per kind (fact sheet §8).

    fastapi_endpoint -> a FastAPI app with one route `/` for the declared method, CORS open
    asgi_app         -> whatever the user's factory returns
    wsgi_app         -> the factory's WSGI app inside a2wsgi's thread pool
    web_server       -> nothing to wrap: call the function, wait for its port, report the port
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Callable
from typing import Any

from .. import callwire
from ..callcontext import set_call_id
from ..callwire import frame
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


class Batcher:
    """`@modal.batched`: inputs that arrive while a batch gathers (up to `max_batch_size`, or for
    `wait_ms` after the first) go to the function once, each parameter as a list; result `i` answers
    input `i`, and an exception fails the whole batch (Modal's texts for a malformed batch)."""

    def __init__(self, fn: Callable[..., Any], max_batch_size: int, wait_ms: int,
                 run: Callable[..., Any]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", repr(fn))
        self.max = max_batch_size
        self.wait = wait_ms / 1000
        self.run = run  # awaits fn(**lists): in a thread for a sync function
        self.params = [p.name for p in inspect.signature(fn).parameters.values() if p.name != "self"]
        self.pending: list[tuple[dict[str, Any], asyncio.Future[Any]]] = []
        self.timer: asyncio.TimerHandle | None = None

    def _keywords(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if len(args) > len(self.params):
            raise InvalidBatch(f"Modal batched function {self.name} takes {len(self.params)} positional arguments, "
                               f"but one invocation in the batch has {len(args)}.")
        out = dict(zip(self.params, args, strict=False))
        for key, value in kwargs.items():
            if key not in self.params:
                raise InvalidBatch(f"Modal batched function {self.name} got unexpected keyword argument {key} in "
                                   "one invocation in the batch.")
            if key in out:
                raise InvalidBatch(f"Modal batched function {self.name} got multiple values for argument {key} "
                                   "in one invocation in the batch.")
            out[key] = value
        return out

    async def submit(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.pending.append((self._keywords(args, kwargs), future))
        if len(self.pending) >= self.max:
            self._flush()
        elif self.timer is None:
            self.timer = loop.call_later(self.wait, self._flush)
        return await future

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending = self.pending[:self.max], self.pending[self.max:]
        if self.pending:  # more arrived than one batch holds: the rest start the next
            self.timer = asyncio.get_running_loop().call_later(self.wait, self._flush)
        if batch:
            asyncio.ensure_future(self._call(batch))

    async def _call(self, batch: list[tuple[dict[str, Any], asyncio.Future[Any]]]) -> None:
        lists = {name: [kw.get(name) for kw, _ in batch] for name in self.params}
        try:
            results = await self.run(self.fn, lists)
            if not isinstance(results, list):
                raise InvalidBatch(f"Output of batched function {self.name} must be a list.")
            if len(results) != len(batch):
                raise InvalidBatch(f"Output of batched function {self.name} must be a list of equal length as its "
                                   "inputs.")
        except Exception as exc:  # noqa: BLE001 - every input of the batch gets it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), value in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(value)


def failure(exc: BaseException) -> tuple[Any, ...]:
    """What an `E` outcome carries: the exception (None when it cannot be pickled), its traceback text, its repr."""
    import traceback

    import cloudpickle

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        cloudpickle.dumps(exc)
        sendable: BaseException | None = exc
    except Exception:  # noqa: BLE001 - an exception that cannot travel is sent as text
        sendable = None
    return (sendable, text, repr(exc))


def outcome_of(value: Any) -> bytes:
    import cloudpickle

    return callwire.VALUE + cloudpickle.dumps(value)


def failure_of(exc: BaseException) -> bytes:
    import cloudpickle

    return callwire.FAILURE + cloudpickle.dumps(failure(exc))


def run_input(target: Callable[..., Any], call_id: str, payload: bytes, loop: asyncio.AbstractEventLoop,
              wait: Callable[[Any], Any] | None = None) -> bytes:
    """One input of a function, run in the calling thread (not the loop's): its outcome. A coroutine the
    function returns (an async function's) runs on the container's loop, under the input's call id;
    `wait(future)` waits for it (by default, without limit)."""
    import cloudpickle

    set_call_id(call_id)
    try:
        args, kwargs = cloudpickle.loads(payload)
        value = target(*args, **kwargs)
        if inspect.isawaitable(value):
            future = asyncio.run_coroutine_threadsafe(_with_call_id(call_id, value), loop)
            value = wait(future) if wait is not None else future.result()
        return outcome_of(value)
    except Exception as exc:  # noqa: BLE001 - this input's caller re-raises it (and one that cannot be pickled)
        return failure_of(exc)


async def _with_call_id(call_id: str, value: Any) -> Any:
    set_call_id(call_id)  # the loop runs this in a context of its own: the input's id goes with it
    return await value


class InvalidBatch(Exception):
    """A batched function's inputs or outputs do not fit (raised to the callers as Modal's InvalidError)."""


def call_app(target: Callable[..., Any], is_generator: bool, max_inputs: int,
             batch: dict[str, int] | None = None) -> Any:
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

    import cloudpickle

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, max_inputs), thread_name_prefix="sampan-input")
    done = object()

    async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(ctx.run, fn, *args))

    async def run_batch(fn: Callable[..., Any], lists: dict[str, list[Any]]) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(**lists)
        return await in_thread(functools.partial(fn, **lists))

    batcher = Batcher(target, batch["max_batch_size"], batch["wait_ms"], run_batch) if batch else None

    def inputs_in_thread(items: list[tuple[str, bytes]], loop: asyncio.AbstractEventLoop) -> tuple[bytes, float]:
        """A batch of a sync function's inputs, one after the other, in one thread hop (server/mapbatch.py);
        with the seconds they took (from the thread: the wait for a free thread is not the function's)."""
        started = time.perf_counter()
        out = [callwire.outcome_frame(run_input(target, call_id, payload, loop)) for call_id, payload in items]
        return b"".join(out), time.perf_counter() - started

    async def run_inputs(items: list[tuple[str, bytes]]) -> tuple[bytes, float]:
        if not inspect.iscoroutinefunction(target):
            return await in_thread(inputs_in_thread, items, asyncio.get_running_loop())
        started = time.perf_counter()
        out = []
        for call_id, payload in items:
            set_call_id(call_id)
            try:
                args, kwargs = cloudpickle.loads(payload)
                out.append(callwire.outcome_frame(outcome_of(await target(*args, **kwargs))))
            except Exception as exc:  # noqa: BLE001 - this input's caller re-raises it
                out.append(callwire.outcome_frame(failure_of(exc)))
        return b"".join(out), time.perf_counter() - started

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
        if not is_generator and batcher is None and (b"content-type", callwire.CONTENT_BATCH) in scope["headers"]:
            data, seconds = await run_inputs(callwire.split_batch(bytes(body)))
            data += callwire.frame(callwire.TIMING, b"%.9f" % seconds)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", callwire.CONTENT_FRAMES),
                                    (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})
            return
        args, kwargs = cloudpickle.loads(bytes(body))
        if not is_generator:
            try:
                if batcher is not None:
                    try:
                        value = await batcher.submit(tuple(args), dict(kwargs))
                    except InvalidBatch as exc:
                        raise InvalidError(str(exc)) from None
                elif inspect.iscoroutinefunction(target):
                    value = await target(*args, **kwargs)
                else:
                    value = await in_thread(functools.partial(target, *args, **kwargs))
                    if inspect.isawaitable(value):
                        value = await value
                data = callwire.VALUE + cloudpickle.dumps(value)
            except Exception as exc:  # noqa: BLE001 - the caller re-raises it (and one that cannot be pickled)
                data = callwire.FAILURE + cloudpickle.dumps(failure(exc))
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", callwire.CONTENT_VALUE),
                                    (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", callwire.CONTENT_FRAMES)]})
        try:
            gen = target(*args, **kwargs)
            if inspect.isasyncgen(gen):
                async for item in gen:
                    body = frame(callwire.ITEM, cloudpickle.dumps(item))
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            else:
                while (item := await in_thread(next, gen, done)) is not done:
                    body = frame(callwire.ITEM, cloudpickle.dumps(item))
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            last = frame(callwire.END, b"")
        except Exception as exc:  # noqa: BLE001 - the caller re-raises it after the items it got
            last = frame(callwire.FAILURE, cloudpickle.dumps(failure(exc)))
        await send({"type": "http.response.body", "body": last})

    return app
