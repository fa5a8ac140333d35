"""Routes of function calls (server/invoke.py): `.remote()`, `.remote_gen()`, `.spawn()`, a spawned
call's result and cancellation, and `update_autoscaler`."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import TYPE_CHECKING, Any

from ...exception import InvalidError, NotFoundError
from .containers import stream_logs
from .router import WRITTEN, Request
from .wire import LAST_CHUNK, NDJSON, chunk, json_response, stream_head, write_result

MAX_MAP_BATCH = 1000  # inputs of one `.map` request (the SDK sends batches of MAP_BATCH)

if TYPE_CHECKING:
    from .server import ControlServer

AUTOSCALER_SETTINGS = {"min_containers", "max_containers", "buffer_containers", "scaledown_window", "target_inputs"}


def callable_endpoint(control: ControlServer, ws: Any, body: dict[str, Any]) -> Any:
    """The function endpoint a call names: by app key (ephemeral apps, from inside), else by name."""
    tag = body["function"]
    apps = control.server.apps
    version = apps.get(body.get("app_key") or "")
    if version is not None and version.workspace != ws.name:
        version = None
    name = body.get("app")
    if version is None and name:
        version = apps.get(control.app_key(ws, name)) or next(
            (v for v in apps.values() if v.workspace == ws.name and v.manifest.app_name == name), None)
    if version is None:
        raise NotFoundError(f"App '{name}' is not running in workspace '{ws.name}'.")
    endpoint = version.callables.get(tag)
    if endpoint is None:
        if tag in version.web_urls:
            raise InvalidError(
                f"A webhook function cannot be invoked for remote execution with `.remote`. Invoke this "
                f"function via its web url '{version.web_urls[tag]}' or call it locally: {tag}.local()")
        raise NotFoundError(f"Function '{tag}' not found in app '{name or version.manifest.app_name}'.")
    return endpoint


def any_endpoint(control: ControlServer, ws: Any, body: dict[str, Any]) -> Any:
    """A function of the workspace's app by tag: called with `.remote()`, or a web function."""
    try:
        return callable_endpoint(control, ws, body)
    except InvalidError:  # a web function: found among the version's web endpoints
        apps = control.server.apps
        version = apps.get(body.get("app_key") or "") or apps.get(control.app_key(ws, body.get("app") or ""))
        for endpoint in version.endpoints.values() if version is not None else ():
            if endpoint.tag == body["function"]:
                return endpoint
        raise


async def call(control: ControlServer, req: Request) -> Any:
    ws, body, writer = req.workspace, req.json, req.writer
    variant = body.get("variant") or None  # `.with_options(...)`: a pool of its own (manifest.apply_variant)
    endpoint = callable_endpoint(control, ws, body).variant(variant)
    params = body.get("params") or {}
    endpoint.pool_for_params(params)  # bad class parameters fail here, before anything runs
    mode = body.get("mode") or "call"
    if mode == "map":
        return await _map(control, req, endpoint, variant, params)
    payload = base64.b64decode(body["args"])

    def pool_for() -> Any:
        return callable_endpoint(control, ws, body).variant(variant).pool_for_params(params)

    invoker = control.invoker
    if mode == "spawn":
        call_id = invoker.spawn(ws.name, endpoint.tag, pool_for, payload, endpoint.entry.retries,
                                body.get("parent"), body.get("parent_function"))
        return {"call_id": call_id}
    if mode == "gen":
        writer.write(stream_head(NDJSON))
        async for frame in invoker.stream(pool_for(), payload):
            writer.write(chunk(json.dumps({"frame": base64.b64encode(frame).decode()}).encode() + b"\n"))
            await writer.drain()
        writer.write(LAST_CHUNK)
        return WRITTEN
    record = invoker.child(body.get("parent"), ws.name, endpoint.tag, body.get("parent_function"))
    outcome = await invoker.run(pool_for, payload, endpoint.entry.retries, record=record)
    await write_result(writer, outcome)
    return WRITTEN


def _spawned(control: ControlServer, req: Request) -> Any:
    found = control.invoker.calls.get(req.params["id"])
    if found is None or found.workspace != req.workspace.name:
        raise NotFoundError(f"Function call {req.params['id']} not found (or its result was already dropped).")
    return found


async def result(control: ControlServer, req: Request) -> Any:
    spawned = _spawned(control, req)
    raw = req.query.get("timeout")
    timeout = float(raw) if raw not in (None, "", "none") else None
    await control.invoker.get(spawned.id, timeout)
    extra = {"status": spawned.status, "function": spawned.function, "expired": spawned.expired,
             "graph": spawned.root().graph()}
    if spawned.outcome is None:
        req.writer.write(json_response(200, {"result": None, **extra}))
    else:
        await write_result(req.writer, spawned.outcome, extra)
    return WRITTEN


async def logs(control: ControlServer, req: Request) -> Any:
    """`FunctionCall.logs`: the lines its containers printed while running it (server/logs.py tags them)."""
    spawned = _spawned(control, req)
    ids = control.server.logs.containers_of_workspace(req.workspace.name)
    await stream_logs(control.server.logs, ids, {**req.query, "function_call": spawned.id}, req.writer)
    return WRITTEN


async def _map(control: ControlServer, req: Request, endpoint: Any, variant: Any, params: dict[str, Any]) -> Any:
    """A batch of a `.map`'s inputs in one request (Invoker.run_map: a quick function's inputs go to
    containers in batches, others run as calls do), each outcome streamed back, as NDJSON
    `{"i", "result"}`, as it ends. A client that goes away cancels the inputs still running."""
    ws, body, writer = req.workspace, req.json, req.writer
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(p, str) for p in inputs) or len(inputs) > MAX_MAP_BATCH:
        raise InvalidError(f"`inputs` must be a list of at most {MAX_MAP_BATCH} encoded inputs")
    payloads = [base64.b64decode(p) for p in inputs]

    def pool_for() -> Any:
        return callable_endpoint(control, ws, body).variant(variant).pool_for_params(params)

    invoker, done = control.invoker, asyncio.Queue()  # type: ignore[var-annotated]
    records = [invoker.child(body.get("parent"), ws.name, endpoint.tag, body.get("parent_function"))
               for _ in payloads]
    entry = endpoint.entry
    batchable = not entry.is_generator and not entry.batch  # a @modal.batched function batches by itself
    runner = asyncio.create_task(invoker.run_map(pool_for, payloads, entry.retries, records,
                                                 lambda i, outcome: done.put_nowait((i, outcome)), batchable))
    writer.write(stream_head(NDJSON))
    try:
        left = len(payloads)
        while left:
            getter = asyncio.ensure_future(done.get())
            await asyncio.wait({getter, runner}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():  # the runner ended without every outcome: a bug, not a hang
                getter.cancel()
                runner.result()
                raise RuntimeError("a .map batch ended without every outcome")
            ready = [getter.result()]
            while not done.empty():  # a batch's outcomes come together: one chunk, one write
                ready.append(done.get_nowait())
            left -= len(ready)
            writer.write(chunk(b"".join(json.dumps({"i": i, "result": base64.b64encode(outcome).decode()}).encode()
                                        + b"\n" for i, outcome in ready)))
            await writer.drain()
    finally:
        runner.cancel()
    writer.write(LAST_CHUNK)
    return WRITTEN


async def cancel(control: ControlServer, req: Request) -> Any:
    control.invoker.cancel(_spawned(control, req).id)
    return {"status": "cancelled"}


async def autoscaler(control: ControlServer, req: Request) -> Any:
    endpoint = any_endpoint(control, req.workspace, req.json)
    settings = req.json.get("settings") or {}
    unknown = set(settings) - AUTOSCALER_SETTINGS
    if unknown:
        raise InvalidError(f"Unknown autoscaler settings: {', '.join(sorted(unknown))}")
    try:
        return endpoint.update_autoscaler(**settings)
    except ValueError as exc:
        raise InvalidError(str(exc)) from None

