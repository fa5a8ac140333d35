"""Mount paths and remote paths are checked before anything runs (sampan/mountpaths.py), with Modal's texts."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

import sampan as modal
from sampan.exception import InvalidError
from sampan.mountpaths import canonical_mount_path, validate_mount_points, validate_remote_path
from sampan.sdk.refs import volumes_json


@pytest.mark.parametrize("path,expected", [
    ("/data", "/data"), ("/data/", "/data"), ("/root/foo", "/root/foo"), ("/tmp/x", "/tmp/x"),
    (PurePosixPath("/mnt/v"), "/mnt/v"), ("/data/./x", "/data/x"),
])
def test_canonical_mount_paths_pass(path: object, expected: str) -> None:
    assert canonical_mount_path(path) == expected


@pytest.mark.parametrize("path,text", [
    ("data", "Volume data must be a canonical, absolute path."),
    ("/data/../etc", "Volume /data/../etc must be a canonical, absolute path."),
    ("/", "Volume / cannot be mounted into root directory."),
    ("/root", "Volume /root cannot be mounted at '/root'."),
    ("/tmp", "Volume /tmp cannot be mounted at '/tmp'."),
    ("/proc", "system directory"), ("/dev/shm", "system directory"), ("/sys/fs", "system directory"),
])
def test_bad_mount_paths_fail_with_their_name(path: str, text: str) -> None:
    with pytest.raises(InvalidError) as info:
        canonical_mount_path(path)
    assert text in str(info.value)


def test_two_mounts_at_one_path_and_one_volume_at_two_paths_fail() -> None:
    a, b = modal.Volume.from_name("a"), modal.Volume.from_name("b")
    with pytest.raises(InvalidError, match="same path: /data"):
        validate_mount_points({"/data": a, "/data/": b})
    with pytest.raises(InvalidError, match="multiple locations for the same function: /x, /y"):
        volumes_json({"/x": a, "/y": modal.Volume.from_name("a")})
    with pytest.raises(InvalidError, match="should be a dict"):
        validate_mount_points([("/data", a)])  # type: ignore[arg-type]
    with pytest.raises(InvalidError, match="is not usable as a volume"):
        volumes_json({"/data": "not a volume"})


@pytest.mark.parametrize("remote", ["assets", "/a/../b", "/proc/x", "/dev"])
def test_bad_remote_paths_fail_at_declaration(remote: str) -> None:
    with pytest.raises(InvalidError):
        modal.Image.debian_slim().add_local_dir(".", remote_path=remote)


def test_good_remote_paths() -> None:
    assert validate_remote_path("/assets", "add_local_dir") == "/assets"
    assert validate_remote_path("/root/x.css", "add_local_file") == "/root/x.css"
    with pytest.raises(InvalidError, match="root directory"):
        validate_remote_path("/", "add_local_dir")
