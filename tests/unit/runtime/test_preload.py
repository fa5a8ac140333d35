"""A forked container of a FastAPI endpoint imports nothing the template could have loaded for it
(runtime/template.py PRELOAD): every module imported after the fork is paid by every container of a
burst (uvicorn's sans-I/O WebSocket protocol, not preloaded, was ~9 ms of a ~50 ms cold start)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile

import pytest

from sampan.runtime import container, kinds, template

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork templates need fork()")


def _serve_once() -> None:
    """What a forked container of a `fastapi_endpoint` does: build the app, start uvicorn as the runtime
    does, answer one request, stop."""
    async def handler() -> str:
        return "ok"

    app = kinds.fastapi_endpoint_app(handler, "GET", False)
    path = os.path.join(tempfile.mkdtemp(), "c.sock")

    async def main() -> None:
        server = asyncio.create_task(container._serve_asgi(app, container.StatusPipe(None), path))
        while not os.path.exists(path):
            await asyncio.sleep(0.001)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200")
        writer.close()
        os.kill(os.getpid(), 15)  # uvicorn's graceful stop, as the backend's
        await server

    import signal

    import uvloop

    signal.signal(signal.SIGTERM, lambda *_: None)  # as the runtime does: uvicorn re-raises what it caught
    uvloop.run(main())


def test_a_forked_fastapi_container_imports_nothing_more() -> None:
    pytest.importorskip("fastapi")
    template.preload()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the container
        code = 1
        try:
            os.close(read)
            before = set(sys.modules)
            _serve_once()
            os.write(write, json.dumps(sorted(set(sys.modules) - before)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked container failed"
    assert json.loads(data) == [], f"imported in every container; add them to template.PRELOAD: {data.decode()}"
