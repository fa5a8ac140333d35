"""The gateway's proxy in memory: a real gateway, pools and route table in the test's event loop, the
fake backend of tests/fakes.py beyond the seam. Clients speak raw HTTP/1.1 over loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sampan.config import ProxyLimits
from sampan.server.apps import AppServer
from sampan.server.assemble import assemble
from sampan.server.gateway import errors
from sampan.server.store import Store
from tests import fakes


async def request(url: str, raw: bytes | None = None, path: str = "/") -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port.rstrip("/")))
    writer.write(raw or f"GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def with_app(tmp_path: Path, test: Callable[[AppServer, dict[str, str]], Awaitable[None]],
             limits: ProxyLimits | None = None, manifest: Any = None, store: bool = False,
             request_log: bool = True) -> None:
    async def main() -> None:
        home = tmp_path / "home"
        db = Store(home) if store else None
        assembly = assemble(fakes.settings(home, limits=limits or ProxyLimits(), request_log=request_log),
                            backend=fakes.FakeBackend(), store=db)
        server = assembly.server
        await server.start()
        try:
            version = await server.publish("tester/demo", manifest or fakes.manifest(), fakes.bundle(home),
                                           ephemeral=False, workspace="tester")
            await test(server, version.web_urls)
        finally:
            for key in list(server.apps):
                await server.stop_app(key, drain_timeout=1)
            await assembly.close()
            if db is not None:
                db.close()

    asyncio.run(main())


def test_a_request_reaches_a_container_and_its_answer_comes_back(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        status, body = await request(urls["hello"], path="/items?x=1")
        assert status == 200
        cid, method, target = body.decode().split(" ")
        assert cid.startswith("ta-") and (method, target) == ("GET", "/items?x=1")

    with_app(tmp_path, test)


def test_a_stopped_app_answers_modals_text(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        await server.stop_app("tester/demo", drain_timeout=1)
        status, body = await request(urls["hello"])
        assert (status, body.decode()) == (404, errors.APP_STOPPED)

    with_app(tmp_path, test)


def test_a_smuggling_head_is_refused_before_any_container_sees_it(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        raw = (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
               b"0\r\n\r\n")
        status, body = await request(urls["hello"], raw)
        assert (status, body.decode()) == (400, errors.BOTH_FRAMINGS)

    with_app(tmp_path, test)


def test_the_rate_limit_answers_429_with_the_workspace(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        statuses = [(await request(urls["hello"]))[0] for _ in range(6)]
        assert statuses.count(200) >= 1 and statuses[-1] == 429
        _, body = await request(urls["hello"])
        assert body.decode() == errors.RATE_LIMITED.format(workspace="tester", rate=1)

    with_app(tmp_path, test, limits=ProxyLimits(rate=1, burst_seconds=2))


def test_proxy_auth_is_checked_against_the_store(tmp_path: Path) -> None:
    manifest = fakes.manifest()
    entry = manifest.functions[0]
    protected = replace(manifest, functions=(replace(entry, web={**entry.web, "requires_proxy_auth": True}),))

    async def test(server: AppServer, urls: dict[str, str]) -> None:
        assert server.store is not None
        status, body = await request(urls["hello"])
        assert (status, body.decode()) == (401, errors.MISSING_PROXY_CREDENTIALS)
        host = urls["hello"].removeprefix("http://").rstrip("/")
        bad = f"GET / HTTP/1.1\r\nhost: {host}\r\nmodal-key: wk-x\r\nmodal-secret: ws-y\r\n" \
              f"connection: close\r\n\r\n".encode()
        status, body = await request(urls["hello"], bad)
        assert (status, body.decode()) == (401, errors.INVALID_PROXY_CREDENTIALS)
        token_id, secret = server.store.create_proxy_token(server.store.workspace("tester"), "t")
        good = f"GET / HTTP/1.1\r\nhost: {host}\r\nmodal-key: {token_id}\r\nmodal-secret: {secret}\r\n" \
               f"connection: close\r\n\r\n".encode()
        assert (await request(urls["hello"], good))[0] == 200
        other_id, other_secret = server.store.create_proxy_token(server.store.workspace("other"), "t")
        theirs = f"GET / HTTP/1.1\r\nhost: {host}\r\nmodal-key: {other_id}\r\nmodal-secret: {other_secret}\r\n" \
                 f"connection: close\r\n\r\n".encode()
        assert (await request(urls["hello"], theirs))[0] == 401

    with_app(tmp_path, test, manifest=protected, store=True)


def test_every_routed_request_is_logged_with_its_status_and_wait(tmp_path: Path) -> None:
    async def test(server: AppServer, urls: dict[str, str]) -> None:
        await request(urls["hello"], path="/a")  # the first: waits for a container to start
        await request(urls["hello"], path="/b")
        smuggled = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
        await request(urls["hello"], smuggled)  # refused before routing: no endpoint, not logged
        records = list(server.requests.records)
        assert [(r.path, r.status, r.function, r.workspace, r.app) for r in records] == [
            ("/a", 200, "hello", "tester", "tester/demo"), ("/b", 200, "hello", "tester", "tester/demo")]
        assert records[0].cold and not records[1].cold and records[0].queue_ms > records[1].queue_ms
        assert records[0].bytes_out > 0 and records[0].container.startswith("ta-")
        stats = server.metrics.stats("tester", "tester/demo")["hello"]
        assert stats["requests"] == 2 and stats["cold_starts"] == 1

    with_app(tmp_path, test)


def test_refused_requests_are_logged_and_logging_can_be_off(tmp_path: Path) -> None:
    async def refused(server: AppServer, urls: dict[str, str]) -> None:
        for _ in range(4):
            await request(urls["hello"])
        assert [r.status for r in server.requests.records][-1] == 429

    with_app(tmp_path, refused, limits=ProxyLimits(rate=1, burst_seconds=2))

    async def off(server: AppServer, urls: dict[str, str]) -> None:
        await request(urls["hello"])
        assert not server.requests.records

    with_app(tmp_path / "off", off, request_log=False)


def test_sessions_of_a_private_server_need_its_proxy_token_and_stay_bound_to_their_server(tmp_path: Path) -> None:
    manifest = fakes.manifest(web=("hello", "other"))
    private = replace(manifest, functions=tuple(
        replace(e, web={**e.web, "sessioned": True, "requires_proxy_auth": True}) for e in manifest.functions))

    async def test(server: AppServer, urls: dict[str, str]) -> None:
        assert server.store is not None
        host = urls["hello"].removeprefix("http://").rstrip("/")
        start = f"POST /_modal/sessions/start HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0\r\nconnection: close\r\n"
        status, body = await request(urls["hello"], (start + "\r\n").encode())
        assert (status, body.decode()) == (401, errors.MISSING_PROXY_CREDENTIALS)
        token_id, secret = server.store.create_proxy_token(server.store.workspace("tester"), "t")
        creds = f"modal-key: {token_id}\r\nmodal-secret: {secret}\r\n"
        status, body = await request(urls["hello"], (start + creds + "\r\n").encode())
        assert status == 200
        session = json.loads(body)["token"]
        use = (f"GET / HTTP/1.1\r\nhost: {host}\r\n{creds}modal-authorization: Bearer {session}\r\n"
               "connection: close\r\n\r\n")
        assert (await request(urls["hello"], use.encode()))[0] == 200
        other = urls["other"].removeprefix("http://").rstrip("/")
        elsewhere = use.replace(host, other)  # the token of hello's session at another server's URL
        status, body = await request(urls["other"], elsewhere.encode())
        assert (status, body.decode()) == (404, errors.SESSION_GONE)

    with_app(tmp_path, test, manifest=private, store=True)
