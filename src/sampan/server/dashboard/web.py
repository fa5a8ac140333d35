"""The dashboard over HTTP, on the control API's port under `/dashboard`: login, cookie sessions, CSRF,
static files, and the page routes (pages.py) matched by the control API's own router.

The control server hands every request under `/dashboard` here before it asks for a bearer token: a
browser carries a session cookie instead. Everything else is as strict as the API: the session names
one workspace, each page shows only that workspace (pages.py reads through the same handlers and
filters as the API), every POST carries the session's CSRF token, and pages forbid inline scripts and
framing (Content-Security-Policy), so a log line or an app name can never run as code.
"""

from __future__ import annotations

import functools
import mimetypes
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from ..control.auth import authenticate, workspace_named
from ..control.router import WRITTEN, error_text, match, status_for
from ..control.wire import HTTPError
from ..gateway import http
from . import pages
from .answer import Page, redirect
from .sessions import COOKIE, SESSION_TTL_S, Session, Sessions, csrf_ok, parse_cookies, session_cookie

if TYPE_CHECKING:
    import asyncio

    from ..control.server import ControlServer

PREFIX = "/dashboard"
STATIC = Path(__file__).parent / "static"
MAX_FORM = 64 * 1024
@dataclass
class DashboardRequest:
    """What a page handler gets: the session's workspace, route parameters, query and form fields."""

    workspace: Any
    session: Session
    params: dict[str, str]
    query: dict[str, str]
    form: dict[str, str]
    writer: Any


class Dashboard:
    """The dashboard's state on the control server: its sessions, and the container samples its charts
    and CPU figures come from (taken every few seconds by `sample`)."""

    def __init__(self, sessions: Sessions | None = None) -> None:
        self.sessions = sessions or Sessions()
        self.cpu: dict[str, tuple[float, float]] = {}  # container id -> (time, cpu seconds) at the last sample
        self.cpu_pct: dict[str, float] = {}

    def sample(self, now: float, rows: list[dict[str, Any]]) -> None:
        """CPU use of each container since the last sample (percent of one core)."""
        seen = set()
        for row in rows:
            cid, cpu_s = row["id"], row.get("cpu_s")
            seen.add(cid)
            if cpu_s is None:
                continue
            before = self.cpu.get(cid)
            if before is not None and now > before[0]:
                self.cpu_pct[cid] = round(100 * max(0.0, cpu_s - before[1]) / (now - before[0]), 1)
            self.cpu[cid] = (now, cpu_s)
        for gone in [c for c in self.cpu if c not in seen]:
            self.cpu.pop(gone, None)
            self.cpu_pct.pop(gone, None)


@functools.cache
def _static_files() -> dict[str, Path]:
    """The shipped files by their name under static/, listed once (they do not change while serving)."""
    return {p.relative_to(STATIC).as_posix(): p for p in STATIC.rglob("*") if p.is_file()}


def _static(path: str) -> Page:
    """A file shipped in static/ (the vendored htmx and uPlot, the dashboard's own CSS and JS). Only
    names found in that folder are served: a path with `..` or a link matches none."""
    found = _static_files().get(path[len(PREFIX) + len("/static/"):])
    if found is None:
        return Page(404, b"not found", "text/plain; charset=utf-8")
    kind = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind.endswith("javascript"):
        kind += "; charset=utf-8"
    return Page(200, found.read_bytes(), kind, [("cache-control", "max-age=3600")])


async def _read_form(head: http.RequestHead, reader: asyncio.StreamReader) -> dict[str, str] | None:
    """The url-encoded form of a POST (None: too large or not a form length we read)."""
    if head.framing == http.NO_BODY:
        return {}
    if head.framing != http.LENGTH or head.length > MAX_FORM:
        return None
    raw = await reader.readexactly(head.length)
    return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))


async def handle(control: ControlServer, head: http.RequestHead, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> bool:
    """Answer one request under /dashboard; whether the connection carries another."""
    method = head.method.decode()
    target = head.target.decode("latin-1")
    path, _, raw_query = target.partition("?")
    query = dict(parse_qsl(raw_query))
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in head.headers}
    form = await _read_form(head, reader)
    if form is None:
        writer.write(Page(413, b"form too large", "text/plain; charset=utf-8").encode(close=True))
        return False
    page = await answer(control, method, path, query, form, headers, writer)
    if page is None:  # a stream (live logs), written and ended by its handler
        return False
    writer.write(page.encode(close=not head.keep_alive))
    return head.keep_alive


async def answer(control: ControlServer, method: str, path: str, query: dict[str, str], form: dict[str, str],
                 headers: dict[str, str], writer: Any) -> Page | None:
    """The whole dashboard after the HTTP framing (tests call it in memory)."""
    dash: Dashboard = control.dashboard
    if path.startswith(PREFIX + "/static/"):
        return _static(path) if method in ("GET", "HEAD") else Page(405, b"", "text/plain")
    if path in (PREFIX + "/login", PREFIX + "/login/"):
        return _login(control, dash, method, query, form)
    session = dash.sessions.get(parse_cookies(headers.get("cookie", "")).get(COOKIE))
    if session is None:
        if method == "GET" and "hx-request" not in headers and not path.endswith(".json"):
            return redirect(f"{PREFIX}/login?next={quote(path)}")
        return Page(401, b"log in again", "text/plain; charset=utf-8", [("hx-redirect", f"{PREFIX}/login")])
    if method == "POST" and not csrf_ok(session, headers.get("x-csrf-token") or form.get("csrf")):
        return Page(403, b"missing or wrong CSRF token: reload the page", "text/plain; charset=utf-8")
    if path == PREFIX + "/logout" and method == "POST":
        dash.sessions.close(session.id)
        return redirect(f"{PREFIX}/login", [("set-cookie", session_cookie("", 0))])
    try:
        route, params = match(pages.ROUTES, method, path.rstrip("/") or PREFIX)
        workspace = workspace_named(control.store, session.workspace)
        req = DashboardRequest(workspace, session, params, query, form, writer)
        result = await route.handler(control, req)
    except HTTPError as exc:
        return pages.error_page(session, exc.status, str(exc))
    except Exception as exc:
        status = status_for(exc)
        if status is None:  # a bug: said in the server's log, and a page that says so
            traceback.print_exc(file=sys.stderr)
            return pages.error_page(session, 500, "The server failed to show this page (its log says why).")
        return pages.error_page(session, status, error_text(exc))
    return None if result is WRITTEN else result


def _login(control: ControlServer, dash: Dashboard, method: str, query: dict[str, str],
           form: dict[str, str]) -> Page:
    """GET: the form (or `?code=`, a one-time code from `sampan dashboard`); POST: a workspace token."""
    target = query.get("next") or form.get("next") or PREFIX + "/"
    if not target.startswith(PREFIX + "/") or target.startswith("//"):
        target = PREFIX + "/"  # only into the dashboard: a login link cannot send the user elsewhere
    workspace: str | None = None
    if method == "GET" and query.get("code"):
        workspace = dash.sessions.redeem(query["code"])
        if workspace is None:
            return pages.login_page(target, "This login link was used already or is too old: "
                                            "run `sampan dashboard` again, or paste a token.", 401)
    elif method == "POST":
        found = authenticate(b"Bearer " + form.get("token", "").strip().encode("utf-8", "replace"),
                             control.credentials, control.store, control.server.settings.workspace)
        if found is None:
            return pages.login_page(target, "That token is not valid on this server.", 401)
        workspace = found.name
    elif method != "GET":
        return Page(405, b"", "text/plain")
    if workspace is None:
        return pages.login_page(target, None, 200)
    session = dash.sessions.open(workspace)
    return redirect(target, [("set-cookie", session_cookie(session.id, int(SESSION_TTL_S)))])
