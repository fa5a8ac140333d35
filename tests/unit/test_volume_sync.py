"""Modal's Volume consistency for containers on other machines (volume_sync.py): the pure plans, then
two containers' own directories synced through the server's real Volume store (server/volumes.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from sampan.server.volumes import Volumes
from sampan.volume_sync import Synced, VolumeSync, commit_plan, reload_plan, safe_relative, scan


def test_commit_plan_sends_what_changed_here_and_removes_what_was_deleted() -> None:
    synced = Synced(local={"a": (1, 10), "b": (2, 20), "c": (3, 30)})
    uploads, removals = commit_plan(synced, {"a": (1, 10), "b": (5, 21), "d": (1, 1)})
    assert uploads == ["b", "d"] and removals == ["c"]


def test_reload_plan_brings_in_what_others_committed_and_drops_what_they_removed() -> None:
    synced = Synced(local={"a": (1, 10), "b": (2, 20)}, remote={"a": (1, 1.0), "b": (2, 2.0)})
    now = {"a": (1, 10), "b": (2, 20), "mine": (4, 40)}
    downloads, deletions = reload_plan(synced, now, {"a": (9, 5.0), "new": (1, 6.0)})
    assert downloads == ["a", "new"] and deletions == ["b"]
    assert "mine" not in deletions, "a file the server never had is not the server's to delete"


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../b", "", "a//b", "./a"])
def test_paths_from_the_server_must_stay_inside(path: str) -> None:
    assert not safe_relative(path)


def test_scan_skips_links_and_unfinished_uploads(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("x")
    (tmp_path / "link").symlink_to("/etc/hostname")
    (tmp_path / "dirlink").symlink_to(tmp_path / "d")
    (tmp_path / ".sampan-upload-00ff").write_text("partial")
    assert list(scan(str(tmp_path))) == ["d/f.txt"]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[VolumeSync, VolumeSync, Path]:
    """Two containers of one workspace with their own copies of Volume "v", and the server's directory."""
    volumes = Volumes(tmp_path / "server")
    server_dir = volumes.dir("ws", "v", create=True)
    (server_dir / "seed.txt").write_text("seed")

    def op(name: str, body: dict[str, Any]) -> Any:
        return volumes.op("ws", name, body)

    one, two = VolumeSync("v", str(tmp_path / "one"), op), VolumeSync("v", str(tmp_path / "two"), op)
    one.pull()
    two.pull()
    return one, two, server_dir


def read(sync: VolumeSync, rel: str) -> str | None:
    path = Path(sync.dir) / rel
    return path.read_text() if path.exists() else None


def test_a_container_starts_with_the_volume_as_committed(pair: tuple[VolumeSync, VolumeSync, Path]) -> None:
    one, two, _ = pair
    assert read(one, "seed.txt") == "seed" and read(two, "seed.txt") == "seed"


def test_writes_are_private_until_commit_and_seen_after_reload(pair: tuple[VolumeSync, VolumeSync, Path]) -> None:
    one, two, server_dir = pair
    Path(one.dir, "models").mkdir()
    Path(one.dir, "models", "w.bin").write_bytes(b"\0" * 1000)
    two.reload()
    assert read(two, "models/w.bin") is None and not (server_dir / "models").exists(), "not committed yet"
    one.commit()
    assert (server_dir / "models" / "w.bin").read_bytes() == b"\0" * 1000
    assert read(two, "models/w.bin") is None, "others see it only after reload()"
    two.reload()
    assert Path(two.dir, "models", "w.bin").read_bytes() == b"\0" * 1000


def test_changes_and_deletions_travel_both_ways(pair: tuple[VolumeSync, VolumeSync, Path]) -> None:
    one, two, server_dir = pair
    Path(one.dir, "seed.txt").write_text("changed by one")
    one.commit()
    two.reload()
    assert read(two, "seed.txt") == "changed by one"
    os.unlink(Path(two.dir, "seed.txt"))
    Path(two.dir, "two.txt").write_text("from two")
    two.reload()  # commits its own changes first, as Modal's reload may
    assert not (server_dir / "seed.txt").exists() and (server_dir / "two.txt").read_text() == "from two"
    one.reload()
    assert read(one, "seed.txt") is None and read(one, "two.txt") == "from two"


def test_the_last_commit_of_a_file_wins(pair: tuple[VolumeSync, VolumeSync, Path]) -> None:
    one, two, server_dir = pair
    Path(one.dir, "seed.txt").write_text("one")
    Path(two.dir, "seed.txt").write_text("two")
    one.commit()
    two.commit()
    assert (server_dir / "seed.txt").read_text() == "two"
    one.reload()
    assert read(one, "seed.txt") == "two"


def test_a_file_of_several_pieces_and_nothing_to_do(pair: tuple[VolumeSync, VolumeSync, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import sampan.volume_sync as volume_sync

    one, two, _ = pair
    monkeypatch.setattr(volume_sync, "PIECE", 7)
    Path(one.dir, "big.txt").write_text("0123456789" * 5)
    one.commit()
    two.reload()
    assert read(two, "big.txt") == "0123456789" * 5
    calls: list[str] = []
    original = two.op
    two.op = lambda name, body: calls.append(body["op"]) or original(name, body)
    two.commit()
    two.reload()
    assert calls == ["listdir"], "an unchanged copy costs one listing"
