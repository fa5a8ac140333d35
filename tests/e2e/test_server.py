"""The embedded server driven directly (real gateway, real local containers), for what `serve`
does not show from outside: a stopped app's 404, scale to zero, lifecycle hooks, class pools."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.server_helpers import running

pytestmark = pytest.mark.slow


def test_stopped_app_answers_modal_404_on_its_old_urls(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, logs, _, _ = await running(tmp_path, """
            import modal
            app = modal.App("stoppable")

            @app.function()
            @modal.fastapi_endpoint()
            def f():
                return "up"
        """)
        try:
            info = version.infos[0]
            async with httpx.AsyncClient(timeout=30) as client:
                host = f"{info.subdomain}.localhost:{server.gateway.port}"
                gateway = f"http://127.0.0.1:{server.gateway.port}/"
                assert (await client.get(gateway, headers={"Host": host})).json() == "up"
                await server.stop_app("app")
                r = await client.get(gateway, headers={"Host": host})
                assert (r.status_code, r.text) == (404, "modal-http: app for invoked web endpoint is stopped")
        finally:
            await server.close()

    asyncio.run(main())


def test_idle_containers_scale_to_zero_and_hooks_run(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, logs, _, _ = await running(tmp_path, """
            import modal
            app = modal.App("lifecycle")

            @app.cls(scaledown_window=2)
            class Model:
                name: str = modal.parameter(default="base")

                @modal.enter()
                async def load(self):
                    print(f"enter {self.name}")
                    self.ready = True

                @modal.exit()
                def unload(self):
                    print(f"exit {self.name}")

                @modal.fastapi_endpoint()
                def web(self):
                    return {"name": self.name, "ready": self.ready}
        """)
        try:
            url = version.infos[0].url
            endpoint = next(iter(version.endpoints.values()))
            async with httpx.AsyncClient(timeout=30) as client:
                assert (await client.get(url)).json() == {"name": "base", "ready": True}
                assert (await client.get(url, params={"name": "big"})).json() == {"name": "big", "ready": True}
                r = await client.get(url, params={"name": "x", "unrelated": "1"})
                assert r.json()["name"] == "x"
            assert len(endpoint.pools) == 3  # one pool per distinct parameter values
            assert sum(p.stats()["containers"] for p in endpoint.pools.values()) == 3
            for _ in range(100):  # scaledown_window=2: all gone within a few seconds
                if sum(p.stats()["containers"] for p in endpoint.pools.values()) == 0:
                    break
                await asyncio.sleep(0.1)
            assert sum(p.stats()["containers"] for p in endpoint.pools.values()) == 0
            await asyncio.sleep(0.5)
            text = logs.text()
            for name in ("base", "big", "x"):
                assert f"enter {name}" in text and f"exit {name}" in text
        finally:
            await server.close()

    asyncio.run(main())


def test_scheme_host_and_client_reach_the_app(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, logs, _, _ = await running(tmp_path, """
            import modal
            app = modal.App("urls")

            @app.function()
            @modal.asgi_app()
            def web():
                from fastapi import FastAPI, Request
                api = FastAPI()

                @api.get("/where")
                def where(request: Request):
                    return {
                        "url": str(request.url_for("where")),
                        "client": request.client.host,
                        "host": request.headers["host"],
                        "call_id": modal.current_function_call_id(),
                    }
                return api
        """)
        try:
            url = version.infos[0].url
            async with httpx.AsyncClient(timeout=30) as client:
                r = await client.get(url + "/where")
            body = r.json()
            assert body["url"] == url + "/where"
            assert body["client"] == "127.0.0.1"
            assert body["host"] == url.removeprefix("http://")
            assert body["call_id"] == r.headers["modal-function-call-id"]
        finally:
            await server.close()

    asyncio.run(main())


def test_docs_only_with_docs_true(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, logs, _, _ = await running(tmp_path, """
            import modal
            app = modal.App("docs")

            @app.function()
            @modal.fastapi_endpoint(docs=True)
            def with_docs():
                return 1

            @app.function()
            @modal.fastapi_endpoint()
            def without_docs():
                return 2
        """)
        try:
            urls = {i.tag: i.url for i in version.infos}
            async with httpx.AsyncClient(timeout=30) as client:
                assert (await client.get(urls["with_docs"] + "/docs")).status_code == 200
                assert (await client.get(urls["with_docs"] + "/openapi.json")).status_code == 200
                assert (await client.get(urls["without_docs"] + "/docs")).status_code == 404
                assert (await client.get(urls["without_docs"] + "/openapi.json")).status_code == 404
                r = await client.options(urls["without_docs"], headers={
                    "Origin": "https://example.com", "Access-Control-Request-Method": "GET"})
                assert r.headers["access-control-allow-origin"] in ("*", "https://example.com")
        finally:
            await server.close()

    asyncio.run(main())


def test_streaming_response_arrives_before_it_ends_and_large_bodies_stream(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, logs, _, _ = await running(tmp_path, """
            import asyncio
            import modal
            from fastapi import Request
            from fastapi.responses import StreamingResponse

            app = modal.App("stream")

            @app.function()
            @modal.fastapi_endpoint()
            async def ticks():
                async def gen():
                    for i in range(3):
                        yield f"tick {i}\\n"
                        await asyncio.sleep(0.5)
                return StreamingResponse(gen(), media_type="text/plain")

            @app.function()
            @modal.fastapi_endpoint(method="POST")
            async def count(request: Request):
                n = 0
                async for chunk in request.stream():
                    n += len(chunk)
                return {"bytes": n}
        """)
        try:
            urls = {i.tag: i.url for i in version.infos}
            async with httpx.AsyncClient(timeout=30) as client:
                await client.get(urls["ticks"])  # warm
                loop = asyncio.get_running_loop()
                start = loop.time()
                async with client.stream("GET", urls["ticks"]) as r:
                    first = None
                    async for _ in r.aiter_lines():
                        if first is None:
                            first = loop.time() - start
                total = loop.time() - start
                assert first is not None and first < 0.4 and total > 0.9

                async def body():  # 64 MiB, chunked, never whole in memory on our side
                    block = b"x" * (1 << 20)
                    for _ in range(64):
                        yield block

                r = await client.post(urls["count"], content=body())
                assert r.json() == {"bytes": 64 << 20}
        finally:
            await server.close()

    asyncio.run(main())
