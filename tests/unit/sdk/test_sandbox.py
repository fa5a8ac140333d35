"""`modal.Sandbox`'s checks before anything is sent (Modal's texts), `modal.Probe`, and tag rules."""

from __future__ import annotations

import base64

import pytest

import sampan as modal
from sampan.exception import InvalidError
from sampan.sdk.sandbox import _image_json
from sampan.server.control.sandboxes import check_tags
from sampan.server.sandboxes import check_request


@pytest.mark.parametrize(("kwargs", "args", "text"), [
    ({"timeout": None}, (), "`timeout=None` is only supported for experimental persistent Sandboxes."),
    ({}, ("echo", 1), "All entrypoint arguments must be strings"),
    ({"workdir": "relative"}, (), "workdir must be an absolute path, got: relative"),
    ({"runtime": "docker"}, (), "runtime must be one of ['gvisor', 'vm'], got 'docker'"),
    ({"gpu": ["a10g", "t4"]}, (), "Sandboxes do not support configuring a list of GPUs."),
    ({"block_network": True, "encrypted_ports": [8000]}, (), "Cannot specify open ports when `block_network` is"),
    ({"block_network": True, "outbound_cidr_allowlist": ["10.0.0.0/8"]}, (),
     "`outbound_cidr_allowlist` cannot be used when `block_network` is enabled"),
    ({"cidr_allowlist": ["1.2.3.4/32"], "outbound_cidr_allowlist": ["1.2.3.4/32"]}, (),
     "Cannot specify both `cidr_allowlist` and `outbound_cidr_allowlist`."),
    ({"outbound_domain_allowlist": ["example.com"]}, (), "`outbound_domain_allowlist` is not enforced by Sampan"),
    ({"env": {"": "x"}}, (), "Secret key name cannot be empty"),
    ({"env": {"A-B": "x"}}, (), "Secret key name 'A-B' is invalid for environment variables."),
])
def test_create_refuses_with_modals_texts(kwargs: dict, args: tuple, text: str) -> None:
    with pytest.raises(InvalidError) as raised:
        modal.Sandbox.create(*args, app=modal.App("x"), **kwargs)
    assert str(raised.value).startswith(text)


def test_an_images_local_files_travel_with_the_sandbox(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("A = 1\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    image = modal.Image.debian_slim().add_local_dir(str(tmp_path), "/code").add_local_file(
        str(tmp_path / "pkg" / "a.py"), "/root/b.py")
    steps, files = _image_json(image)
    assert steps == image.to_json()
    assert {k: base64.b64decode(v) for k, v in files.items()} == {".sampan-fs/code/pkg/a.py": b"A = 1\n",
                                                                  "b.py": b"A = 1\n"}
    gone = modal.Image.debian_slim().add_local_dir(str(tmp_path / "missing"), "/code")
    with pytest.raises(InvalidError, match="does not exist"):
        modal.Sandbox.create(app=modal.App("x"), image=gone)


def test_probes() -> None:
    assert modal.Probe.with_tcp(8080).tcp_port == 8080
    assert modal.Probe.with_exec("true", interval_ms=5).exec_argv == ("true",)
    for make, text in ((lambda: modal.Probe(), "Probe must be created with Probe.with_tcp(...) or Probe.with_exec"),
                       (lambda: modal.Probe.with_tcp("80"), "Probe.with_tcp() expects an integer `port`"),
                       (lambda: modal.Probe.with_tcp(0), "Probe.with_tcp() expects `port` in [1, 65535], got 0"),
                       (lambda: modal.Probe.with_tcp(80, interval_ms=0), "expects `interval_ms` > 0, got 0"),
                       (lambda: modal.Probe.with_exec(), "Probe.with_exec() requires at least one argument"),
                       (lambda: modal.Probe.with_exec("a", 1), "with_exec() expects all arguments to be strings")):
        with pytest.raises(InvalidError) as raised:
            make()
        assert text in str(raised.value)


def test_the_server_checks_again_and_tags_have_rules() -> None:
    for body, text in (({"cmd": ["a", 1], "timeout": 1}, "All entrypoint arguments must be strings"),
                       ({"cmd": ["x" * 70000], "timeout": 1}, "Total length of CMD arguments cannot exceed 65536"),
                       ({"timeout": None}, "`timeout=None`"), ({"timeout": 10, "ports": [0]}, "port must be between"),
                       ({"timeout": 10, "ports": [80], "block_network": True}, "Cannot specify open ports"),
                       ({"timeout": 10, "ports": list(range(1, 40))}, "at most 32 ports"),
                       ({"timeout": 10, "name": "../x y"}, "Invalid Sandbox name"),
                       ({"timeout": 10, "env": {"A": 1}}, "`env` must map"),
                       ({"timeout": 10, "env": {"A-B": "x"}}, "`env` must map"),
                       ({"timeout": 10, "probe": {"tcp_port": 0}}, "Probe must be created"),
                       ({"timeout": 10, "probe": {"exec_argv": "true"}}, "Probe must be created"),
                       ({"timeout": 10, "resources": {"cpu": "lots"}}, "`resources` is not")):
        with pytest.raises(InvalidError, match=text.replace("(", r"\(").replace(")", r"\)")):
            check_request(body)
    assert check_tags({"team": "a.b-c_1"}) == {"team": "a.b-c_1"}
    for tags in ({"bad key": "x"}, {"k": "x" * 64}, {"k": 1}):
        with pytest.raises(InvalidError, match="Invalid tag"):
            check_tags(tags)
