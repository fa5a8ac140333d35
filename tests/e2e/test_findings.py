"""Correctness findings from running real apps written by others, one test each, over real HTTP and real
processes (issue: correct under real apps, safe under hostile tenants)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from tests.helpers import IMAGES_DIR, SRC, serve

pytestmark = pytest.mark.slow


def _write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


def _cli(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAMPAN_HOME": str(home), "SAMPAN_IMAGES": IMAGES_DIR, "SAMPAN_WORKSPACE": "tester",
           "SAMPAN_GATEWAY_PORT": "0", "SAMPAN_ENDPOINT_PORT_BASE": "0",
           "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "sampan", *args], capture_output=True, text=True, env=env,
                          timeout=180, cwd=cwd)


def test_functions_with_an_image_keep_the_platforms_address(tmp_path: Path) -> None:
    """Finding 1: the image's variables replaced the container's, dropping the server's address."""
    app = _write(tmp_path / "doubler.py", """
        import modal

        image = modal.Image.debian_slim().env({"FROM_IMAGE": "1"})
        app = modal.App("doubler")

        @app.function(image=image)
        def double(x: int) -> int:
            return 2 * x

        @app.function(image=image)
        @modal.fastapi_endpoint()
        def web():
            import os
            return {"answer": double.remote(21), "image_env": os.environ.get("FROM_IMAGE")}
    """)
    with serve(app, tmp_path / "elsewhere") as s:  # a SAMPAN_HOME that is not the default
        assert requests.get(s.urls["web"], timeout=120).json() == {"answer": 42, "image_env": "1"}


def test_shutdown_hooks_under_serve_still_reach_the_platform(tmp_path: Path) -> None:
    """Finding 4: serve closed the control API before stopping containers, so @exit could not save."""
    app = _write(tmp_path / "saver.py", """
        import modal

        app = modal.App("saver")

        @app.cls()
        class Saver:
            @modal.exit()
            def bye(self):
                modal.Dict.from_name("shutdown", create_if_missing=True)["saved"] = "on exit"

            @modal.fastapi_endpoint()
            def hit(self):
                return "ok"
    """)
    home = tmp_path / "home"
    with serve(app, home) as s:
        assert requests.get(s.urls["Saver.hit"], timeout=60).json() == "ok"
    check = _write(tmp_path / "check.py", """
        import modal

        app = modal.App("check")

        @app.local_entrypoint()
        def main():
            print("saved:", modal.Dict.from_name("shutdown").get("saved"))
    """)
    done = _cli(home, "run", str(check))
    assert "saved: on exit" in done.stdout, done.stdout + done.stderr


def test_factories_and_enter_hooks_run_with_no_event_loop_running(tmp_path: Path) -> None:
    """Finding 5: the asgi_app factory ran on the container's loop, so asyncio.run() in it failed."""
    app = _write(tmp_path / "loops.py", """
        import asyncio
        import modal

        async def answer():
            await asyncio.sleep(0)
            return 42

        AT_IMPORT = asyncio.run(answer())
        app = modal.App("loops")

        @app.function()
        @modal.asgi_app()
        def web():
            from fastapi import FastAPI

            value = asyncio.run(answer())  # real apps initialise this way
            api = FastAPI()

            @api.get("/")
            def root():
                return {"import": AT_IMPORT, "factory": value}

            return api

        @app.cls()
        class Hooked:
            @modal.enter()
            def setup(self):
                self.value = asyncio.run(answer())

            @modal.fastapi_endpoint()
            def get(self):
                return self.value
    """)
    with serve(app, tmp_path / "home") as s:
        assert requests.get(s.urls["web"], timeout=60).json() == {"import": 42, "factory": 42}
        assert requests.get(s.urls["Hooked.get"], timeout=60).json() == 42


def test_volume_commands_talk_to_a_running_serve_session(tmp_path: Path) -> None:
    """Finding 7: with only `sampan serve` running, `sampan volume ls` tried to start a daemon."""
    app = _write(tmp_path / "writer.py", """
        import modal

        app = modal.App("writer")
        vol = modal.Volume.from_name("media", create_if_missing=True)

        @app.function(volumes={"/data": vol})
        @modal.fastapi_endpoint()
        def write():
            open("/data/hello.txt", "w").write("hi")
            return "written"
    """)
    home = tmp_path / "home"
    with serve(app, home) as s:
        assert requests.get(s.urls["write"], timeout=60).json() == "written"
        listed = _cli(home, "volume", "ls", "media")
        assert listed.returncode == 0 and "hello.txt" in listed.stdout, listed.stdout + listed.stderr
        got = _cli(home, "volume", "get", "media", "/hello.txt")
        assert got.stdout == "hi", got.stderr
        assert not (home / "server.log").exists(), "no daemon was started beside the serve session"


def test_connections_that_never_send_their_body_are_reaped_and_capped(tmp_path: Path) -> None:
    """Finding 13: a POST with Content-Length and no body, to an unknown Host, stayed open forever; the
    open-files limit stayed at its soft default; nothing capped connections."""
    import asyncio
    import resource
    import socket

    from sampan.config import ProxyLimits
    from sampan.server.apps import raise_open_files_limit
    from tests.server_helpers import running

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert raise_open_files_limit() >= soft
    source = """
        import modal
        app = modal.App("reap")

        @app.function()
        @modal.fastapi_endpoint()
        def f():
            return 1
    """

    async def main() -> None:
        limits = ProxyLimits(body_timeout=0.5, max_connections=20)
        server, version, *_ = await running(tmp_path, source, limits=limits)
        try:
            port = server.gateway.port
            loop = asyncio.get_running_loop()

            def stalled() -> bytes:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(b"POST / HTTP/1.1\r\nHost: nobody.localhost\r\nContent-Length: 100\r\n\r\n")
                    return s.recv(4096)  # the 404 comes; then the connection must be closed, not kept
            answer = await loop.run_in_executor(None, stalled)
            assert answer.startswith(b"HTTP/1.1 404")
            assert b"connection: close" in answer.lower()
            # Past the cap, a new connection is refused with 503 at once; the first ones still work.
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(25)]
            try:
                def refused() -> bytes:
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                        return s.recv(4096)
                assert (await loop.run_in_executor(None, refused)).startswith(b"HTTP/1.1 503")
            finally:
                for s in idle:
                    s.close()
        finally:
            await server.close()

    asyncio.run(main())


def test_class_parameters_cannot_mint_containers_without_bound(tmp_path: Path) -> None:
    """Finding 14: one pool per parameter value and no cap, so 15 anonymous GETs started 15 containers."""
    import asyncio

    import httpx

    from tests.server_helpers import running

    source = """
        import os, time
        import modal

        app = modal.App("minted")

        @app.cls()
        class Param:
            n: int = modal.parameter(default=0)

            @modal.fastapi_endpoint()
            def get(self):
                time.sleep(0.5)
                return os.environ["MODAL_TASK_ID"]
    """

    async def main() -> None:
        server, version, *_ = await running(tmp_path, source, max_pools_per_function=3,
                                            max_containers_per_workspace=2)
        try:
            url = version.infos[0].url
            peak = 0

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, len(server.describe_containers()))
                    await asyncio.sleep(0.02)

            watcher = asyncio.create_task(watch())
            async with httpx.AsyncClient(timeout=60) as client:
                answers = await asyncio.gather(*(client.get(url, params={"n": n}) for n in range(3)))
                assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
                over = await client.get(url, params={"n": 99})
            watcher.cancel()
            assert peak <= 2, f"{peak} containers at once past the workspace cap of 2"
            assert over.status_code == 429
            assert over.text == ("modal-http: Function Param.get reached its limit of 3 live class parameter "
                                 "combinations for workspace tester")
        finally:
            await server.close()

    asyncio.run(main())


def test_a_connection_the_app_closed_is_not_reused_for_the_next_request(tmp_path: Path) -> None:
    """Finding 2: after a handler raised, uvicorn closed the connection the gateway had already pooled;
    the next request with a body was sent there and lost (500 'terminated by signal')."""
    import httpx

    app = _write(tmp_path / "picky.py", """
        import modal
        from fastapi import FastAPI, Request

        app = modal.App("picky")
        api = FastAPI()

        @api.post("/")
        async def take(request: Request):
            body = await request.body()
            if "x-ok" not in request.headers:
                raise RuntimeError("no header")
            return {"got": len(body)}

        @app.function()
        @modal.asgi_app()
        def web():
            return api
    """)
    with serve(app, tmp_path / "home") as s, httpx.Client(timeout=60) as client:
        url = s.urls["web"]
        for _ in range(3):
            assert client.post(url, content=b"a" * 1000, headers={"x-ok": "1"}).json() == {"got": 1000}
            assert client.post(url, content=b"b" * 1000).status_code == 500
            third = client.post(url, content=b"c" * 1000, headers={"x-ok": "1"})
            assert third.status_code == 200 and third.json() == {"got": 1000}, third.text


def test_the_readme_example_answers_a_plain_get(tmp_path: Path) -> None:
    """The README's first command serves examples/hello.py; its first printed URL answers a plain GET."""
    example = Path(__file__).resolve().parents[2] / "examples" / "hello.py"
    with serve(example, tmp_path / "home") as s:
        first = next(iter(s.urls.values()))
        assert requests.get(first, timeout=120).json() == {"square": 4}
        assert requests.get(first, params={"x": 42}, timeout=60).json() == {"square": 1764}


def test_result_urls_of_a_private_endpoint_need_its_credentials(tmp_path: Path) -> None:
    """Finding 17: the 303 chain's result URL skipped proxy auth: anyone holding the URL got the result."""
    import json

    app = _write(tmp_path / "private.py", """
        import time
        import modal

        app = modal.App("private")

        @app.function()
        @modal.fastapi_endpoint(requires_proxy_auth=True)
        def slow():
            time.sleep(2)
            return "secret result"
    """)
    home = tmp_path / "home"
    with serve(app, home, env={"SAMPAN_REDIRECT_AFTER_S": "1"}) as s:
        made = _cli(home, "workspace", "proxy-tokens", "create", "--json")
        assert made.returncode == 0, made.stdout + made.stderr
        token = json.loads(made.stdout)
        creds = {"Modal-Key": token["token_id"], "Modal-Secret": token["token_secret"]}
        first = requests.get(s.urls["slow"], headers=creds, allow_redirects=False, timeout=60)
        assert first.status_code == 303
        result_url = s.urls["slow"] + first.headers["location"]
        stranger = requests.get(result_url, allow_redirects=False, timeout=60)
        assert (stranger.status_code, stranger.text) == (401, "modal-http: missing credentials for proxy authorization")
        owner = requests.get(result_url, headers=creds, timeout=60)
        assert owner.status_code == 200 and owner.json() == "secret result"
