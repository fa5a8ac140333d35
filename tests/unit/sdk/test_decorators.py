"""Decorator stacking rules and their exact messages (fact sheet §1.1, §9)."""

from __future__ import annotations

import re

import pytest

import sampan as modal
from sampan.exception import DeprecationError, InvalidError


@pytest.fixture
def app() -> modal.App:
    return modal.App("t")


def msg(text: str) -> str:
    return re.escape(text)


def test_stacking_a_web_decorator_above_app_function(app: modal.App) -> None:
    with pytest.raises(InvalidError, match=msg(
        "Cannot stack `@modal.fastapi_endpoint` on top of `@app.function`. Hint: swap the order of the decorators."
    )):
        @modal.fastapi_endpoint()
        @app.function(serialized=True)
        def f() -> None: ...


def test_stacking_above_app_cls(app: modal.App) -> None:
    with pytest.raises(InvalidError, match=msg("Cannot stack `@modal.concurrent` on top of `@app.cls()`.")):
        @modal.concurrent(max_inputs=2)
        @app.cls(serialized=True)
        class C: ...


def test_bare_decorator_without_parentheses() -> None:
    with pytest.raises(InvalidError, match=msg(
        "Positional arguments are not allowed. Did you forget parentheses? Suggestion: `@modal.asgi_app()`."
    )):
        @modal.asgi_app
        def f() -> None: ...


def test_method_string_as_positional_argument() -> None:
    with pytest.raises(InvalidError, match=msg(
        'Positional arguments are not allowed. Suggestion: `@modal.fastapi_endpoint(method="POST")`.'
    )):
        modal.fastapi_endpoint("POST")


def test_bare_app_function(app: modal.App) -> None:
    with pytest.raises(InvalidError, match=msg("Suggestion: `@app.function()`.")):
        @app.function
        def f() -> None: ...


def test_web_decorator_on_a_class() -> None:
    with pytest.raises(InvalidError, match=msg(
        "Cannot apply `@modal.asgi_app` to a class. Hint: consider applying to a method instead."
    )):
        @modal.asgi_app()
        class C: ...


@pytest.mark.parametrize("name", ["asgi_app", "wsgi_app"])
def test_factories_cannot_be_async(name: str) -> None:
    text = f"The `@modal.{name}` decorator can't be applied to an async function."
    with pytest.raises(InvalidError, match=msg(text)):
        @getattr(modal, name)()
        async def f() -> None: ...


def test_web_server_cannot_be_async_or_take_parameters() -> None:
    text = "The `@modal.web_server` decorator can't be applied to an async function."
    with pytest.raises(InvalidError, match=msg(text)):
        @modal.web_server(8000)
        async def f() -> None: ...
    with pytest.raises(InvalidError, match=msg("Functions decorated by `@modal.web_server` can't have parameters.")):
        @modal.web_server(8000)
        def g(x: int) -> None: ...


def test_method_parameters_other_than_self_are_rejected() -> None:
    with pytest.raises(InvalidError, match=msg("Functions decorated by `@modal.asgi_app` can't have parameters.")):
        @modal.asgi_app()
        def f(self, x) -> None: ...  # noqa: ANN001
    # `self` alone is fine
    modal.asgi_app()(lambda self: None)


@pytest.mark.parametrize("port", [0, 65536, "8000", 8000.0, True])
def test_web_server_port_validation(port: object) -> None:
    with pytest.raises(InvalidError, match="Invalid `port`"):
        modal.web_server(port)  # type: ignore[arg-type]


def test_web_server_startup_timeout_validation() -> None:
    with pytest.raises(InvalidError, match="startup_timeout"):
        modal.web_server(8000, startup_timeout=0)


def test_interface_and_lifecycle_do_not_mix() -> None:
    with pytest.raises(InvalidError, match=msg("Interface decorators cannot be combined with lifecycle decorators.")):
        @modal.enter()
        @modal.fastapi_endpoint()
        def f(self) -> None: ...


def test_method_and_web_do_not_mix() -> None:
    text = "Callable decorators cannot be combined with web interface decorators."
    with pytest.raises(InvalidError, match=msg(text)):
        @modal.method()
        @modal.fastapi_endpoint()
        def f(self) -> None: ...


def test_same_parameter_twice() -> None:
    with pytest.raises(InvalidError, match=msg("Cannot set `max_inputs` twice.")):
        @modal.concurrent(max_inputs=2)
        @modal.concurrent(max_inputs=3)
        @modal.fastapi_endpoint()
        def f() -> None: ...


def test_two_web_interfaces() -> None:
    with pytest.raises(InvalidError, match=msg("Cannot set `web` twice.")):
        @modal.asgi_app()
        @modal.wsgi_app()
        def f() -> None: ...


def test_web_functions_cannot_be_generators(app: modal.App) -> None:
    with pytest.raises(InvalidError, match="Webhooks cannot be generators"):
        @app.function(serialized=True)
        @modal.fastapi_endpoint()
        def f():  # noqa: ANN202
            yield 1


def test_web_functions_reject_retries(app: modal.App) -> None:
    with pytest.raises(InvalidError, match=msg("Web Functions do not support retries.")):
        @app.function(retries=3, serialized=True)
        @modal.fastapi_endpoint()
        def f() -> None: ...


def test_concurrent_needs_max_inputs(app: modal.App) -> None:
    with pytest.raises(TypeError, match=msg("`@modal.concurrent()` missing required argument: `max_inputs`.")):
        @app.function(serialized=True)
        @modal.concurrent()
        @modal.fastapi_endpoint()
        def f() -> None: ...


def test_concurrent_target_above_max() -> None:
    with pytest.raises(InvalidError, match="cannot be greater than `max_inputs`"):
        modal.concurrent(max_inputs=2, target_inputs=3)


def test_concurrent_fractional_target() -> None:
    with pytest.raises(InvalidError, match=msg(
        "The `target_inputs` argument must be an integer; fractional values are only supported for Servers."
    )):
        modal.concurrent(max_inputs=2, target_inputs=1.5)  # type: ignore[arg-type]


def test_concurrent_on_a_method(app: modal.App) -> None:
    with pytest.raises(InvalidError, match=msg(
        "The `@modal.concurrent` decorator cannot be used on methods; decorate the class instead."
    )):
        @app.cls(serialized=True)
        class C:
            @modal.concurrent(max_inputs=3)
            @modal.fastapi_endpoint()
            def web(self) -> None: ...


def test_snap_needs_memory_snapshot(app: modal.App) -> None:
    with pytest.raises(InvalidError, match=msg(
        "A class must have `enable_memory_snapshot=True` to use `snap=True` on its methods."
    )):
        @app.cls(serialized=True)
        class C:
            @modal.enter(snap=True)
            def load(self) -> None: ...


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"timeout": None}, "The `timeout` parameter cannot be set to None: https://modal.com/docs/guide/timeouts"),
        ({"min_containers": 3, "max_containers": 2},
         "`min_containers` (3) cannot be greater than `max_containers` (2)"),
        ({"scaledown_window": 1}, "`scaledown_window` must be between 2 and 3600 (inclusive)"),
        ({"scaledown_window": 3601}, "`scaledown_window` must be between 2 and 3600 (inclusive)"),
        ({"min_containers": -1}, "`min_containers` must be a non-negative integer"),
    ],
    ids=["timeout-none", "min-over-max", "window-low", "window-high", "negative-min"],
)
def test_function_option_validation(app: modal.App, kwargs: dict, text: str) -> None:
    with pytest.raises(InvalidError, match=msg(text)):
        @app.function(**kwargs, serialized=True)
        @modal.fastapi_endpoint()
        def f() -> None: ...


def test_app_function_on_a_class(app: modal.App) -> None:
    with pytest.raises(TypeError, match=msg("`app.function` cannot be used on a class. Please use `app.cls` instead.")):
        @app.function(serialized=True)
        class C: ...


def test_custom_domains_must_not_be_a_str() -> None:
    with pytest.raises(AssertionError, match=msg("custom_domains must be `Iterable[str]` but is `str` instead.")):
        modal.fastapi_endpoint(custom_domains="api.example.com")  # type: ignore[arg-type]


def test_every_modal_keyword_is_accepted(app: modal.App) -> None:
    @app.function(
        image=modal.Image.debian_slim(), schedule=None, env={"A": "1"}, secrets=[], gpu="A10G",
        network_file_systems={}, volumes={}, cpu=2.0, memory=1024, ephemeral_disk=1024, min_containers=0,
        max_containers=5, buffer_containers=1, scaledown_window=30, proxy=None, retries=None, timeout=60,
        startup_timeout=30, name="renamed", is_generator=False, cloud="aws", region="us-east", routing_region=None,
        nonpreemptible=True, enable_memory_snapshot=True, block_network=False, restrict_modal_access=False,
        single_use_containers=False, i6pn=None, include_source=True, experimental_options={"x": 1}, serialized=True,
        _experimental_restrict_output=False, max_inputs=None,
    )
    @modal.fastapi_endpoint()
    def f() -> None: ...

    assert f.tag == "renamed"
    assert set(f.spec.ignored) >= {"cloud", "region"}
    assert not {"gpu", "cpu", "memory"} & set(f.spec.ignored)  # enforced locally, placed on Ray
    assert "enable_memory_snapshot" not in f.spec.ignored  # honoured by template processes


def test_legacy_web_endpoint_warns_and_works(app: modal.App) -> None:
    with pytest.warns(DeprecationError, match=msg(
        "2025-03-05: The `@modal.web_endpoint` decorator has been renamed to `@modal.fastapi_endpoint`."
    )):
        @app.function(serialized=True)
        @modal.web_endpoint(method="POST")
        def f() -> None: ...
    assert f.spec.web is not None and f.spec.web.kind == "fastapi_endpoint" and f.spec.web.method == "POST"


def test_deprecation_error_is_a_user_warning() -> None:
    assert issubclass(DeprecationError, UserWarning)


@pytest.mark.parametrize(
    ("old", "new", "value", "expected"),
    [
        ("keep_warm", "min_containers", 3, 3),
        ("keep_warm", "min_containers", True, 2),
        ("concurrency_limit", "max_containers", 4, 4),
        ("container_idle_timeout", "scaledown_window", 30, 30),
    ],
)
def test_legacy_autoscaler_keywords(app: modal.App, old: str, new: str, value: object, expected: int) -> None:
    with pytest.warns(DeprecationError, match=f"- {old} -> {new}"):
        @app.function(**{old: value}, serialized=True)
        @modal.fastapi_endpoint()
        def f() -> None: ...
    assert f.spec.options[new] == expected


def test_legacy_allow_concurrent_inputs(app: modal.App) -> None:
    with pytest.warns(DeprecationError, match="Please use the `@modal.concurrent` decorator instead"):
        @app.function(allow_concurrent_inputs=7, serialized=True)
        @modal.asgi_app()
        def f() -> None: ...
    assert f.spec.max_inputs == 7


def test_stub_with_bare_and_called_legacy_decorators() -> None:
    import importlib
    import sys

    sys.modules.pop("tests.unit.sdk.legacy_stub_app", None)
    with pytest.warns(DeprecationError):
        legacy = importlib.import_module("tests.unit.sdk.legacy_stub_app")
    stub = legacy.stub
    assert legacy.plain.local() == 1
    kinds = {s.tag: (s.web.kind, s.web.method) for s in stub.web_specs() if s.web}
    assert kinds == {
        "hook": ("fastapi_endpoint", "GET"),
        "hook2": ("fastapi_endpoint", "POST"),
        "asgi": ("asgi_app", "GET"),
        "wsgi": ("wsgi_app", "GET"),
    }
    assert stub.functions["hook2"].spec.options["min_containers"] == 2


def test_web_function_remote_points_to_the_url(app: modal.App) -> None:
    @app.function(serialized=True)
    @modal.fastapi_endpoint()
    def f() -> int:
        return 1

    f._web_url = "http://127.0.0.1:1"
    with pytest.raises(InvalidError, match=msg(
        "A webhook function cannot be invoked for remote execution with `.remote`. Invoke this function via its "
        "web url 'http://127.0.0.1:1' or call it locally: f.local()"
    )):
        f.remote()
    assert f.local() == 1
    assert f.get_web_url() == "http://127.0.0.1:1"


def test_non_web_function_has_no_url(app: modal.App) -> None:
    @app.function(serialized=True)
    def g() -> int:
        return 2

    assert g.get_web_url() is None
    assert g.local() == 2


def test_class_parameters_and_lifecycle_local(app: modal.App) -> None:
    events: list[str] = []

    @app.cls(serialized=True)
    @modal.concurrent(max_inputs=4)
    class Model:
        name: str = modal.parameter(default="base")
        size: int = modal.parameter()

        @modal.enter()
        def load(self) -> None:
            events.append(f"enter {self.name} {self.size}")

        @modal.method()
        def predict(self, x: int) -> str:
            return f"{self.name}:{self.size}:{x}"

        @modal.fastapi_endpoint()
        def web(self) -> str:
            return self.name

    obj = Model(size=3)
    assert obj.predict.local(5) == "base:3:5"
    assert events == ["enter base 3"]
    assert Model.methods["web"].tag == "Model.web"
    assert Model.methods["web"].max_inputs == 4
    with pytest.raises(InvalidError, match="Missing required class parameter `size`"):
        Model()
    with pytest.raises(InvalidError, match="Invalid value 'big'"):
        Model(size="big")
    with pytest.raises(InvalidError, match="Unknown class parameter"):
        Model(size=1, other=2)


def test_async_local_call(app: modal.App) -> None:
    @app.function(serialized=True)
    async def h(x: int) -> int:
        return x * 2

    assert h.local(4) == 8
