"""The server bounds what it holds of spawned calls' results (server/invoke.py, finding 15)."""

from __future__ import annotations

import asyncio

from sampan.server.invoke import Invoker, SpawnedCall


def test_unfetched_results_expire_oldest_first_past_the_byte_budget() -> None:
    async def main() -> None:
        invoker = Invoker(max_kept_bytes=250)
        calls = []
        for i in range(4):
            call = SpawnedCall(f"fc-{i}", "ws", "f", outcome=b"O" + b"x" * 99)
            invoker._keep(call)
            call.done.set()
            invoker._kept(call)
            calls.append(call)
        assert [c.expired for c in calls] == [True, True, False, False]
        assert invoker.kept_bytes == 200 and calls[0].outcome is None

    asyncio.run(main())


def test_a_call_graph_never_links_across_workspaces() -> None:
    invoker = Invoker()
    mine = invoker.child("fc-web", "alice", "job", "web")
    assert mine is not None and mine.root().id == "fc-web" and mine.root().function == "web"
    assert invoker.child("fc-web", "bob", "job") is None, "bob names alice's input as his parent"
    assert [c.id for c in invoker.calls["fc-web"].children] == [mine.id]
