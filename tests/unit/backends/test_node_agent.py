"""The node agent's filesystem work (backends/node_agent.py) for nodes without the sandbox: a shipped root
written atomically, and a container's own working directory linking the root and its Volume copies."""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.backends.base import ContainerStartError
from sampan.backends.node_agent import linked_workdir, materialize


def test_a_shipped_root_is_written_once(tmp_path: Path) -> None:
    root = tmp_path / "roots" / "r1"
    materialize(root, {"app.py": b"print(1)", "pkg/mod.py": b"x = 1"})
    assert (root / "pkg" / "mod.py").read_bytes() == b"x = 1"
    materialize(root, {"app.py": b"other"})  # a second start that lost the race changes nothing
    assert (root / "app.py").read_bytes() == b"print(1)"
    assert [p.name for p in root.parent.iterdir()] == ["r1"], "no temporary directory is left behind"


def test_the_working_directory_links_the_root_and_each_volume(tmp_path: Path) -> None:
    root = tmp_path / "root"
    materialize(root, {"app.py": b"", "assets/logo.txt": b"logo"})
    data, cache = tmp_path / "vol0", tmp_path / "vol1"
    data.mkdir()
    cache.mkdir()
    work = linked_workdir(tmp_path / "work" / "ta-1", root, [("/data", data), ("/root/cache/models", cache)])
    assert (work / "app.py").resolve() == (root / "app.py").resolve()
    assert (work / "assets" / "logo.txt").read_text() == "logo"
    (work / "data" / "f.txt").write_text("x")
    assert (data / "f.txt").read_text() == "x", "/data is re-rooted at ./data, the container's own copy"
    assert (work / "cache" / "models").resolve() == cache.resolve()


def test_a_volume_path_over_a_file_of_the_app_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    materialize(root, {"data/seed.txt": b""})
    (tmp_path / "vol").mkdir()
    with pytest.raises(ContainerStartError, match="Volume mount path /data collides with a file of the app"):
        linked_workdir(tmp_path / "work", root, [("/data", tmp_path / "vol")])
    with pytest.raises(ContainerStartError, match="collides"):
        linked_workdir(tmp_path / "work2", root, [("/data/inner", tmp_path / "vol")])
