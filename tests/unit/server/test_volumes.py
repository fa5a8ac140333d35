"""Volume transfers in pieces (server/volumes.py): reassembled out of sight, never through a planted link."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sampan.exception import InvalidError, NotFoundError
from sampan.server.volumes import Volumes

ID = "0123456789abcdef0123456789abcdef"


def piece(volumes: Volumes, data: bytes, offset: int, final: bool, path: str = "/dir/file.bin",
          force: bool = False) -> dict:
    return volumes.op("alice", "vol", {"op": "write", "path": path, "upload_id": ID, "offset": offset,
                                       "data": base64.b64encode(data).decode(), "final": final, "force": force})


def test_pieces_become_the_file_only_with_the_last_one(tmp_path: Path) -> None:
    volumes = Volumes(tmp_path)
    root = volumes.dir("alice", "vol", create=True)
    piece(volumes, b"abc", 0, False)
    assert not (root / "dir" / "file.bin").exists()
    with pytest.raises(InvalidError, match="no piece ends at offset 7"):
        piece(volumes, b"x", 7, False)
    piece(volumes, b"def", 3, True)
    assert (root / "dir" / "file.bin").read_bytes() == b"abcdef"
    assert sorted(p.name for p in (root / "dir").iterdir()) == ["file.bin"]
    read = volumes.op("alice", "vol", {"op": "read", "path": "/dir/file.bin", "offset": 2, "length": 3})
    assert base64.b64decode(read["data"]) == b"cde" and read["size"] == 6
    with pytest.raises(InvalidError, match="already exists"):
        piece(volumes, b"new", 0, True)
    piece(volumes, b"new", 0, True, force=True)
    assert (root / "dir" / "file.bin").read_bytes() == b"new"


def test_a_link_planted_as_the_partial_file_is_never_followed(tmp_path: Path) -> None:
    volumes = Volumes(tmp_path)
    root = volumes.dir("alice", "vol", create=True)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"untouched")
    (root / "dir").mkdir()
    planted = root / "dir" / f".sampan-upload-{ID}"
    os.symlink(outside, planted)
    with pytest.raises(InvalidError):  # a later piece through the link: refused
        piece(volumes, b"evil", 9, False)
    piece(volumes, b"good", 0, True)  # a first piece replaces the link with a file of its own
    assert outside.read_bytes() == b"untouched"
    assert (root / "dir" / "file.bin").read_bytes() == b"good"


def test_upload_ids_and_paths_are_checked(tmp_path: Path) -> None:
    volumes = Volumes(tmp_path)
    volumes.dir("alice", "vol", create=True)
    for bad in ("", "../../x", "ZZZZZZZZZZZZZZZZ"):
        with pytest.raises(InvalidError, match="upload_id"):
            volumes.op("alice", "vol", {"op": "write", "path": "/f", "upload_id": bad, "offset": 0, "data": ""})
    with pytest.raises(InvalidError, match="outside the volume"):
        piece(volumes, b"x", 0, True, path="/../../escape")
    piece(volumes, b"x", 0, True, path="/f")
    with pytest.raises(InvalidError, match="negative"):
        volumes.op("alice", "vol", {"op": "read", "path": "/f", "offset": -1, "length": 1})


def test_copying_a_directory_never_copies_what_a_link_in_it_points_to_outside(tmp_path: Path) -> None:
    """A container writes to its volume: a link it plants in a directory that its workspace's client then
    copies must not bring a file of the server's into the volume (shutil.copytree copied what links point
    to), nor may the link be read through the server afterwards."""
    volumes = Volumes(tmp_path)
    root = volumes.dir("alice", "vol", create=True)
    secret = tmp_path / "server-secret"
    secret.write_bytes(b"SECRET")
    (root / "d").mkdir()
    (root / "d" / "ok").write_bytes(b"fine")
    os.symlink(secret, root / "d" / "leak")
    volumes.op("alice", "vol", {"op": "copy", "src_paths": ["d"], "dst_path": "e", "recursive": True})
    assert (root / "e" / "ok").read_bytes() == b"fine"
    copied = root / "e" / "leak"
    assert copied.is_symlink() or not copied.exists(), "the link's target was copied into the volume"
    for path in ("d/leak", "e/leak"):
        with pytest.raises(InvalidError, match="outside the volume"):
            volumes.op("alice", "vol", {"op": "read", "path": path})


SWAP = """
import contextlib, os, sys, time
root, outside = sys.argv[1], sys.argv[2]
end = time.monotonic() + 5
while time.monotonic() < end:
    with contextlib.suppress(OSError):
        os.rename(root + "/x", root + "/x.away")
        os.symlink(outside, root + "/x")
        os.unlink(root + "/x")
        os.rename(root + "/x.away", root + "/x")
"""


def test_a_directory_swapped_for_a_link_while_the_server_works_never_leads_it_out(tmp_path: Path) -> None:
    """The server's volume operations resolve each path one component at a time from the volume's own
    directory, never following a link out: a container that swaps a directory of the path for a link
    to elsewhere between the server's check and its use (a race, which the check-then-open code lost
    hundreds of times a second) gets nothing read, written or removed outside. Bounded in time."""
    volumes = Volumes(tmp_path)
    root = volumes.dir("alice", "vol", create=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_bytes(b"OUTSIDE")
    (root / "x").mkdir()
    (root / "x" / "f").write_bytes(b"inside")

    def plant_f() -> None:  # put x/f back in the real directory, never through the link
        with contextlib.suppress(OSError):
            fd = os.open(root / "x", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                os.close(os.open("f", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644, dir_fd=fd))
            finally:
                os.close(fd)

    def rounds(seconds: float) -> range:
        end = time.monotonic() + seconds
        return (i for i in range(20_000) if time.monotonic() < end)  # type: ignore[return-value]

    # What a hostile container does to its own volume, as fast as it can, in a process of its own (a
    # thread would run only between the server's steps, when the interpreter switches).
    swapper = subprocess.Popen([sys.executable, "-c", SWAP, str(root), str(outside)])
    seen: set[bytes] = set()
    try:
        time.sleep(0.2)
        for _ in rounds(1.0):
            with contextlib.suppress(InvalidError, NotFoundError, OSError):
                seen.add(base64.b64decode(volumes.op("alice", "vol", {"op": "read", "path": "x/f"})["data"]))
        for i in rounds(0.5):
            with contextlib.suppress(InvalidError, NotFoundError, OSError):
                piece(volumes, b"w", 0, True, path=f"x/w{i}")
        for _ in rounds(0.5):
            plant_f()
            with contextlib.suppress(InvalidError, NotFoundError, OSError):
                volumes.op("alice", "vol", {"op": "remove", "path": "x/f"})
    finally:
        swapper.kill()
        swapper.wait()
    assert b"OUTSIDE" not in seen, "a read followed the link out"
    assert sorted(p.name for p in outside.iterdir()) == ["f"], "a write or a remove followed the link out"


def test_links_within_the_volume_are_followed_as_before(tmp_path: Path) -> None:
    """A cache that links files to blobs (Hugging Face's does: snapshots/<rev>/f -> ../../blobs/<hash>)
    reads, lists and copies through its links; a link out, or a dangling one, lists as a symlink."""
    volumes = Volumes(tmp_path)
    root = volumes.dir("alice", "vol", create=True)
    (root / "blobs").mkdir()
    (root / "blobs" / "abc").write_bytes(b"weights")
    (root / "snapshots" / "r1").mkdir(parents=True)
    os.symlink("../../blobs/abc", root / "snapshots" / "r1" / "model.bin")
    os.symlink("snapshots/r1", root / "latest")
    os.symlink("/etc", root / "out")
    os.symlink("nowhere", root / "dangling")

    def op(**body: object) -> dict:
        return volumes.op("alice", "vol", body)

    assert base64.b64decode(op(op="read", path="latest/model.bin")["data"]) == b"weights"
    listing = {e["path"]: (e["type"], e["size"]) for e in op(op="listdir", path="/")["entries"]}
    assert listing["latest"][0] == "directory" and listing["blobs"][0] == "directory"
    assert listing["out"][0] == "symlink" and listing["dangling"][0] == "symlink"
    assert op(op="listdir", path="latest")["entries"] == [
        {"path": "latest/model.bin", "type": "file", "size": 7, "mtime": (root / "blobs" / "abc").stat().st_mtime}]
    assert [e["path"] for e in op(op="listdir", path="snapshots", recursive=True)["entries"]] == [
        "snapshots/r1", "snapshots/r1/model.bin"]
    op(op="copy", src_paths=["latest/model.bin"], dst_path="copied.bin")
    assert (root / "copied.bin").read_bytes() == b"weights" and not (root / "copied.bin").is_symlink()
    op(op="remove", path="latest")  # the link goes, not the directory it leads to
    assert not os.path.lexists(root / "latest") and (root / "snapshots" / "r1").is_dir()
    with pytest.raises(InvalidError, match="outside the volume"):
        op(op="read", path="out/passwd")
    with pytest.raises(InvalidError, match="outside the volume"):
        op(op="read", path="../vol2/x")


def test_a_fifo_a_container_made_does_not_hold_the_server(tmp_path: Path) -> None:
    volumes = Volumes(tmp_path)
    root = volumes.dir("alice", "vol", create=True)
    os.mkfifo(root / "pipe")
    with pytest.raises(NotFoundError, match="No such file"):
        volumes.op("alice", "vol", {"op": "read", "path": "pipe"})  # at once: no writer is waited for
    volumes.op("alice", "vol", {"op": "copy", "src_paths": ["/"], "dst_path": "copy", "recursive": True})
    assert not (root / "copy" / "pipe").exists()


def test_removing_the_root_clears_the_volume_and_keeps_it(tmp_path: Path) -> None:
    volumes = Volumes(tmp_path)
    root = volumes.dir("alice", "vol", create=True)
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "e" / "f").write_bytes(b"x")
    (root / "g").write_bytes(b"y")
    with pytest.raises(InvalidError, match="recursive=True"):
        volumes.op("alice", "vol", {"op": "remove", "path": "/"})
    volumes.op("alice", "vol", {"op": "remove", "path": "/", "recursive": True})
    assert root.is_dir() and list(root.iterdir()) == []
