"""A function's single calls take its container's call line (runtime/callline.py) end to end: a real
server, real containers in the sandbox (or plain processes where there is none), the invoker."""

from __future__ import annotations

import asyncio
import os
import pickle
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from sampan import callwire
from sampan.server.invoke import Invoker, new_call_id
from tests.server_helpers import running

pytestmark = pytest.mark.slow

APP = """
    import asyncio, os, time
    import modal

    app = modal.App("lines")

    @app.function()
    def square(x):
        return x * x, modal.current_function_call_id(), os.getpid()

    @app.function()
    async def later(x):
        await asyncio.sleep(0.01)
        return x + 1, modal.current_function_call_id()

    @app.function()
    def count(n):
        yield from range(n)

    @app.function(timeout=1)
    def stuck():
        time.sleep(30)

    @app.cls()
    class Scaler:
        factor: int = modal.parameter(default=3)

        @modal.method()
        def scale(self, x):
            return self.factor * x
"""


def _args(*args: Any) -> bytes:
    return cloudpickle.dumps((args, {}))


def _value(outcome: bytes) -> Any:
    assert outcome[:1] == callwire.VALUE, outcome[:300]
    return pickle.loads(outcome[1:])


def test_single_calls_go_over_the_call_line_and_generators_keep_the_call_app(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, _, _, _ = await running(tmp_path, APP)
        invoker = Invoker()

        def pool(tag: str, **params: Any) -> Any:
            return lambda: version.callables[tag].pool_for_params(params)

        try:
            call_id = new_call_id()
            value, seen_id, pid = _value(await invoker.run(pool("square"), _args(7), None, call_id))
            assert value == 49 and seen_id == call_id
            [pc] = pool("square")().containers.values()
            address = pc.backend.calls_address
            assert isinstance(address, str) and os.path.exists(address), address
            assert len(pc.lines) == 1, "the connection waits for the next call"
            again = _value(await invoker.run(pool("square"), _args(8), None))
            assert again[0] == 64 and again[2] == pid, "the same container, on the kept connection"

            assert _value(await invoker.run(pool("later"), _args(1), None, "fc-later"))[:2] == (2, "fc-later")
            assert _value(await invoker.run(pool("Scaler.scale"), _args(5), None)) == 15

            frames = [f async for f in invoker.stream(pool("count")(), _args(3))]
            assert [pickle.loads(f[1:]) for f in frames[:-1]] == [0, 1, 2] and frames[-1][:1] == callwire.END
            [gen] = pool("count")().containers.values()
            assert gen.backend.calls_address is None, "a generator's container has no call line"

            outcome = await invoker.run(pool("stuck"), _args(), None)
            assert callwire.status(outcome) == "TIMEOUT", outcome
        finally:
            await invoker.close()
            await server.close()
        assert not os.path.exists(address), "the call line's socket is removed with its container"

    asyncio.run(main())
