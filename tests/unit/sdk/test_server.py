"""`@app.server`, `modal.Server` and `modal.experimental.http_server` (sdk/server.py): Modal's rules and
texts, and what they declare for the server. No server runs here (tests/e2e/test_surface.py runs them)."""

from __future__ import annotations

import pytest

import sampan as modal
from sampan.modal_alias import real_name
from sampan.sdk.describe import build_manifest


def make(body: dict, **options: object) -> object:
    app = modal.App("s")
    cls = type("Srv", (), {"__module__": __name__, **body})
    globals()["Srv"] = cls
    return app, app.server(**options)(cls)


def enter(self: object) -> None:
    return None


def test_a_server_is_a_class_level_web_server_with_its_url_and_auth() -> None:
    app, server = make({"start": modal.enter()(enter)}, port=9000, target_concurrency=2.5, max_concurrency=8)
    assert isinstance(server, modal.Server)
    (entry,) = build_manifest(app, __name__, "app").functions
    assert (entry.tag, entry.kind, entry.cls_name, entry.method_name) == ("Srv", "web_server", "Srv", None)
    assert entry.web["port"] == 9000 and entry.web["requires_proxy_auth"] is True
    assert (entry.max_inputs, entry.target_inputs) == (8, 3)
    _, public = make({"start": modal.enter()(enter)}, unauthenticated=True)
    assert public._cls.methods[""].web.requires_proxy_auth is False


@pytest.mark.parametrize(("body", "options", "error", "text"), [
    ({}, {}, modal.exception.InvalidError, "Server class must have an @modal.enter() to setup the server."),
    ({"start": modal.enter()(enter)}, {"port": 0}, modal.exception.InvalidError,
     "Port must be a positive integer between 1 and 65535."),
    ({"start": modal.enter()(enter), "__init__": lambda self: None}, {}, modal.exception.InvalidError,
     "cannot have a custom __init__ method"),
    ({"start": modal.enter()(enter), "run": modal.method()(enter)}, {}, modal.exception.InvalidError,
     "cannot have `@modal.method()` decorated functions"),
    ({"start": modal.enter()(enter), "x": modal.parameter(default=1)}, {}, modal.exception.InvalidError,
     "cannot use modal.parameter()"),
    ({"start": modal.enter()(enter)}, {"target_concurrency": 9, "max_concurrency": 4}, modal.exception.InvalidError,
     "cannot be greater than `max_concurrency`"),
    ({"start": modal.enter()(enter)}, {"max_concurrency": 1.5}, modal.exception.InvalidError,
     "The `max_concurrency` argument must be an integer."),
    ({"start": modal.enter()(enter)}, {"exit_grace_period": 4000}, modal.exception.InvalidError,
     "must not exceed 3600 seconds (1 hour)"),
    ({"start": modal.enter(snap=True)(enter)}, {}, modal.exception.InvalidError,
     "Server must have `enable_memory_snapshot=True`"),
])
def test_modals_rules(body: dict, options: dict, error: type, text: str) -> None:
    with pytest.raises(error) as info:
        make(body, **options)
    assert text in str(info.value)


def test_not_a_class_and_sessions(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("SAMPAN_HOME", str(tmp_path))
    monkeypatch.delenv("SAMPAN_SERVER_URL", raising=False)
    with pytest.raises(TypeError, match="must be used on a class"):
        modal.App("s").server()(enter)
    _, server = make({"start": modal.enter()(enter)})
    with pytest.raises(modal.exception.InvalidError, match="requires `@modal.sessioned"):
        server.sessions  # noqa: B018
    cls = modal.sessioned()(type("Sess", (), {"__module__": __name__, "start": modal.enter()(enter)}))
    globals()["Sess"] = cls
    sessioned = modal.App("s").server()(cls)
    with pytest.raises(modal.exception.InvalidError, match="`idle_timeout` must be a positive integer."):
        sessioned.sessions.start(idle_timeout=0)
    with pytest.raises(modal.exception.ExecutionError, match="No Sampan server is running"):
        sessioned.sessions.start()  # no server: no URL to start a session at


def test_http_server_rules() -> None:
    with pytest.raises(modal.exception.InvalidError, match="Did you forget parentheses"):
        modal.experimental.http_server()
    with pytest.raises(modal.exception.InvalidError, match="must not exceed 25 seconds"):
        modal.experimental.http_server(8000, exit_grace_period=30)
    with pytest.raises(modal.exception.InvalidError, match="`proxy_regions` argument must be non-empty"):
        modal.experimental.http_server(8000, proxy_regions=[])
    app = modal.App("f")
    flash = modal.experimental.http_server(8000)(type("Flash", (), {"__module__": __name__}))
    globals()["Flash"] = flash
    with pytest.raises(TypeError, match="not yet supported for Flash"):
        app.cls()(modal.concurrent(max_inputs=4)(flash))


def test_modal_server_is_the_sdks_and_sampans_own_packages_are_not_modal() -> None:
    assert real_name("modal.server") == "sampan.sdk.server"
    assert real_name("modal.cls") == "sampan.cls"
    assert real_name("modal.server.store") is None and real_name("modal.backends.local") is None
