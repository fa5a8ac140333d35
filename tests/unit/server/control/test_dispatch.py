"""The control API in memory: `ControlServer.dispatch` over a real app server, store and invoker, with
the fake backend of tests/fakes.py beyond the seam. No socket to the control API, no process."""

from __future__ import annotations

import asyncio
import base64
import json
import pickle
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cloudpickle

from sampan.server.assemble import Assembly, assemble
from sampan.server.store import Store, Workspace
from tests import fakes


class Answer:
    """An in-memory `Writer`: what the handler wrote, parsed as the client would read it."""

    def __init__(self) -> None:
        self.raw = bytearray()

    def write(self, data: bytes) -> None:
        self.raw += data

    async def drain(self) -> None:
        return None

    @property
    def status(self) -> int:
        return int(self.raw.split(b" ", 2)[1])

    @property
    def body(self) -> bytes:
        head, _, body = bytes(self.raw).partition(b"\r\n\r\n")
        if b"transfer-encoding: chunked" not in head:
            return body
        out, rest = bytearray(), body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2:]
        return bytes(out)

    def json(self) -> Any:
        return json.loads(self.body)


def with_server(tmp_path: Path, test: Callable[[Assembly, Any], Awaitable[None]], store: bool = True) -> None:
    async def main() -> None:
        home = tmp_path / "home"
        db = Store(home) if store else None
        assembly = assemble(fakes.settings(home), backend=fakes.FakeBackend(), store=db)
        await assembly.server.start()
        try:
            ws = db.workspace("tester") if db is not None else None
            await test(assembly, ws)
        finally:
            for key in list(assembly.server.apps):
                await assembly.server.stop_app(key, drain_timeout=1)
            await assembly.close()
            if db is not None:
                db.close()

    asyncio.run(main())


async def call(assembly: Assembly, ws: Any, method: str, target: str, body: Any = None) -> Answer:
    answer = Answer()
    await assembly.control.dispatch(method, target, ws, body, answer)
    return answer


def test_health_names_the_callers_workspace(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        answer = await call(assembly, ws, "GET", "/v1/health")
        assert answer.status == 200
        assert answer.json() == {"ok": True, "server_id": "test-server", "workspace": "tester"}

    with_server(tmp_path, test)


def test_unknown_routes_are_404_and_wrong_methods_405(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        assert (await call(assembly, ws, "GET", "/v1/nothing")).status == 404
        assert (await call(assembly, ws, "DELETE", "/v1/health")).status == 405
        assert (await call(assembly, ws, "GET", "/v1/apps/x/y/z")).status == 404

    with_server(tmp_path, test)


def test_bad_bodies_are_400_with_a_reason(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        answer = await call(assembly, ws, "POST", "/v1/secrets", ["not", "an", "object"])
        assert answer.status == 400 and "JSON object" in answer.json()["error"]
        answer = await call(assembly, ws, "POST", "/v1/secrets", {"values": {"A": "1"}})
        assert answer.status == 400 and "'name'" in answer.json()["error"]
        answer = await call(assembly, ws, "POST", "/v1/secrets", {"name": "s", "values": {"A": 1}})
        assert answer.status == 400 and answer.json() == {"error": "Secret values must be strings."}

    with_server(tmp_path, test)


def test_secrets_are_the_callers_workspace_only(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        other = assembly.store.workspace("other")
        assert (await call(assembly, ws, "POST", "/v1/secrets", {"name": "s", "values": {"K": "v"}})).status == 200
        mine = (await call(assembly, ws, "GET", "/v1/secrets")).json()
        theirs = (await call(assembly, other, "GET", "/v1/secrets")).json()
        assert [s["name"] for s in mine] == ["s"] and theirs == []
        assert (await call(assembly, other, "DELETE", "/v1/secrets/s")).status == 404
        assert (await call(assembly, ws, "DELETE", "/v1/secrets/s")).json() == {"deleted": "s"}

    with_server(tmp_path, test)


def test_routes_of_the_store_say_so_on_a_server_without_one(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        answer = await call(assembly, Workspace("embedded", "tester"), "GET", "/v1/secrets")
        assert answer.status == 400 and "sampan server start" in answer.json()["error"]

    with_server(tmp_path, test, store=False)


def test_a_published_app_is_found_listed_and_called(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        server = assembly.server
        version = await server.publish("tester/demo", fakes.manifest(calls=("add",)),
                                       fakes.bundle(server.settings.home), ephemeral=False, workspace="tester")
        assert version.web_urls["hello"].startswith("http://")
        found = (await call(assembly, ws, "GET", "/v1/functions/demo/hello")).json()
        assert found == {"web_url": version.web_urls["hello"]}
        other = assembly.store.workspace("other")
        assert (await call(assembly, other, "GET", "/v1/functions/demo/hello")).status == 404

        args = base64.b64encode(cloudpickle.dumps(((1, 2), {}))).decode()
        body = {"app": "demo", "function": "add", "params": {}, "args": args, "mode": "call"}
        answer = await call(assembly, ws, "POST", "/v1/calls", body)
        assert answer.status == 200
        outcome = base64.b64decode(answer.json()["result"])
        assert outcome[:1] == b"O" and pickle.loads(outcome[1:]) == ("called", ((1, 2), {}))
        assert (await call(assembly, other, "POST", "/v1/calls", body)).status == 404

        rows = (await call(assembly, ws, "GET", "/v1/containers")).json()
        assert {r["function"] for r in rows} == {"add"} and all(r["workspace"] == "tester" for r in rows)
        assert (await call(assembly, other, "GET", "/v1/containers")).json() == []

        spawned = (await call(assembly, ws, "POST", "/v1/calls", {**body, "mode": "spawn"})).json()["call_id"]
        state = (await call(assembly, ws, "GET", f"/v1/calls/{spawned}?timeout=10")).json()
        assert state["status"] == "SUCCESS" and state["result"] is not None
        assert (await call(assembly, other, "GET", f"/v1/calls/{spawned}")).status == 404

    with_server(tmp_path, test)


def test_a_web_function_cannot_be_called_with_remote(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        server = assembly.server
        await server.publish("tester/demo", fakes.manifest(), fakes.bundle(server.settings.home), ephemeral=False,
                             workspace="tester")
        body = {"app": "demo", "function": "hello", "params": {}, "args": "", "mode": "call"}
        answer = await call(assembly, ws, "POST", "/v1/calls", body)
        assert answer.status == 400 and "webhook function cannot be invoked" in answer.json()["error"]

    with_server(tmp_path, test)


def test_a_variant_gets_a_pool_of_its_own_with_its_options(tmp_path: Path) -> None:
    async def test(assembly: Assembly, ws: Any) -> None:
        server = assembly.server
        version = await server.publish("tester/demo", fakes.manifest(calls=("add",)),
                                       fakes.bundle(server.settings.home), ephemeral=False, workspace="tester")
        args = base64.b64encode(cloudpickle.dumps(((1,), {}))).decode()
        body = {"app": "demo", "function": "add", "params": {}, "args": args, "mode": "call"}
        variant = {"max_inputs": 4, "timeout": 7, "env": {"K": "v"}, "resources": {"cpu": 2.0}}
        assert (await call(assembly, ws, "POST", "/v1/calls", {**body, "variant": variant})).status == 200
        base = version.callables["add"]
        (only,) = base.variants.values()
        assert (only.entry.max_inputs, only.entry.timeout, only.entry.resources["cpu"]) == (4, 7, 2.0)
        assert only.env["K"] == "v" and "K" not in base.env
        assert list(only.pools) == [()] and only.pools[()] is not base.pools.get(())
        assert len((await call(assembly, ws, "GET", "/v1/containers")).json()) == 1  # the variant's
        assert (await call(assembly, ws, "POST", "/v1/calls", body)).status == 200
        assert len((await call(assembly, ws, "GET", "/v1/containers")).json()) == 2  # and the function's
        bad = await call(assembly, ws, "POST", "/v1/calls", {**body, "variant": {"gpu_count": 9}})
        assert bad.status == 400 and "Unknown function options: gpu_count" in bad.json()["error"]

    with_server(tmp_path, test)
