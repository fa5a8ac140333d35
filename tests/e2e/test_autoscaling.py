"""Autoscaling and lifecycle end to end: real containers, counted by the pids they answer with."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import websockets

from tests.server_helpers import running

pytestmark = pytest.mark.slow

PID_APP = """
import asyncio, os, time
import modal

app = modal.App("scaling")

@app.function({options})
{decorators}
@modal.fastapi_endpoint()
async def pid(sleep: float = 0.0):
    await asyncio.sleep(sleep)
    return os.environ["MODAL_TASK_ID"]
"""


def pid_app(options: str = "", decorators: str = "") -> str:
    return PID_APP.format(options=options, decorators=decorators)


async def burst(client: httpx.AsyncClient, url: str, n: int, sleep: float) -> list[httpx.Response]:
    return await asyncio.gather(*(client.get(url, params={"sleep": sleep}) for _ in range(n)))


def test_concurrent_max_inputs_lets_one_container_serve_four_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, *_ = await running(tmp_path, pid_app(decorators="@modal.concurrent(max_inputs=4)"))
        try:
            url = version.infos[0].url
            async with httpx.AsyncClient(timeout=60) as client:
                await client.get(url)  # cold start out of the way
                start = time.perf_counter()
                responses = await burst(client, url, 4, 1.0)
                elapsed = time.perf_counter() - start
            assert len({r.json() for r in responses}) == 1
            assert elapsed < 1.8  # four 1 s requests at once, not one after another
        finally:
            await server.close()

    asyncio.run(main())


def test_max_containers_queues_and_everything_succeeds(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, *_ = await running(tmp_path, pid_app(options="max_containers=2"))
        try:
            url = version.infos[0].url
            endpoint = next(iter(version.endpoints.values()))
            peak = 0

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, sum(p.stats()["containers"] for p in endpoint.pools.values()))
                    await asyncio.sleep(0.01)

            watcher = asyncio.create_task(watch())
            async with httpx.AsyncClient(timeout=60) as client:
                responses = await burst(client, url, 8, 0.3)
            watcher.cancel()
            assert all(r.status_code == 200 for r in responses)
            assert len({r.json() for r in responses}) <= 2
            assert peak == 2
        finally:
            await server.close()

    asyncio.run(main())


def test_min_containers_are_warm_before_the_first_request(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, *_ = await running(tmp_path, pid_app(options="min_containers=1"))
        try:
            for _ in range(200):
                if any(c["state"] == "ready" for c in server.describe_containers()):
                    break
                await asyncio.sleep(0.05)
            containers = server.describe_containers()
            assert [c["state"] for c in containers] == ["ready"]
            async with httpx.AsyncClient(timeout=60) as client:
                start = time.perf_counter()
                r = await client.get(version.infos[0].url)
                assert time.perf_counter() - start < 0.2  # no cold start
            assert r.status_code == 200
        finally:
            await server.close()

    asyncio.run(main())


def test_scaledown_window_gives_a_new_container_after_idling(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, *_ = await running(tmp_path, pid_app(options="scaledown_window=2"))
        try:
            url = version.infos[0].url
            async with httpx.AsyncClient(timeout=60) as client:
                first = (await client.get(url)).json()
                await asyncio.sleep(0.5)
                assert (await client.get(url)).json() == first  # still warm
                for _ in range(100):
                    if not server.describe_containers():
                        break
                    await asyncio.sleep(0.05)
                assert server.describe_containers() == []
                assert (await client.get(url)).json() != first
        finally:
            await server.close()

    asyncio.run(main())


def test_a_container_dying_mid_request_gives_modal_500_and_is_replaced(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, *_ = await running(tmp_path, """
            import os, time
            import modal

            app = modal.App("crash")

            @app.function()
            @modal.fastapi_endpoint()
            def work(crash: bool = False):
                if crash:
                    time.sleep(0.2)
                    os._exit(1)
                return os.environ["MODAL_TASK_ID"]
        """)
        try:
            url = version.infos[0].url
            async with httpx.AsyncClient(timeout=60) as client:
                before = (await client.get(url)).json()
                r = await client.get(url, params={"crash": "true"})
                assert (r.status_code, r.text) == (500, "modal-http: internal error: function was terminated by signal")
                after = (await client.get(url)).json()
            assert after != before
        finally:
            await server.close()

    asyncio.run(main())


def test_function_timeout_gives_modal_500_and_recycles_the_container(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, *_ = await running(tmp_path, """
            import os, time
            import modal

            app = modal.App("slow")

            @app.function(timeout=1)
            @modal.fastapi_endpoint()
            def work(sleep: float = 0.0):
                time.sleep(sleep)  # sync: cannot be cancelled from outside the thread
                return os.environ["MODAL_TASK_ID"]
        """)
        try:
            url = version.infos[0].url
            async with httpx.AsyncClient(timeout=60) as client:
                before = (await client.get(url)).json()
                start = time.perf_counter()
                r = await client.get(url, params={"sleep": 5})
                assert (r.status_code, r.text) == (500, "modal-http: internal error: function execution timed out")
                assert time.perf_counter() - start < 3
                after = (await client.get(url)).json()
            assert after != before  # the stuck container was recycled
        finally:
            await server.close()

    asyncio.run(main())


def test_websocket_connection_holds_its_slot(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, *_ = await running(tmp_path, """
            import os
            import modal
            from fastapi import FastAPI, WebSocket

            app = modal.App("ws-slot")
            web_app = FastAPI()

            @web_app.get("/")
            def pid():
                return os.environ["MODAL_TASK_ID"]

            @web_app.websocket("/ws")
            async def ws(websocket: WebSocket):
                await websocket.accept()
                await websocket.send_text(str(os.environ["MODAL_TASK_ID"]))
                await websocket.receive_text()

            @app.function()
            @modal.asgi_app()
            def web():
                return web_app
        """)
        try:
            url = version.infos[0].url
            async with websockets.connect(url.replace("http", "ws") + "/ws") as ws:
                ws_pid = await ws.recv()
                async with httpx.AsyncClient(timeout=60) as client:
                    http_pid = (await client.get(url)).json()
                assert http_pid != ws_pid  # the open connection occupies its container's only slot
                await ws.send("bye")
        finally:
            await server.close()

    asyncio.run(main())


def test_exit_hooks_run_on_reload_and_the_old_version_finishes_its_requests(tmp_path: Path) -> None:
    async def main() -> None:
        source = """
            import asyncio
            import modal

            app = modal.App("swap")

            @app.cls()
            class Versioned:
                @modal.exit()
                def bye(self):
                    print("exit v{v}")

                @modal.fastapi_endpoint()
                async def web(self, sleep: float = 0.0):
                    await asyncio.sleep(sleep)
                    return {v}
        """
        server, version, logs, manifest, bundle = await running(tmp_path, source.replace("{v}", "1"))
        try:
            url = version.infos[0].url
            async with httpx.AsyncClient(timeout=60) as client:
                assert (await client.get(url)).json() == 1
                slow = asyncio.create_task(client.get(url, params={"sleep": 1.5}))
                await asyncio.sleep(0.3)
                from sampan.server.bundle import read_files, write_bundle
                from tests.server_helpers import load

                app_file = tmp_path / "app.py"
                app_file.write_text(app_file.read_text().replace("exit v1", "exit v2").replace("return 1", "return 2"))
                manifest2, root, files = load(app_file)
                bundle2 = write_bundle(tmp_path / "home", read_files(root, files))
                await server.publish("app", manifest2, bundle2, ephemeral=True)
                assert (await client.get(url)).json() == 2  # new requests: new version
                assert (await slow).json() == 1  # the in-flight one finished on the old version
            for _ in range(100):
                if "exit v1" in logs.text():
                    break
                await asyncio.sleep(0.05)
            assert "exit v1" in logs.text()
        finally:
            await server.close()

    asyncio.run(main())
