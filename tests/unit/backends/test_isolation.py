"""What a sandboxed template and container are made of (backends/isolation.py), without starting one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sampan.backends.base import ContainerSpec
from sampan.backends.isolation import SYSTEM, Isolation, interpreter_paths


def _spec(tmp_path: Path, kind: str = "fastapi_endpoint") -> ContainerSpec:
    bundle = tmp_path / "bundle"
    (bundle / ".sampan-fs" / "assets").mkdir(parents=True)
    layer = tmp_path / "image-fs"
    (layer / "srv").mkdir(parents=True)
    volume = tmp_path / "vol"
    volume.mkdir()
    return ContainerSpec(container_id="ta-1", app_name="a", entry={"kind": kind}, bundle_dir=bundle,
                         module="app", app_var="app", layers=(str(layer),), volumes=(("/data", str(volume)),))


def test_interpreter_paths_cover_sampans_own_environment_and_leave_system_dirs_out() -> None:
    paths = interpreter_paths(sys.executable)
    assert paths, "the interpreter needs something beyond /usr"
    assert not any(p == s or p.startswith(s + "/") for p in paths for s in SYSTEM)
    assert any(Path(sys.executable).resolve().is_relative_to(p) or sys.prefix.startswith(p) for p in paths)
    for a in paths:  # outermost only: nothing nested in another entry
        assert not any(b != a and a.startswith(b + "/") for b in paths)


def test_unprivileged_plan_names_host_paths(tmp_path: Path) -> None:
    isolation = Isolation(None, uid=os.getuid(), privileged=False, sockets=tmp_path / "sockets")
    isolation.sockets.mkdir()
    spec = _spec(tmp_path)
    plan, handover = isolation.plan(spec, sys.executable)
    assert handover.fds == []
    assert plan["code"] == {"src": str(spec.bundle_dir)}
    assert [layer["src"] for layer in plan["layers"]] == [spec.layers[0], str(spec.bundle_dir / ".sampan-fs")]
    assert plan["volumes"] == [{"dst": "/data", "src": spec.volumes[0][1]}]
    assert plan["sockets"] == {"src": str(tmp_path / "sockets" / "ta-1")}
    assert plan["net"] is False and plan["workdir"] == "/root"
    assert isolation.host_socket("ta-1", "/run/sampan/web.sock") == str(tmp_path / "sockets" / "ta-1" / "web.sock")
    base, _ = isolation.base(sys.executable)
    assert base["keep_host"] is True and base["uid"] == os.getuid()
    assert {"dst": "/usr", "src": "/usr"} in base["binds"]


def test_web_server_containers_get_a_network_namespace(tmp_path: Path) -> None:
    isolation = Isolation(None, uid=os.getuid(), privileged=False, sockets=tmp_path)
    plan, _ = isolation.plan(_spec(tmp_path, "web_server"), sys.executable)
    assert plan["net"] is True


@pytest.mark.skipif(os.geteuid() != 0, reason="a root server hands paths over as cloned mounts")
def test_privileged_plan_hands_over_cloned_mounts(tmp_path: Path) -> None:
    isolation = Isolation(None, uid=100000, privileged=True, sockets=tmp_path / "sockets")
    isolation.sockets.mkdir()
    plan, handover = isolation.plan(_spec(tmp_path), sys.executable)
    try:
        names = [plan["code"]["fd"], *(layer["fd"] for layer in plan["layers"]), plan["volumes"][0]["fd"],
                 plan["sockets"]["fd"]]
        assert sorted(names) == sorted(handover.names) and len(set(handover.fds)) == len(names)
        assert (tmp_path / "vol").stat().st_uid == 100000, "container root owns its Volumes"
        assert (tmp_path / "sockets" / "ta-1").stat().st_uid == 100000
    finally:
        handover.close()


def test_runtime_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = Isolation.detect("process")
    try:
        assert not chosen.enabled and "SAMPAN_RUNTIME=process" in chosen.describe()
    finally:
        chosen.close()
    with pytest.raises(ValueError, match="'sandbox' or 'process'"):
        Isolation.detect("docker")
    monkeypatch.setenv("SAMPAN_CONTAINER_UID", "0")
    if os.geteuid() == 0:
        from sampan.runtime import sandbox

        if sandbox.probe() is None:
            with pytest.raises(ValueError, match="never host root"):
                Isolation.detect("sandbox")
