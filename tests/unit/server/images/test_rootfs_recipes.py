"""The pure parts of real images: Dockerfile text, the mirror apt uses, shell commands, references, sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.cli.image import human, parse_duration
from sampan.config import parse_size
from sampan.server.images import dockerfile
from sampan.server.images.recipe import ImageBuildError, plan
from sampan.server.images.rootfs import apt_command, check_reference, host_mirror, registry_insecure


def test_dockerfile_lines_join_continuations_and_drop_comments() -> None:
    text = ["# a comment", "FROM python:3.12-slim", "", "RUN apt-get update && \\ ",
            "    # inside", "    apt-get install -y curl", "ENV A=1 B='two words'", "copy --chown=1:1 a b /dst/"]
    parsed = dockerfile.parse(text)
    assert [i.keyword for i in parsed] == ["FROM", "RUN", "ENV", "COPY"]
    assert parsed[1].value == "apt-get update && apt-get install -y curl" and parsed[1].line == 4
    assert dockerfile.pairs(parsed[2].value) == {"A": "1", "B": "two words"}
    assert parsed[3].flags == {"chown": "1:1"} and dockerfile.copy_sources(parsed[3].value) == (["a", "b"], "/dst/")


@pytest.mark.parametrize("line, message", [
    ("VOLUME /data", "`VOLUME` is not supported"), ("ONBUILD RUN x", "`ONBUILD` is not supported"),
    ("STOPSIGNAL 9", "`STOPSIGNAL` is not supported"), ("BOGUS x", "unknown instruction 'BOGUS'"),
])
def test_dockerfile_refuses_what_modal_refuses(line: str, message: str) -> None:
    with pytest.raises(ImageBuildError, match=message):
        dockerfile.parse([line])


def test_dockerfile_variables_exec_forms_and_stages() -> None:
    assert dockerfile.substitute("$A/${B}/$C", {"A": "x", "B": "y"}) == "x/y/"
    with pytest.raises(ImageBuildError, match="not supported"):
        dockerfile.substitute("${A:-default}", {})
    assert dockerfile.exec_form('["python", "-m", "x"]') == ["python", "-m", "x"]
    assert dockerfile.exec_form("python -m x") is None
    assert dockerfile.pairs("LEGACY some value") == {"LEGACY": "some value"}
    ref, rest = dockerfile.split_from(dockerfile.parse(["ARG T=1", "FROM img:${T}", "RUN x"]))
    assert ref == "img:${T}" and [i.keyword for i in rest] == ["ARG", "RUN"]
    with pytest.raises(ImageBuildError, match="Multi-stage"):
        dockerfile.split_from(dockerfile.parse(["FROM a AS b", "FROM c", "COPY --from=b /x /y"]))
    with pytest.raises(ImageBuildError, match="must start with FROM"):
        dockerfile.split_from(dockerfile.parse(["RUN x", "FROM a"]))
    with pytest.raises(ImageBuildError, match="source '--x'"):
        dockerfile.copy_sources("--x /y")


def test_the_mirror_is_the_one_apt_uses(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
                      "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
                      "Suites: bookworm-security\nComponents: main\n")
    assert host_mirror([deb822]) == ("http://mirror.example/debian", "http://mirror.example/debian-security")
    legacy = tmp_path / "sources.list"
    legacy.write_text("deb [arch=amd64] http://old.example/debian bookworm main\n"
                      "deb https://packages.cloud.google.com/apt cloud-sdk main\n")
    assert host_mirror([legacy]) == ("http://old.example/debian", None)
    assert host_mirror([tmp_path / "missing"]) == (None, None)


def test_commands_quote_what_the_user_gave() -> None:
    assert apt_command(["curl", "x; rm -rf /"]).startswith("apt-get update && DEBIAN_FRONTEND=noninteractive "
                                                           "apt-get install -y curl 'x; rm -rf /' && ")
    assert apt_command(["git"]).endswith("rm -rf /var/lib/apt/lists/*")


@pytest.mark.parametrize("ref, ok", [
    ("python:3.12-slim-bookworm", True), ("127.0.0.1:5000/a/b:1", True), ("ghcr.io/o/r@sha256:" + "a" * 64, True),
    ("Not A Reference!", False), ("", False), ("a/../../b", False), ("-oops", False),
])
def test_image_references_are_checked(ref: str, ok: bool) -> None:
    if ok:
        assert check_reference(ref) == ref
    else:
        with pytest.raises(ImageBuildError, match="Invalid image reference"):
            check_reference(ref)


def test_only_a_local_registry_is_spoken_to_in_plain_http() -> None:
    assert registry_insecure("127.0.0.1:5000/x:1") and registry_insecure("localhost:5000/x")
    assert not registry_insecure("python:3.12") and not registry_insecure("ghcr.io/x/y:1")
    assert not registry_insecure("evil.com/127.0.0.1:5000/x")


def test_sizes_and_durations() -> None:
    assert parse_size("") == 0 and parse_size("1024") == 1024 and parse_size("20G") == 20 << 30
    assert parse_size("1.5GiB") == int(1.5 * (1 << 30)) and parse_size("500m") == 500 << 20
    with pytest.raises(ValueError, match="Not a size"):
        parse_size("lots")
    assert parse_duration("90") == 90 and parse_duration("12h") == 43200 and parse_duration("7d") == 604800
    assert human(512) == "512 B" and human(3 << 30) == "3.0 GiB"


def test_real_images_are_keyed_apart_and_bases_come_first() -> None:
    steps = [{"op": "debian_slim", "args": {"python_version": "3.11"}},
             {"op": "apt_install", "args": {"packages": ["x"]}}]
    venv, rootfs = plan(steps, "3.11"), plan(steps, "3.11", rootfs=True)
    assert venv[-1].key != rootfs[-1].key
    registry = plan([{"op": "from_registry", "args": {"tag": "a:1"}}], "3.11", rootfs=True)
    assert [s.op for s in registry] == ["from_registry"]
    with pytest.raises(ImageBuildError, match="needs real images"):
        plan([{"op": "from_registry", "args": {"tag": "a:1"}}], "3.11")
    with pytest.raises(ImageBuildError, match="cannot follow other steps"):
        plan([*steps, {"op": "from_registry", "args": {"tag": "a:1"}}], "3.11", rootfs=True)
    assert plan([*steps, {"op": "run_function", "args": {}}], "3.11", rootfs=True)[-1].op == "run_function"
    with pytest.raises(ImageBuildError, match="`Image.run_function` needs real images"):
        plan([*steps, {"op": "run_function", "args": {}}], "3.11")


def test_a_step_with_a_named_secret_is_keyed_by_the_workspace(tmp_path: Path) -> None:
    import sampan as modal
    from sampan.server.images.rootfs import RootfsBuilder

    builder = RootfsBuilder(tmp_path, 100000)
    private = modal.Image.debian_slim().pip_install("pkg", secrets=[modal.Secret.from_name("index")]).to_json()
    public = modal.Image.debian_slim().pip_install("pkg").to_json()
    alice, bob = builder.chain(private, "alice"), builder.chain(private, "bob")
    assert alice[0].key == bob[0].key and alice[1].key != bob[1].key
    assert builder.chain(public, "alice")[1].key == builder.chain(public, "bob")[1].key


def _layer(store: Path, key: str, parent: str | None, size: int, python: str | None = "/usr/local/bin/python") -> None:
    import json

    layer = store / "layers" / key[:20]
    (layer / "diff").mkdir(parents=True)
    (layer / "diff" / "blob").write_bytes(b"x" * size)
    meta = {"key": key, "parent": parent, "step": f"step {key[:4]}", "config": {"env": {}}, "empty": False,
            "python": python, "python_version": "3.11" if python else None, "built_at": 1.0, "size": size}
    (layer / "meta.json").write_text(json.dumps(meta))


def test_the_image_cache_is_per_workspace_and_keeps_what_runs(tmp_path: Path) -> None:
    import os

    from sampan.server.images.rootfs import RootfsBuilder

    builder = RootfsBuilder(tmp_path, 100000)
    base, a, b = "b" * 64, "a" * 64, "c" * 64
    _layer(tmp_path, base, None, 1000, python=None)
    _layer(tmp_path, a, base, 10)
    _layer(tmp_path, b, base, 20)
    for key in (base, a, b):  # not used for an hour
        os.utime(tmp_path / "layers" / key[:20] / "meta.json", (1.0, 1.0))
    builder.claim("im-" + a[:20], "alice")
    builder.claim("im-" + b[:20], "bob")
    assert [i["id"] for i in builder.images("alice")] == ["im-" + a[:20]]
    listed = builder.images("bob")[0]
    assert listed["size"] > 1000 and listed["steps"] == ["step bbbb", "step cccc"]
    assert not builder.release("im-" + a[:20], "bob")  # bob cannot release alice's
    assert builder.prune("bob", in_use={"im-" + b[:20]}) == []  # bob's runs
    assert builder.prune("bob", in_use=set()) == ["im-" + b[:20]]
    assert not (tmp_path / "layers" / b[:20]).exists()  # nothing needs it now
    assert (tmp_path / "layers" / base[:20]).exists() and (tmp_path / "layers" / a[:20]).exists()  # alice's
    assert builder.enforce_cap(10 << 20, set()) == []  # under the cap
    assert builder.enforce_cap(100, {"im-" + a[:20]}) == []  # over it, but alice's image runs
    assert builder.enforce_cap(100, set()) == ["im-" + a[:20]]
    assert list((tmp_path / "layers").iterdir()) == []
