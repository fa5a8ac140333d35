"""URL naming rules (fact sheet §2), as pure functions."""

from __future__ import annotations

import hashlib

import pytest

from sampan import naming
from sampan.exception import InvalidError


@pytest.mark.parametrize(
    ("app", "fn", "cls", "expected"),
    [
        ("demo", "square", None, "demo-square"),
        ("web-demo", "f", None, "web-demo-f"),
        ("ECorp", "text_to_speech", None, "ecorp-text-to-speech"),
        (None, "server_files", None, "server-files"),
        ("example-comfyui", "api", "ComfyUI", "example-comfyui-comfyui-api"),
        (None, "files", "Server", "server-files"),
        ("my app!", "f", None, "my-app--f"),
    ],
    ids=["plain", "dashes", "case-and-underscores", "unnamed-app", "class-method", "unnamed-class", "odd-chars"],
)
def test_default_label(app: str | None, fn: str, cls: str | None, expected: str) -> None:
    assert naming.label(app, fn, cls) == expected


def test_custom_label_replaces_app_and_function() -> None:
    assert naming.label("demo", "square", custom="sq") == "sq"


@pytest.mark.parametrize("bad", ["Upper", "has_underscore", "-lead", "trail-", "123", "x" * 64, ""])
def test_invalid_custom_label(bad: str) -> None:
    with pytest.raises(InvalidError, match="Invalid label"):
        naming.label("demo", "f", custom=bad)


def test_subdomain_adds_workspace_and_dev_suffix() -> None:
    assert naming.subdomain("alice", "demo-square", "dev") == ("alice--demo-square-dev", False)
    assert naming.subdomain("Alice_B", "demo-square") == ("alice-b--demo-square", False)


def test_overlong_subdomain_is_truncated_with_a_hash() -> None:
    label = "text-to-speech-really-really-realllly-long-function-name"
    full = f"ecorp--{label}-dev"
    assert len(full) > 63
    sub, truncated = naming.subdomain("ecorp", label, "dev")
    assert truncated
    assert len(sub) <= 63
    digest = hashlib.sha256(full.encode()).hexdigest()[:6]
    assert sub == full[:56].rstrip("-") + "-" + digest


def test_exactly_63_is_not_truncated() -> None:
    label = "a" * (63 - len("ws--"))
    assert naming.subdomain("ws", label) == ("ws--" + label, False)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("alice--demo-square-dev.localhost:8487", "alice--demo-square-dev"),
        ("ALICE--Demo-Square.localhost", "alice--demo-square"),
        ("alice--x.localhost.", "alice--x"),
        ("localhost:8487", None),
        ("nodash.localhost", None),
        ("a.b--c.localhost", None),
        ("alice--x.example.com", None),
        ("[::1]:8487", None),
    ],
)
def test_parse_host(host: str, expected: str | None) -> None:
    assert naming.parse_host(host, "localhost") == expected


@pytest.mark.parametrize("suffix", ["dev", "pr123", "A1"])
def test_valid_dev_suffix(suffix: str) -> None:
    assert naming.validate_dev_suffix(suffix) == suffix


@pytest.mark.parametrize("suffix", ["", "too-long-x", "has-dash", "nine99999"])
def test_invalid_dev_suffix(suffix: str) -> None:
    with pytest.raises(InvalidError, match="Suffix must be an alphanumeric string of no more than 8 characters"):
        naming.validate_dev_suffix(suffix)


def test_custom_domains_route_to_their_function() -> None:
    from sampan.server.gateway.routing import RouteTable

    routes = RouteTable("localhost")
    routes.custom["api.example.com"] = "alice--shop-version"
    assert routes.subdomain_for_host("api.example.com") == "alice--shop-version"
    assert routes.subdomain_for_host("API.Example.com:443") == "alice--shop-version"
    assert routes.subdomain_for_host("alice--x.localhost:8487") == "alice--x"
    assert routes.subdomain_for_host("other.example.com") is None
