"""The same end-to-end scenario against each backend (tests/e2e/backend_scenario.py), in a network
namespace of the test's own where loopback is the only interface (a Ray cluster then keeps all of
its traffic on 127.0.0.1). The Ray run uses a real two-node cluster (nodes labelled region a and b):
seeds served; a container on B calls functions on A (`.remote`, `.map`, `.spawn`, a class, a lookup),
writes a Dict and a Queue and commits a Volume that a container on A reads after `reload()`;
web_server containers of one function on both nodes; containers spread over nodes, a request that
fits one node lands there, one that fits none fails clearly, and a node removed under load loses
only what ran on it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sampan.server.images.builder import ImageBuilder
from tests.helpers import IMAGES_DIR
from tests.server_helpers import load

pytestmark = pytest.mark.slow
SCENARIO = Path(__file__).with_name("backend_scenario.py")


def _netns_works() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(["unshare", "-rn", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=30)
    return probe.returncode == 0


def _prebuild_images() -> None:
    """The seed's image, built here (with the network) so that the namespace needs none."""
    manifest, _, _ = load(Path(__file__).resolve().parents[2] / "examples" / "hello.py")
    asyncio.run(ImageBuilder(Path(IMAGES_DIR)).build(list(manifest.functions[0].image)))


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_the_seed_scenario_on_each_backend(backend: str, tmp_path: Path) -> None:
    if backend == "ray":
        pytest.importorskip("ray", reason='the Ray backend needs `pip install "sampan[ray]"`')
    netns = _netns_works()
    if backend == "ray" and not netns:
        pytest.skip("no network namespaces here (unshare -rn): Ray would advertise the machine's address")
    _prebuild_images()
    out = tmp_path / "out.json"
    env = {**os.environ, "SAMPAN_IMAGES": IMAGES_DIR, "RAY_USAGE_STATS_ENABLED": "0"}
    command = [sys.executable, str(SCENARIO), backend, str(out)]
    if netns:  # the local backend keeps to loopback by itself; it runs in the namespace where there is one
        command = ["unshare", "-rn", "sh", "-c", f'ip link set lo up && exec "{sys.executable}" '
                   f'"{SCENARIO}" {backend} "{out}"']
    done = subprocess.run(command, capture_output=True, text=True, timeout=400, env=env)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert "error" not in result, result.get("error")
    assert result["square"] == {"square": 1764}
    assert result["echo"] == {"you_sent": {"a": 1}}
    assert result["hello"] == {"message": "Hello, Ray!"}
    assert result["stream"] == "data: a\n\ndata: b\n\n"
    if backend == "ray":
        assert result["where_containers"] >= 4, "six concurrent requests use all four warm containers"
        assert result["where_nodes"] == 2, "containers spread over both nodes"
        assert result["big_node"] == result["big_node_expected"], "cpu=1.5 fits only the 2-CPU node"
        status, text = result["huge"]
        assert status == 500 and "No node of the Ray cluster can hold a container with cpu=64" in text
        a, b = result["node_a"], result["node_b"]
        writer, reader = result["writer"], result["reader"]
        assert writer["node"] == b and writer["double"] == {"x": 42, "node": a}, "B calls a function pinned to A"
        assert writer["mapped"] == [0, 2, 4, 6, 8] and writer["spawned"] == 8 and writer["lookup"] == 2
        assert writer["greeting"] == f"hello ray from {a}"
        assert reader["node"] == a and reader["before"] is False, "A started before B wrote"
        assert reader["after"] == "from node b", "B's commit is seen on A after reload()"
        assert reader["private"] is False, "what B wrote without committing stays on B"
        assert reader["dict"] == {"node": b, "double": 42} and reader["queue"] == "from node b"
        assert result["web_failed"] == 0 and {w["node"] for w in result["web"]} == {a, b}, \
            "web_server containers of one function on both nodes"
        assert result["web_container_nodes"] == sorted([a, b]), "the container list says which node"
        loss = result["node_loss"]
        assert loss["before"] > 0 and loss["after_ok"] > 0
        assert loss["nodes_before"] == 2 and loss["lost"] not in loss["nodes_after"], "replaced on the survivor"
        assert loss["failed_late"] == 0, "after the node is gone, every request succeeds elsewhere"
        assert loss["failed"] <= 4, "only the requests in flight on the lost node fail"


def test_an_unreachable_ray_cluster_is_a_clear_error_at_start(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason='the Ray backend needs `pip install "sampan[ray]"`')
    env = {**os.environ, "SAMPAN_HOME": str(tmp_path / "home"), "SAMPAN_GATEWAY_PORT": "0"}
    done = subprocess.run([sys.executable, "-m", "sampan", "server", "start", "--backend", "ray",
                           "--ray-address", "127.0.0.1:1", "--control-port", "0"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode != 0
    assert "Could not reach the Ray cluster at 127.0.0.1:1" in done.stderr
