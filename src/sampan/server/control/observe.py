"""Routes of what runs: an app's request log (`sampan app requests`), its stats (`sampan app stats`),
`/metrics` in Prometheus's text format, and the dashboard's login link (`sampan dashboard`). Each
shows the caller's workspace only."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from ...exception import InvalidError, NotFoundError
from ..metrics import CONTENT_TYPE
from ..requests import parse_since, select
from .router import WRITTEN, Request
from .wire import LAST_CHUNK, NDJSON, chunk, response, stream_head

if TYPE_CHECKING:
    from .server import ControlServer

MAX_LINES = 10_000


def _app_key(control: ControlServer, req: Request) -> str:
    """The key of the caller's app of that name: deployed, else a `serve` session on this server."""
    ws, name = req.workspace, req.params["name"]
    for key in (control.app_key(ws, name), control.ephemeral_key(ws, name)):
        if key in control.server.apps or any(r.app == key for r in control.server.requests.records):
            return key
    if control.store is not None and control.store.app(ws, name) is not None:
        return control.app_key(ws, name)
    raise NotFoundError(f"App '{name}' not found in workspace '{ws.name}'.")


async def requests(control: ControlServer, req: Request) -> Any:
    key = _app_key(control, req)
    try:
        since = parse_since(req.query.get("since"), time.time())
    except ValueError:
        raise InvalidError(f"Invalid --since: {req.query.get('since')!r} (e.g. 10m, 2h, 1d)") from None
    status = req.query.get("status") or None
    n = min(int(req.query["n"]), MAX_LINES) if req.query.get("n", "").isdigit() else MAX_LINES
    log = control.server.requests
    found = select(log.records, workspace=req.workspace.name, app=key, status=status, since=since)
    req.writer.write(stream_head(NDJSON))
    for record in found[-n:]:
        req.writer.write(chunk(json.dumps(record.to_json()).encode() + b"\n"))
    await req.writer.drain()
    if req.query.get("follow") in ("1", "true"):
        queue = log.follow()
        try:
            while key in control.server.apps:
                record = await queue.get()
                if select([record], workspace=req.workspace.name, app=key, status=status):
                    req.writer.write(chunk(json.dumps(record.to_json()).encode() + b"\n"))
                    await req.writer.drain()
        finally:
            log.unfollow(queue)
    req.writer.write(LAST_CHUNK)
    return WRITTEN


async def stats(control: ControlServer, req: Request) -> Any:
    key = _app_key(control, req)
    return {"app": req.params["name"], "functions": control.server.metrics.stats(req.workspace.name, key)}


async def metrics(control: ControlServer, req: Request) -> Any:
    req.writer.write(response(200, control.server.metrics.exposition(req.workspace.name), CONTENT_TYPE))
    return WRITTEN


async def dashboard_login(control: ControlServer, req: Request) -> Any:
    """A link that opens a dashboard session of the caller's workspace, once, within a minute."""
    code = control.dashboard.sessions.login_code(req.workspace.name)
    return {"url": f"{control.url}/dashboard/login?code={code}", "dashboard": f"{control.url}/dashboard/"}
