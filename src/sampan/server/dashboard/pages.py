"""The dashboard's pages: each handler reads what the control API would show the same workspace (often by
calling the API's own handler) and renders a Jinja2 template, autoescaped, so that no text of an app, a
log or a request can become markup. Charts are filled by static/dashboard.js from `series.json`
(uPlot); tables that change poll their fragment with htmx; a container's log arrives as server-sent
events and is added with `textContent`.

An app is named in URLs by its id: its name when deployed, `serve:<name>` for a `sampan serve` session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from ...exception import NotFoundError
from ..control import accounts, apps
from ..control.router import WRITTEN, Request, Route
from ..control.wire import HTTPError
from ..requests import select
from ..usage import human_size
from .answer import Page, json_page, redirect
from .series import WINDOW_S
from .sessions import Session

if TYPE_CHECKING:
    from ..control.server import ControlServer
    from .web import DashboardRequest

P = "/dashboard"
MAX_REQUEST_ROWS = 100
MAX_CALL_ROWS = 500
LOG_BACKLOG = 2_000
WINDOWS = ("300", "900", "3600")  # what the charts can show: the last 5 minutes, 15 minutes, hour
SSE_PING_S = 15.0
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_env: jinja2.Environment | None = None


def clean_line(text: str) -> str:
    """A log line as the page shows it: terminal escapes (colours, titles) and other control characters
    removed. Escaping for HTML is the template's and the browser's `textContent`, not this."""
    return _CONTROL.sub("", _ANSI.sub("", text))


def _ago(t: float | None) -> str:
    if not t:
        return "—"
    s = max(0.0, time.time() - t)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{int(s // size)}{unit} ago"
    return f"{int(s)}s ago"


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "—"


def env() -> jinja2.Environment:
    global _env
    if _env is None:
        _env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                  autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                                  lstrip_blocks=True)
        _env.filters.update(ago=_ago, when=_when, size=human_size)
    return _env


def render(template: str, session: Session, code: int = 200, **context: Any) -> Page:
    html = env().get_template(template).render(workspace=session.workspace, csrf=session.csrf, P=P, **context)
    return Page(code, html.encode())


def error_page(session: Session, code: int, message: str) -> Page:
    return render("error.html", session, code, status_code=code, message=message)


def login_page(target: str, error: str | None, status: int) -> Page:
    html = env().get_template("login.html").render(P=P, next=target, error=error)
    return Page(status, html.encode())


def _api(req: DashboardRequest, params: dict[str, str] | None = None, body: Any = None) -> Request:
    """The control API's request for the same workspace: pages reuse its handlers and their checks."""
    return Request(req.workspace, params or {}, {}, body, req.writer)


# -- apps -----------------------------------------------------------------------------------------
def _app_rows(control: ControlServer, ws: Any) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    if control.store is not None:
        for app in control.store.apps(ws):
            rows[app.name] = {"id": app.name, "name": app.name, "state": app.state, "version": app.current_version,
                              "created_at": app.created_at, "containers": 0, "endpoints": []}
    for key, version in control.server.apps.items():
        if version.workspace != ws.name:
            continue
        app_id = key.removeprefix(f"{ws.name}/")
        row = rows.setdefault(app_id, {"id": app_id, "name": version.manifest.app_name, "created_at": None,
                                       "state": "ephemeral", "version": version.number})
        row["containers"] = sum(len(p.containers) for e in version.all_endpoints() for p in e.pools.values())
        row["endpoints"] = [{"tag": i.tag, "url": i.url} for i in version.infos]
    for sandbox in control.server.sandboxes.listed(ws.name, None, {}):  # an app may hold only sandboxes
        app_id = sandbox.app_key.removeprefix(f"{ws.name}/")
        row = rows.setdefault(app_id, {"id": app_id, "name": app_id, "state": "sandboxes", "version": None,
                                       "created_at": None, "containers": 0, "endpoints": []})
        row["containers"] = row.get("containers", 0) + 1
    return sorted(rows.values(), key=lambda r: r["id"])


def _live(control: ControlServer, ws: Any, app_id: str) -> tuple[str, Any]:
    """The app's key and its live version (None when stopped); NotFoundError for no app of that id."""
    for key in (f"{ws.name}/{app_id}", app_id):
        version = control.server.apps.get(key)
        if version is not None and version.workspace == ws.name:
            return key, version
    if control.store is not None and not app_id.startswith("serve:") and control.store.app(ws, app_id):
        return f"{ws.name}/{app_id}", None
    if control.server.sandboxes.listed(ws.name, f"{ws.name}/{app_id}", {}):
        return f"{ws.name}/{app_id}", None
    raise NotFoundError(f"App '{app_id}' not found in workspace '{ws.name}'.")


async def apps_page(control: ControlServer, req: DashboardRequest) -> Page:
    return render("apps.html", req.session, apps=_app_rows(control, req.workspace))


async def app_page(control: ControlServer, req: DashboardRequest) -> Page:
    app_id = req.params["app"]
    key, version = _live(control, req.workspace, app_id)
    functions = sorted({*(version.callables if version else {}), *(i.tag for i in (version.infos if version else [])),
                        *control.server.series.functions(req.workspace.name, key)})
    history = None
    if control.store is not None and not app_id.startswith("serve:") and control.store.app(req.workspace, app_id):
        history = await apps.history(control, _api(req, {"name": app_id}))
    sandboxes = control.server.sandboxes.listed(req.workspace.name, key, {})
    return render("app.html", req.session, app_id=app_id, name=version.manifest.app_name if version else app_id,
                  sandboxes=sandboxes,
                  version=version, endpoints=version.infos if version else [], functions=functions, history=history,
                  schedules=control.scheduler.upcoming(key), status=req.query.get("status"),
                  window_s=int(req.query["window"]) if req.query.get("window") in WINDOWS else WINDOW_S)


async def series_json(control: ControlServer, req: DashboardRequest) -> Page:
    key, _ = _live(control, req.workspace, req.params["app"])
    seconds = int(req.query["seconds"]) if req.query.get("seconds", "").isdigit() else WINDOW_S
    function = req.query.get("function", "")
    return json_page(control.server.series.window((req.workspace.name, key, function), time.time(), seconds))


async def requests_fragment(control: ControlServer, req: DashboardRequest) -> Page:
    key, _ = _live(control, req.workspace, req.params["app"])
    status = req.query.get("status") or None
    found = select(control.server.requests.records, workspace=req.workspace.name, app=key, status=status)
    return render("requests.html", req.session, requests=list(reversed(found[-MAX_REQUEST_ROWS:])), status=status)


async def rollback(control: ControlServer, req: DashboardRequest) -> Page:
    version = req.form.get("version")
    await apps.rollback(control, _api(req, {"name": req.params["app"]},
                                      {"version": int(version)} if version and version.isdigit() else {}))
    return redirect(f"{P}/apps/{req.params['app']}")


async def stop_app(control: ControlServer, req: DashboardRequest) -> Page:
    app_id = req.params["app"]
    if app_id.startswith("serve:"):
        raise HTTPError(400, "a `sampan serve` session stops with its terminal (Ctrl-C)")
    await apps.stop(control, _api(req, {"name": app_id}))
    return redirect(f"{P}/apps/{app_id}")


# -- containers -----------------------------------------------------------------------------------
def _containers(control: ControlServer, ws: Any) -> list[dict[str, Any]]:
    rows = [c for c in control.server.describe_containers(usage=True) if c["workspace"] == ws.name]
    for row in rows:
        row["cpu_pct"] = control.dashboard.cpu_pct.get(row["id"])
        row["app_id"] = row["app_key"].removeprefix(f"{ws.name}/")
    return rows


async def containers_page(control: ControlServer, req: DashboardRequest) -> Page:
    return render("containers.html", req.session, containers=_containers(control, req.workspace))


async def containers_fragment(control: ControlServer, req: DashboardRequest) -> Page:
    return render("container_rows.html", req.session, containers=_containers(control, req.workspace))


def _known(control: ControlServer, ws: Any, cid: str) -> None:
    logs = control.server.logs
    if control.server.find_container(ws.name, cid) is None and \
            not (logs.known(cid) and logs.workspace_of(cid) == ws.name):
        raise HTTPError(404, f"no container {cid}")


async def container_page(control: ControlServer, req: DashboardRequest) -> Page:
    cid = req.params["id"]
    _known(control, req.workspace, cid)
    row = next((c for c in _containers(control, req.workspace) if c["id"] == cid), None)
    return render("container.html", req.session, cid=cid, container=row)


async def container_logs(control: ControlServer, req: DashboardRequest) -> Any:
    """Server-sent events: the container's recent lines, then each new one until it exits. Each event is
    a JSON string (so no line can end an event early); the page adds it as text."""
    cid = req.params["id"]
    _known(control, req.workspace, cid)
    logs, writer = control.server.logs, req.writer
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\n"
                 b"x-content-type-options: nosniff\r\nconnection: close\r\n\r\n")

    def event(line: Any) -> bytes:
        text = f"{time.strftime('%H:%M:%S', time.localtime(line.time))} [{line.stream}] {clean_line(line.text)}"
        return b"data: " + json.dumps(text).encode() + b"\n\n"

    queue = logs.follow(cid) if control.server.find_container(req.workspace.name, cid) is not None else None
    try:
        for line in logs.tail(cid)[-LOG_BACKLOG:]:
            writer.write(event(line))
        await writer.drain()
        while queue is not None:
            try:
                line = await asyncio.wait_for(queue.get(), SSE_PING_S)
            except asyncio.TimeoutError:
                writer.write(b": ping\n\n")  # a browser that left is noticed here, and the follower dropped
                await writer.drain()
                continue
            if line is None:
                writer.write(b"event: end\ndata: \"the container exited\"\n\n")
                break
            writer.write(event(line))
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        if queue is not None:
            logs.unfollow(cid, queue)
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
    return WRITTEN


async def stop_container(control: ControlServer, req: DashboardRequest) -> Page:
    cid = req.params["id"]
    if not control.server.stop_container(req.workspace.name, cid, graceful=False):
        raise HTTPError(404, f"no container {cid}")
    return redirect(f"{P}/containers")


# -- calls ----------------------------------------------------------------------------------------
async def calls_page(control: ControlServer, req: DashboardRequest) -> Page:
    calls = [c for c in reversed(control.invoker.calls.values()) if c.workspace == req.workspace.name]
    return render("calls.html", req.session, calls=calls[:MAX_CALL_ROWS])


async def call_page(control: ControlServer, req: DashboardRequest) -> Page:
    call = control.invoker.calls.get(req.params["id"])
    if call is None or call.workspace != req.workspace.name:
        raise HTTPError(404, f"no function call {req.params['id']}")
    return render("call.html", req.session, call=call, root=call.root())


# -- storage --------------------------------------------------------------------------------------
async def storage_page(control: ControlServer, req: DashboardRequest) -> Page:
    ws = req.workspace
    has_store = control.store is not None
    objects = control.shared_objects() if has_store else None
    schedules = [{"app": key.removeprefix(f"{ws.name}/"), **timer}
                 for key, version in control.server.apps.items() if version.workspace == ws.name
                 for timer in control.scheduler.upcoming(key)]
    return render("storage.html", req.session, has_store=has_store,
                  dicts=objects.names(ws, "dict") if objects else [],
                  queues=objects.names(ws, "queue") if objects else [],
                  volumes=control.server.volumes.names(ws.name),
                  secrets=await accounts.list_secrets(control, _api(req)) if has_store else [],
                  schedules=schedules)


async def volume_page(control: ControlServer, req: DashboardRequest) -> Page:
    name, path = req.params["name"], req.query.get("path") or "/"
    listing = control.server.volumes.op(req.workspace.name, name, {"op": "listdir", "path": path})
    parent = "/" + "/".join(path.strip("/").split("/")[:-1]) if path.strip("/") else None
    return render("volume.html", req.session, name=name, path=path, parent=parent, entries=listing["entries"])


ROUTES: list[Route] = [
    Route("GET", P, apps_page),
    Route("GET", P + "/apps/{app}", app_page),
    Route("GET", P + "/apps/{app}/series.json", series_json),   # ?function=&seconds=
    Route("GET", P + "/apps/{app}/requests", requests_fragment),  # ?status=5xx (htmx polls it)
    Route("POST", P + "/apps/{app}/rollback", rollback),          # version
    Route("POST", P + "/apps/{app}/stop", stop_app),
    Route("GET", P + "/containers", containers_page),
    Route("GET", P + "/containers/rows", containers_fragment),
    Route("GET", P + "/containers/{id}", container_page),
    Route("GET", P + "/containers/{id}/logs", container_logs),    # text/event-stream
    Route("POST", P + "/containers/{id}/stop", stop_container),
    Route("GET", P + "/calls", calls_page),
    Route("GET", P + "/calls/{id}", call_page),
    Route("GET", P + "/storage", storage_page),
    Route("GET", P + "/volumes/{name}", volume_page),               # ?path=
]
