"""Containers forked from template processes (backends/templates.py, runtime/template.py), with
real processes: one template per image, what a fork must not share, memory snapshots, the
fallback to a plain spawn, and what happens when a template or the server dies."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.helpers import Serve, marker_pids, wait_until
from tests.server_helpers import running

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def process_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests pin the fork mechanics by pids and parents as the host sees them, so they run on the
    process runtime; test_sandbox.py checks the same forks inside the sandbox."""
    monkeypatch.setenv("SAMPAN_RUNTIME", "process")

PROBE = """
    import os, random, threading, time, uuid
    import modal

    app = modal.App("forks")

    def probe():
        fds = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                pass
        return {"pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0), "rand": random.random(),
                "uuid": str(uuid.uuid4()), "task": os.environ.get("MODAL_TASK_ID"),
                "secret": os.environ.get("WHO"), "leak": "SAMPAN_TEMPLATE_FD" in os.environ,
                "fds": sorted(fds.values()), "cwd": os.getcwd()}

    @app.function(secrets=[modal.Secret.from_dict({"WHO": "f"})])
    @modal.fastapi_endpoint()
    def f():
        time.sleep(0.5)
        return probe()

    @app.function(secrets=[modal.Secret.from_dict({"WHO": "g"})])
    @modal.fastapi_endpoint()
    def g():
        return probe()
"""


def _fd_targets(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


def _urls(version) -> dict[str, str]:  # noqa: ANN001
    return {i.tag: i.url for i in version.infos}


def test_containers_fork_from_one_template_per_image_and_share_nothing_they_should_not(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, logs, _, _ = await running(tmp_path, PROBE)
        try:
            urls = _urls(version)
            templates = server.backend.templates.running()
            assert len(templates) == 1, "functions of one image share one template, warmed at publish"
            template_pid = templates[0].proc.pid
            async with httpx.AsyncClient(timeout=30) as client:
                a, b, c = await asyncio.gather(client.get(urls["f"]), client.get(urls["f"]), client.get(urls["g"]))
            probes = [r.json() for r in (a, b, c)]
            assert len({p["pid"] for p in probes}) == 3, "concurrent requests got their own containers"
            for p in probes:
                assert p["ppid"] == template_pid, "a container is a fork of the template"
                assert p["pgid"] == p["pid"], "each container is its own process group"
                assert p["task"].startswith("ta-")
                assert not p["leak"]
                # Sockets and pipes have unique names; every epoll is "anon_inode:[eventpoll]".
                shared = {t for t in set(p["fds"]) & _fd_targets(template_pid) if not t.startswith("anon_inode:")}
                assert shared <= {"/dev/null"}, f"descriptors inherited from the template: {shared}"
            assert len({p["rand"] for p in probes}) == 3 and len({p["uuid"] for p in probes}) == 3
            assert [p["secret"] for p in probes] == ["f", "f", "g"], "secrets are per function, set after the fork"
            assert len({p["task"] for p in probes}) == 3
            assert len(server.backend.templates.running()) == 1
            assert logs.text().count("started by fork of template") == 3
            cmdline = Path(f"/proc/{template_pid}/cmdline").read_bytes()
            assert b"sampan.runtime.template" in cmdline
        finally:
            await server.close()
        assert not Path(f"/proc/{template_pid}").exists() or _is_zombie(template_pid)

    asyncio.run(main())


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


SNAPSHOT = """
    import os
    import modal

    IMPORTED_IN = os.getpid()
    app = modal.App("snapshots")

    @app.cls(enable_memory_snapshot=True)
    @modal.concurrent(max_inputs=1)
    class Model:
        @modal.enter(snap=True)
        def load_weights(self):
            self.snap_pid = os.getpid()

        @modal.enter(snap=False)
        def connect(self):
            self.live_pid = os.getpid()

        @modal.fastapi_endpoint()
        def info(self):
            import time
            time.sleep(0.3)
            return {"imported": IMPORTED_IN, "snap": self.snap_pid, "live": self.live_pid, "pid": os.getpid()}
"""


def test_memory_snapshot_imports_and_runs_snap_hooks_once_in_the_template(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, logs, _, _ = await running(tmp_path, SNAPSHOT)
        try:
            url = _urls(version)["Model.info"]
            async with httpx.AsyncClient(timeout=30) as client:
                results = [r.json() for r in await asyncio.gather(client.get(url), client.get(url))]
            template_pid = server.backend.templates.running()[0].proc.pid
            assert results[0]["pid"] != results[1]["pid"]
            for r in results:
                assert r["imported"] == r["snap"] == template_pid, "import and snap=True hooks ran before the fork"
                assert r["live"] == r["pid"], "snap=False hooks run in each container"
            assert "(memory snapshot)" in logs.text()
        finally:
            await server.close()

    asyncio.run(main())


def test_a_template_with_threads_is_refused_and_containers_are_spawned(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, logs, _, _ = await running(tmp_path, """
            import os, threading, time
            import modal

            threading.Thread(target=time.sleep, args=(3600,), name="user-poller", daemon=True).start()
            app = modal.App("threads")

            @app.function(enable_memory_snapshot=True)
            @modal.fastapi_endpoint()
            def f():
                return os.getpid()
        """)
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                assert (await client.get(_urls(version)["f"])).status_code == 200
            text = logs.text()
            assert "started by spawn (no template: the template has threads (user-poller)" in text
        finally:
            await server.close()

    asyncio.run(main())


def test_SAMPAN_FORK_0_spawns_every_container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPAN_FORK", "0")

    async def main() -> None:
        server, version, logs, _, _ = await running(tmp_path, PROBE)
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                probe = (await client.get(_urls(version)["g"])).json()
            assert probe["ppid"] == os.getpid()
            assert "started by spawn (SAMPAN_FORK=0)" in logs.text()
            assert server.backend.templates.running() == []
        finally:
            await server.close()

    asyncio.run(main())


def test_a_template_that_dies_takes_no_container_with_it_and_is_replaced(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, logs, _, _ = await running(tmp_path, PROBE)
        try:
            url = _urls(version)["g"]
            async with httpx.AsyncClient(timeout=30) as client:
                first = (await client.get(url)).json()
                os.kill(first["ppid"], signal.SIGKILL)
                await asyncio.sleep(0.5)
                again = (await client.get(url)).json()
                assert again["pid"] == first["pid"], "the container outlives its template"
                # A second container at once needs a new fork: a fresh template is started for it.
                slow, other = await asyncio.gather(client.get(_urls(version)["f"]), client.get(_urls(version)["f"]))
            pids = {slow.json()["ppid"], other.json()["ppid"]}
            assert first["ppid"] not in pids
            assert "started by fork of template" in logs.lines[-1][2] or "started by fork" in logs.text()
        finally:
            await server.close()

    asyncio.run(main())


def test_killing_the_server_ends_its_templates_and_forked_containers(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "import os, modal\napp = modal.App('orphans')\n\n@app.function()\n@modal.fastapi_endpoint()\n"
        "def f():\n    return {'pid': os.getpid(), 'ppid': os.getppid()}\n"
    )
    s = Serve(str(app), tmp_path / "home")
    try:
        s.ready()
        probe = httpx.get(s.urls["f"], timeout=30).json()
        pids = [probe["pid"], probe["ppid"]]
        assert set(pids) <= set(marker_pids(s.marker)), "templates and forked containers carry the server's mark"
        os.kill(s.proc.pid, signal.SIGKILL)
        s.proc.wait(10)
        wait_until(lambda: all(not Path(f"/proc/{p}").exists() or _is_zombie(p) for p in pids), timeout=10)
    finally:
        s.kill()


def test_cpu_and_memory_limits_and_gpus_are_enforced_where_the_machine_can(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPAN_GPUS", "2")  # as if `nvidia-smi -L` listed two GPUs

    async def main() -> None:
        server, version, logs, _, _ = await running(tmp_path, """
            import os, resource
            import modal

            app = modal.App("limits")

            @app.function(cpu=(0.5, 1), memory=(256, 4096), gpu="any")
            @modal.fastapi_endpoint()
            def probe():
                soft, _ = resource.getrlimit(resource.RLIMIT_AS)
                try:
                    bytearray(5 * 1024 ** 3)
                    too_much = "allocated"
                except MemoryError:
                    too_much = "MemoryError"
                return {"cores": len(os.sched_getaffinity(0)), "as_mib": soft // 2 ** 20, "too_much": too_much,
                        "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}
        """)
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                probe = (await client.get(_urls(version)["probe"])).json()
            assert probe == {"cores": 1, "as_mib": 4096, "too_much": "MemoryError", "gpus": "0"}
        finally:
            await server.close()

    asyncio.run(main())
