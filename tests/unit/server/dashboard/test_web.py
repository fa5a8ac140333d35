"""The dashboard in memory (`web.answer`) over a real app server, store and invoker with the fake backend:
login, sessions, CSRF, workspace isolation, static files, and text that must stay text."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import cloudpickle

from sampan.server.assemble import Assembly
from sampan.server.dashboard import web
from sampan.server.dashboard.pages import clean_line
from sampan.server.requests import Request
from tests import fakes
from tests.unit.server.control.test_dispatch import Answer, call, with_server

P = "/dashboard"


async def get(assembly: Assembly, path: str, cookie: str = "", headers: dict[str, str] | None = None,
              method: str = "GET", form: dict[str, str] | None = None) -> tuple[web.Page | None, Answer]:
    writer = Answer()
    path, _, raw = path.partition("?")
    query = dict(p.split("=", 1) for p in raw.split("&") if "=" in p)
    page = await web.answer(assembly.control, method, path, query, form or {},
                            {"cookie": cookie, **(headers or {})}, writer)
    return page, writer


def header(page: web.Page, name: str) -> str:
    return next(v for k, v in page.headers if k == name)


async def login(assembly: Assembly, workspace: str) -> tuple[str, str]:
    """A session of `workspace` through a one-time code, as `sampan dashboard` makes: (cookie, csrf)."""
    code = assembly.control.dashboard.sessions.login_code(workspace)
    page, _ = await get(assembly, f"{P}/login?code={code}")
    assert page is not None and page.status == 303
    cookie = header(page, "set-cookie").split(";")[0]
    session = assembly.control.dashboard.sessions.get(cookie.split("=", 1)[1])
    assert session is not None
    return cookie, session.csrf


async def publish(assembly: Assembly, workspace: str, name: str = "demo") -> Any:
    server = assembly.server
    return await server.publish(f"{workspace}/{name}", fakes.manifest(name, calls=("add",)),
                                fakes.bundle(server.settings.home), ephemeral=False, workspace=workspace)


def test_without_a_session_pages_redirect_to_login_and_fragments_are_401(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        page, _ = await get(assembly, f"{P}/containers")
        assert page is not None and page.status == 303
        assert header(page, "location") == f"{P}/login?next=/dashboard/containers"
        for path, headers in ((f"{P}/containers/rows", {"hx-request": "true"}),
                              (f"{P}/apps/demo/series.json", {})):
            page, _ = await get(assembly, path, headers=headers)
            assert page is not None and page.status == 401
        page, _ = await get(assembly, f"{P}/containers", cookie="sampan_session=forged")
        assert page is not None and page.status == 303
        page, _ = await get(assembly, f"{P}/login")
        assert page is not None and page.status == 200 and b'name="token"' in page.body

    with_server(tmp_path, test)


def test_login_takes_a_workspace_token_and_sets_a_strict_cookie(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        page, _ = await get(assembly, f"{P}/login", method="POST", form={"token": "wrong:token"})
        assert page is not None and page.status == 401 and b"not valid" in page.body
        token_id, secret = assembly.store.create_token(ws)
        page, _ = await get(assembly, f"{P}/login", method="POST",
                            form={"token": f"{token_id}:{secret}", "next": f"{P}/calls"})
        assert page is not None and page.status == 303 and header(page, "location") == f"{P}/calls"
        cookie = header(page, "set-cookie")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        page, _ = await get(assembly, f"{P}/calls", cookie=cookie.split(";")[0])
        assert page is not None and page.status == 200 and b"<b>tester</b>" in page.body
        # a login link can only lead into the dashboard
        for target in ("//evil.example/", "https://evil.example/", "/v1/secrets"):
            page, _ = await get(assembly, f"{P}/login", method="POST",
                                form={"token": f"{token_id}:{secret}", "next": target})
            assert page is not None and header(page, "location") == f"{P}/"

    with_server(tmp_path, test)


def test_a_login_code_works_once(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        answer = await call(assembly, ws, "POST", "/v1/dashboard/login")
        url = answer.json()["url"]
        assert url.startswith(assembly.control.url + "/dashboard/login?code=")
        path = url[len(assembly.control.url):]
        first, _ = await get(assembly, path)
        second, _ = await get(assembly, path)
        assert first is not None and first.status == 303
        assert second is not None and second.status == 401 and b"used already" in second.body

    with_server(tmp_path, test)


def test_posts_need_the_sessions_csrf_token(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        cookie, csrf = await login(assembly, "tester")
        page, _ = await get(assembly, f"{P}/containers/ta-none/stop", cookie=cookie, method="POST")
        assert page is not None and page.status == 403
        _, other_csrf = await login(assembly, "tester")
        page, _ = await get(assembly, f"{P}/containers/ta-none/stop", cookie=cookie, method="POST",
                            form={"csrf": other_csrf})
        assert page is not None and page.status == 403
        page, _ = await get(assembly, f"{P}/containers/ta-none/stop", cookie=cookie, method="POST",
                            headers={"x-csrf-token": csrf})
        assert page is not None and page.status == 404
        page, _ = await get(assembly, f"{P}/logout", cookie=cookie, method="POST", form={"csrf": csrf})
        assert page is not None and page.status == 303
        page, _ = await get(assembly, f"{P}/calls", cookie=cookie)
        assert page is not None and page.status == 303  # logged out

    with_server(tmp_path, test)


def test_a_session_sees_its_workspace_only(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        await publish(assembly, "tester")
        args = base64.b64encode(cloudpickle.dumps(((1, 2), {}))).decode()
        body = {"app": "demo", "function": "add", "params": {}, "args": args, "mode": "spawn"}
        spawned = (await call(assembly, ws, "POST", "/v1/calls", body)).json()["call_id"]
        await call(assembly, ws, "GET", f"/v1/calls/{spawned}?timeout=10")
        container = assembly.server.describe_containers()[0]["id"]

        mine, csrf = await login(assembly, "tester")
        page, _ = await get(assembly, f"{P}/", cookie=mine)
        assert page is not None and b'href="/dashboard/apps/demo"' in page.body
        for path in (f"{P}/apps/demo", f"{P}/containers", f"{P}/calls/{spawned}", f"{P}/containers/{container}",
                     f"{P}/storage", f"{P}/apps/demo/series.json?function=add"):
            page, _ = await get(assembly, path, cookie=mine)
            assert page is not None and page.status == 200, path
        page, _ = await get(assembly, f"{P}/containers", cookie=mine)
        assert page is not None and container.encode() in page.body

        theirs, their_csrf = await login(assembly, "other")
        page, _ = await get(assembly, f"{P}/", cookie=theirs)
        assert page is not None and b"/dashboard/apps/demo" not in page.body
        page, _ = await get(assembly, f"{P}/containers", cookie=theirs)
        assert page is not None and container.encode() not in page.body
        page, _ = await get(assembly, f"{P}/calls", cookie=theirs)
        assert page is not None and spawned.encode() not in page.body
        for path in (f"{P}/apps/demo", f"{P}/calls/{spawned}", f"{P}/containers/{container}",
                     f"{P}/containers/{container}/logs", f"{P}/apps/demo/series.json",
                     f"{P}/apps/demo/requests"):
            page, _ = await get(assembly, path, cookie=theirs)
            assert page is not None and page.status == 404, path
        for path in (f"{P}/containers/{container}/stop", f"{P}/apps/demo/stop", f"{P}/apps/demo/rollback"):
            page, _ = await get(assembly, path, cookie=theirs, method="POST", form={"csrf": their_csrf})
            assert page is not None and page.status == 404, path
        found = assembly.server.find_container("tester", container)
        assert found is not None and found[1].backend.alive  # still there

        page, _ = await get(assembly, f"{P}/containers/{container}/stop", cookie=mine, method="POST",
                            form={"csrf": csrf})
        assert page is not None and page.status == 303 and not found[1].backend.alive

    with_server(tmp_path, test)


def test_static_files_are_the_shipped_ones_only(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        page, _ = await get(assembly, f"{P}/static/vendor/htmx.min.js")
        assert page is not None and page.status == 200 and page.content_type.startswith("text/javascript")
        page, _ = await get(assembly, f"{P}/static/vendor/uPlot.iife.min.js")
        assert page is not None and page.status == 200
        for path in ("../pages.py", "vendor/../../web.py", "/etc/passwd", "%2e%2e/web.py", ""):
            page, _ = await get(assembly, f"{P}/static/{path}")
            assert page is not None and page.status == 404, path

    with_server(tmp_path, test)


def test_pages_forbid_inline_script_and_framing(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        cookie, _ = await login(assembly, "tester")
        page, _ = await get(assembly, f"{P}/", cookie=cookie)
        assert page is not None
        raw = page.encode().decode("latin-1")
        assert "content-security-policy: default-src 'self'; script-src 'self';" in raw
        assert "frame-ancestors 'none'" in raw and "x-frame-options: DENY" in raw
        assert "cache-control: no-store" in raw

    with_server(tmp_path, test)


def test_request_paths_and_log_lines_stay_text(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        await publish(assembly, "tester")
        evil = "/<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
        assembly.server.requests.record(Request(time.time(), "tester", "tester/demo", "hello", "GET", evil, 500,
                                                1.0, 0.0, False, "ta-x", 0, 0, "127.0.0.1"))
        cookie, _ = await login(assembly, "tester")
        page, _ = await get(assembly, f"{P}/apps/demo/requests?status=5xx", cookie=cookie)
        assert page is not None and page.status == 200
        assert b"<script>" not in page.body and b"<img" not in page.body
        assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page.body and b"500" in page.body

    # the live log is followed until the container exits: end it while the stream is open
    async def streamed(assembly: Assembly, ws: Any) -> None:
        await publish(assembly, "tester")
        args = base64.b64encode(cloudpickle.dumps(((1, 2), {}))).decode()
        await call(assembly, ws, "POST", "/v1/calls",
                   {"app": "demo", "function": "add", "params": {}, "args": args, "mode": "call"})
        cid = assembly.server.describe_containers()[0]["id"]
        assembly.server.log("add", cid, "stdout", "\x1b[31m<script>alert(3)</script>\x1b[0m\x07 done \ufffd",
                            "tester/demo", "tester")
        cookie, _ = await login(assembly, "tester")

        async def end_soon() -> None:
            await asyncio.sleep(0.2)
            assembly.server.log("add", cid, "stderr", "after opening", "tester/demo", "tester")
            await asyncio.sleep(0.1)
            assembly.server.container_exited(cid)

        ender = asyncio.create_task(end_soon())
        page, writer = await get(assembly, f"{P}/containers/{cid}/logs", cookie=cookie)
        await ender
        assert page is None
        head, _, body = bytes(writer.raw).partition(b"\r\n\r\n")
        assert b"content-type: text/event-stream" in head
        events = [json.loads(line[6:]) for line in body.decode().split("\n\n") if line.startswith("data: ")]
        assert events[0].endswith("[stdout] <script>alert(3)</script> done \ufffd")  # text, escapes gone
        assert "\x1b" not in "".join(events) and "\x07" not in "".join(events)
        assert events[1].endswith("[stderr] after opening") and len(events) == 2
        assert body.endswith(b'event: end\ndata: "the container exited"\n\n')

    with_server(tmp_path, test)
    with_server(tmp_path / "2", streamed)


def test_clean_line_removes_terminal_escapes_only() -> None:
    assert clean_line("\x1b[1;31mred\x1b[0m \x1b]0;title\x07tab\there") == "red tab\there"
    assert clean_line("<b>&amp;</b>") == "<b>&amp;</b>"  # HTML is escaped where it is shown, not here
