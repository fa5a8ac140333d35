"""Volume transfers in pieces (server/volumes.py): reassembled out of sight, never through a planted link."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from sampan.exception import InvalidError
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
