"""The bucket rules of server/buckets.py: which endpoints a tenant may name, which credentials, which
s3fs options. Pure."""

from __future__ import annotations

from pathlib import Path

from sampan.server.buckets import credentials, endpoint_problem, s3fs_options


def test_endpoints_on_this_machine_or_private_networks_are_refused() -> None:
    assert endpoint_problem("https://s3.amazonaws.com", ["52.216.1.1"], set()) is None
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.5", "169.254.169.254", "::1", "0.0.0.0"):
        assert endpoint_problem("http://x.example", [address], set()) is not None, address
    assert "not an http(s) URL" in (endpoint_problem("file:///etc", [], set()) or "")
    assert endpoint_problem("http://127.0.0.1:9000", ["127.0.0.1"], {"127.0.0.1:9000"}) is None
    assert endpoint_problem("http://127.0.0.1:9001", ["127.0.0.1"], {"127.0.0.1:9000"}) is not None
    # a name that resolves to a public and a private address is refused
    assert endpoint_problem("https://mixed.example", ["52.1.1.1", "10.0.0.1"], set()) is not None


def test_credentials_and_options() -> None:
    assert credentials({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}) == ("a", "b")
    assert credentials({"GOOGLE_ACCESS_KEY_ID": "g", "GOOGLE_ACCESS_KEY_SECRET": "h"}) == ("g", "h")
    assert credentials({"AWS_ACCESS_KEY_ID": "a"}) is None
    opts = s3fs_options({"read_only": True}, "http://minio:9000", 100000, Path("/p"))
    assert {"ro", "uid=100000", "allow_other", "passwd_file=/p", "use_path_request_style"} <= set(opts)
    assert "public_bucket=1" in s3fs_options({}, "https://s3.amazonaws.com", 0, None)
