"""One end-to-end scenario, run against a backend named on the command line (tests/e2e/test_backends.py).

    python tests/e2e/backend_scenario.py local|ray OUT.json

For `ray` it starts a real two-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a
head with 1 CPU and a node with 2), so the test runs it inside a network namespace of its own
where loopback is the only interface: Ray then uses 127.0.0.1 for every node. The server, the
gateway and the clients all run here, in-process, against real containers. Results (and any
failure) go to OUT.json for the test to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import textwrap
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from sampan.backends.base import get_backend  # noqa: E402
from sampan.server.apps import AppServer  # noqa: E402
from sampan.server.assemble import Sinks, assemble  # noqa: E402
from sampan.server.bundle import read_files, write_bundle  # noqa: E402
from sampan.server.images.builder import build_on_node  # noqa: E402
from sampan.server.store import Store  # noqa: E402
from tests.server_helpers import Logs, load, settings  # noqa: E402

PLACED = """
    import os, time
    import modal

    app = modal.App("placed")

    @app.function(min_containers=4)
    @modal.fastapi_endpoint()
    def where():
        time.sleep(0.3)
        return {"pid": os.environ["MODAL_TASK_ID"], "node": os.environ.get("SAMPAN_RAY_NODE_ID")}

    @app.function(cpu=1.5)
    @modal.fastapi_endpoint()
    def big():
        return {"node": os.environ.get("SAMPAN_RAY_NODE_ID")}

    @app.function(cpu=64)
    @modal.fastapi_endpoint()
    def huge():
        return "never"
"""


async def publish(server: AppServer, path: Path, key: str) -> dict[str, str]:
    manifest, root, files = load(path)
    bundle = write_bundle(server.settings.home, read_files(root, files))
    version = await server.publish(key, manifest, bundle, ephemeral=True)
    return {i.tag: i.url for i in version.infos}


async def seeds(server: AppServer, client: Any, out: dict[str, Any]) -> None:
    """The seed example and the guides' no-image examples, answered as the guides say."""
    urls = await publish(server, ROOT / "examples" / "hello.py", "hello")
    out["square"] = (await client.get(urls["square"], params={"x": 42})).json()
    out["echo"] = (await client.post(urls["echo"], json={"a": 1})).json()
    cheat = await publish(server, ROOT / "examples" / "guides" / "cheatsheet.py", "cheat")
    out["hello"] = (await client.get(cheat["hello"], params={"name": "Ray"})).json()
    out["stream"] = (await client.get(cheat["stream_generate"], params={"prompt": "a b"})).text


async def across_nodes(server: AppServer, client: Any, out: dict[str, Any], tmp: Path) -> None:
    """A container on node B (region b) calls functions on node A, writes a Dict and a Queue and commits a
    Volume; a container on node A, started before, sees the commit after reload() (and not what B wrote
    without committing); four web_server containers of one function listen on both nodes."""
    app = tmp / "across_app.py"  # loading leaves a manifest beside the script: not in the source tree
    shutil.copy(Path(__file__).with_name("across_app.py"), app)
    urls = await publish(server, app, "across")
    await ready(server, "reader", 1)
    await ready(server, "web", 4)
    out["writer"] = answer(await client.get(urls["writer"], params={"text": "from node b"}))
    out["reader"] = answer(await client.get(urls["reader"]))
    answers = await asyncio.gather(*(client.get(urls["web"]) for _ in range(8)))
    out["web"] = [a.json() for a in answers if a.status_code == 200]
    out["web_failed"] = sum(a.status_code != 200 for a in answers)
    out["web_container_nodes"] = sorted({c.get("node") or "" for c in server.describe_containers()
                                         if c["function"] == "web" and c["state"] == "ready"})
    await server.stop_app("across")  # its containers give their CPUs back for what follows


def answer(response: Any) -> Any:
    return response.json() if response.status_code == 200 else {"status": response.status_code, "text": response.text}


async def ready(server: AppServer, function: str, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        up = [c for c in server.describe_containers() if c["function"] == function and c["state"] == "ready"]
        if len(up) >= count:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{count} containers of {function} were not ready in {timeout} s")


async def spread_and_placement(server: AppServer, client: Any, out: dict[str, Any], tmp: Path) -> None:
    (tmp / "placed.py").write_text(textwrap.dedent(PLACED))
    urls = await publish(server, tmp / "placed.py", "placed")
    # Four warm containers (min_containers), spread over the nodes: wait for them, so that what is
    # checked is placement and routing, not how fast containers happen to start.
    await ready(server, "where", 4)
    answers = [r.json() for r in await asyncio.gather(*(client.get(urls["where"]) for _ in range(6)))]
    out["where_containers"] = len({a["pid"] for a in answers})
    out["where_nodes"] = len({a["node"] for a in answers})
    out["big_node"] = (await client.get(urls["big"])).json()["node"]
    huge = await client.get(urls["huge"])
    out["huge"] = [huge.status_code, huge.text]

    # A node removed under load: only what ran there fails, and everything after it succeeds.
    from ray.cluster_utils import Cluster  # noqa: F401 - only to fail loudly if Ray went away

    cluster = server.backend._cluster  # type: ignore[attr-defined]
    statuses: list[int] = []
    nodes: list[str | None] = []
    stop = asyncio.Event()

    async def paced() -> None:
        while not stop.is_set():
            try:
                r = await client.get(urls["where"])
                statuses.append(r.status_code)
                nodes.append(r.json()["node"] if r.status_code == 200 else None)
            except Exception:  # noqa: BLE001 - counted as a failure
                statuses.append(0)
                nodes.append(None)

    loaders = [asyncio.create_task(paced()) for _ in range(4)]
    await asyncio.sleep(2.0)
    victim = next(n for n in cluster.list_all_nodes() if not n.head)
    # A machine that dies takes every process on it: Ray's (the node's raylet and its workers,
    # the actors) and what they started (templates, containers). Collect them, then kill them all.
    doomed = [d for _, p in victim.live_processes() for d in _descendants(p.pid)]
    cluster.remove_node(victim, allow_graceful=False)
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    removed_at = len(statuses)
    await asyncio.sleep(6.0)
    stop.set()
    await asyncio.gather(*loaders)
    out["node_loss"] = {"before": statuses[:removed_at].count(200), "failed": sum(s != 200 for s in statuses),
                        "failed_late": sum(s != 200 for s in statuses[removed_at + 8:]),
                        "after_ok": statuses[removed_at + 8:].count(200),
                        "nodes_before": len({n for n in nodes[:removed_at] if n}),
                        "nodes_after": sorted({n for n in nodes[removed_at + 8:] if n}),
                        "lost": victim.node_id}


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


async def main(backend_name: str, out_path: Path) -> None:
    import httpx

    out: dict[str, Any] = {"backend": backend_name}
    tmp = out_path.parent
    cluster = None
    try:
        options: dict[str, Any] = {"home": tmp / "home"}
        if backend_name == "ray":
            from ray.cluster_utils import Cluster

            started = time.monotonic()
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                                    "labels": {"region": "a"}})
            out["node_a"] = cluster.head_node.node_id
            out["big_node_expected"] = out["node_b"] = cluster.add_node(num_cpus=2, labels={"region": "b"}).node_id
            out["cluster_start_s"] = round(time.monotonic() - started, 1)
            options["address"] = cluster.address
        if backend_name == "ray":
            options["build_image"] = build_on_node
        backend = get_backend(backend_name, **options)
        if cluster is not None:
            backend._cluster = cluster  # type: ignore[attr-defined]
        logs = Logs()
        assembly = assemble(settings(tmp / "home"), backend=backend, sinks=Sinks(logs.log, logs.error),
                            stop_grace=5, store=Store(tmp / "home"))  # a store: Dicts and Queues
        server = assembly.server
        await server.start()
        await assembly.control.start()  # containers on every node call functions and use Dicts through it
        try:
            async with httpx.AsyncClient(timeout=120) as client:
                await seeds(server, client, out)
                if backend_name == "ray":
                    await across_nodes(server, client, out, tmp)
                    await spread_and_placement(server, client, out, tmp)
        finally:
            out["start_errors"] = logs.errors
            out["log_tail"] = [f"{tag} {stream}: {line}" for tag, stream, line in logs.lines[-60:]]
            await assembly.control.close()
            await server.close()
    except BaseException:  # noqa: BLE001 - reported to the test
        out["error"] = traceback.format_exc()
    finally:
        if cluster is not None:
            cluster.shutdown()
        out_path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
