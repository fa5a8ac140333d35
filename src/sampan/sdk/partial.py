"""The `@modal.*` decorators: web interfaces, `concurrent`, lifecycle hooks, `method`, `parameter`.

Each decorator returns a `PartialFunction`: a declaration that `@app.function()` or `@app.cls()`
consumes later. Decorators stacked below `@app.function()` merge into one `PartialFunction`;
setting the same thing twice is an error. The rules and their messages are Modal's (fact sheet
§1.1), so a misuse reads the same as it would under Modal:

    @app.function()               <- consumes the PartialFunction
    @modal.concurrent(max_inputs=100)
    @modal.asgi_app()             <- any order among the modal.* decorators
    def web(): ...

Longer than 400 lines because every `@modal.*` decorator and the rules for combining them (with Modal's
error texts) belong in one table.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .._deprecation import deprecation_warning
from ..classparams import NO_DEFAULT
from ..exception import InvalidError

# Kinds of web function, as Modal's WebhookConfig.type names them.
FASTAPI_ENDPOINT = "fastapi_endpoint"
ASGI_APP = "asgi_app"
WSGI_APP = "wsgi_app"
WEB_SERVER = "web_server"

# Flags: which roles a callable plays.
INTERFACE_WEB = "web"
INTERFACE_METHOD = "method"
INTERFACE_BATCHED = "batched"  # Modal's CALLABLE_INTERFACE, as `@modal.method` has it
MAX_MAX_BATCH_SIZE = 1000
MAX_BATCH_WAIT_MS = 10 * 60 * 1000
LIFECYCLE_ENTER = "enter"
LIFECYCLE_EXIT = "exit"
CONCURRENT = "concurrent"

_INTERFACE = {INTERFACE_WEB, INTERFACE_METHOD, INTERFACE_BATCHED}
_LIFECYCLE = {LIFECYCLE_ENTER, LIFECYCLE_EXIT}


@dataclass(frozen=True)
class WebConfig:
    """What a web decorator declares; the runtime turns it into an ASGI app."""

    kind: str
    method: str = "GET"
    label: str | None = None
    custom_domains: tuple[str, ...] = ()
    docs: bool = False
    requires_proxy_auth: bool = False
    port: int | None = None
    startup_timeout: float = 5.0
    refuse_when_full: bool = False  # a Server's `max_concurrency`: 429 instead of queueing
    sessioned: bool = False  # a `@modal.sessioned()` Server: requests carry a session token

    def to_json(self) -> dict[str, Any]:
        return {
            **({"refuse_when_full": True} if self.refuse_when_full else {}),
            **({"sessioned": True} if self.sessioned else {}),
            "kind": self.kind,
            "method": self.method,
            "label": self.label,
            "custom_domains": list(self.custom_domains),
            "docs": self.docs,
            "requires_proxy_auth": self.requires_proxy_auth,
            "port": self.port,
            "startup_timeout": self.startup_timeout,
        }


@dataclass
class PartialFunction:
    """A callable (or, for `@modal.concurrent`, a class) plus the roles decorators gave it."""

    raw_f: Any
    flags: frozenset[str] = frozenset()
    web: WebConfig | None = None
    max_inputs: int | None = None
    target_inputs: int | None = None
    concurrent_declared: bool = False
    snap: bool = False
    is_generator: bool | None = None
    params_set: frozenset[str] = field(default_factory=frozenset)
    batch: tuple[int, int] | None = None  # @modal.batched: (max_batch_size, wait_ms)

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        # On an instance of the user's class (inside a container, or `.local()`), behave like the
        # plain method so user code can call `self.other()`.
        if obj is None:
            return self
        return self.raw_f.__get__(obj, objtype)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.raw_f(*args, **kwargs)

    @property
    def __name__(self) -> str:  # type: ignore[override]
        return getattr(self.raw_f, "__name__", repr(self.raw_f))


class FunctionHandle:
    """What `@app.function()` returns (sdk/functions.Function): named here so that decorators can
    refuse one without importing the handles."""


class ClsHandle:
    """What `@app.cls()` returns (sdk/functions.Cls)."""


def _reject_stacked_on_handle(obj: Any, decorator: str) -> None:
    """A `@modal.X` written above `@app.function()` / `@app.cls()` receives a handle, not a function."""
    if isinstance(obj, FunctionHandle):
        raise InvalidError(
            f"Cannot stack `@modal.{decorator}` on top of `@app.function`. "
            "Hint: swap the order of the decorators."
        )
    if isinstance(obj, ClsHandle):
        raise InvalidError(
            f"Cannot stack `@modal.{decorator}` on top of `@app.cls()`. Hint: swap the order of the decorators."
        )


def _merge(obj: Any, decorator: str, *, flags: set[str], **params: Any) -> PartialFunction:
    """Apply one decorator's flags and parameters to `obj`, enforcing Modal's combination rules."""
    _reject_stacked_on_handle(obj, decorator)
    base = obj if isinstance(obj, PartialFunction) else PartialFunction(raw_f=obj)
    new_flags = set(base.flags) | flags
    if new_flags & _INTERFACE and new_flags & _LIFECYCLE:
        raise InvalidError("Interface decorators cannot be combined with lifecycle decorators.")
    if new_flags & {INTERFACE_METHOD, INTERFACE_BATCHED} and (INTERFACE_WEB in new_flags):
        raise InvalidError("Callable decorators cannot be combined with web interface decorators.")
    for key in params:
        if key in base.params_set:
            raise InvalidError(f"Cannot set `{key}` twice.")
    return replace(base, flags=frozenset(new_flags), params_set=base.params_set | set(params), **params)


def _check_positional(value: Any, decorator: str, hint_kw: str | None = None) -> None:
    """Modal's decorators are keyword-only factories; a bare `@modal.x` passes the function here."""
    if value is None:
        return
    if isinstance(value, str) and hint_kw is not None:
        raise InvalidError(
            f'Positional arguments are not allowed. Suggestion: `@modal.{decorator}({hint_kw}="{value}")`.'
        )
    raise InvalidError(
        f"Positional arguments are not allowed. Did you forget parentheses? Suggestion: `@modal.{decorator}()`."
    )


def _parse_custom_domains(custom_domains: Iterable[str] | None) -> tuple[str, ...]:
    assert not isinstance(custom_domains, str), "custom_domains must be `Iterable[str]` but is `str` instead."
    return tuple(custom_domains or ())


def _web_decorator(name: str, config: WebConfig) -> Callable[[Any], PartialFunction]:
    def wrapper(obj: Any) -> PartialFunction:
        if inspect.isclass(obj):
            raise InvalidError(
                f"Cannot apply `@modal.{name}` to a class. Hint: consider applying to a method instead."
            )
        raw = obj.raw_f if isinstance(obj, PartialFunction) else obj
        if config.kind != FASTAPI_ENDPOINT and callable(raw) and not isinstance(raw, type):
            if inspect.iscoroutinefunction(raw):
                raise InvalidError(f"The `@modal.{name}` decorator can't be applied to an async function.")
            if _has_non_self_params(raw):
                raise InvalidError(f"Functions decorated by `@modal.{name}` can't have parameters.")
        return _merge(obj, name, flags={INTERFACE_WEB}, web=config)

    return wrapper


def _has_non_self_params(f: Callable[..., Any]) -> bool:
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return False
    return any(p.name != "self" for p in sig.parameters.values())


def fastapi_endpoint(
    _warn_parentheses_missing: Any = None,
    *,
    method: str = "GET",
    label: str | None = None,
    custom_domains: Iterable[str] | None = None,
    docs: bool = False,
    requires_proxy_auth: bool = False,
) -> Callable[[Any], PartialFunction]:
    """Serve one function as a FastAPI app with a single route `/` for `method`, CORS open."""
    _check_positional(_warn_parentheses_missing, "fastapi_endpoint", "method")
    config = WebConfig(
        kind=FASTAPI_ENDPOINT,
        method=method.upper(),
        label=label,
        custom_domains=_parse_custom_domains(custom_domains),
        docs=docs,
        requires_proxy_auth=requires_proxy_auth,
    )
    return _web_decorator("fastapi_endpoint", config)


def web_endpoint(
    _warn_parentheses_missing: Any = None,
    *,
    method: str = "GET",
    label: str | None = None,
    docs: bool = False,
    custom_domains: Iterable[str] | None = None,
    requires_proxy_auth: bool = False,
) -> Callable[[Any], PartialFunction]:
    """Deprecated name of `fastapi_endpoint` (Modal < 0.73.82); works, with a warning."""
    _check_positional(_warn_parentheses_missing, "web_endpoint", "method")
    deprecation_warning(
        (2025, 3, 5), "The `@modal.web_endpoint` decorator has been renamed to `@modal.fastapi_endpoint`."
    )
    config = WebConfig(
        kind=FASTAPI_ENDPOINT,
        method=method.upper(),
        label=label,
        custom_domains=_parse_custom_domains(custom_domains),
        docs=docs,
        requires_proxy_auth=requires_proxy_auth,
    )
    return _web_decorator("web_endpoint", config)


def asgi_app(
    _warn_parentheses_missing: Any = None,
    *,
    label: str | None = None,
    custom_domains: Iterable[str] | None = None,
    requires_proxy_auth: bool = False,
) -> Callable[[Any], PartialFunction]:
    """Serve the ASGI app returned by a sync, zero-argument factory (HTTP, WebSocket, lifespan)."""
    return _app_factory("asgi_app", ASGI_APP, _warn_parentheses_missing, label, custom_domains, requires_proxy_auth)


def wsgi_app(
    _warn_parentheses_missing: Any = None,
    *,
    label: str | None = None,
    custom_domains: Iterable[str] | None = None,
    requires_proxy_auth: bool = False,
) -> Callable[[Any], PartialFunction]:
    """Serve the WSGI app returned by a sync, zero-argument factory, through a2wsgi."""
    return _app_factory("wsgi_app", WSGI_APP, _warn_parentheses_missing, label, custom_domains, requires_proxy_auth)


def _app_factory(name: str, kind: str, positional: Any, label: str | None, custom_domains: Iterable[str] | None,
                 requires_proxy_auth: bool) -> Callable[[Any], PartialFunction]:
    _check_positional(positional, name)
    config = WebConfig(kind=kind, label=label, custom_domains=_parse_custom_domains(custom_domains),
                       requires_proxy_auth=requires_proxy_auth)
    return _web_decorator(name, config)


def web_server(
    port: int,
    *,
    startup_timeout: float = 5.0,
    label: str | None = None,
    custom_domains: Iterable[str] | None = None,
    requires_proxy_auth: bool = False,
) -> Callable[[Any], PartialFunction]:
    """Proxy to a server that the decorated function starts, listening on `port`."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidError(f"Invalid `port` for `@modal.web_server`: {port!r}. It must be an int in 1..65535.")
    if not isinstance(startup_timeout, (int, float)) or startup_timeout <= 0:
        raise InvalidError(
            f"Invalid `startup_timeout` for `@modal.web_server`: {startup_timeout!r}. It must be greater than 0."
        )
    config = WebConfig(
        kind=WEB_SERVER,
        label=label,
        custom_domains=_parse_custom_domains(custom_domains),
        requires_proxy_auth=requires_proxy_auth,
        port=port,
        startup_timeout=float(startup_timeout),
    )
    return _web_decorator("web_server", config)


def check_concurrency(max_inputs: Any, target_inputs: Any) -> int | None:
    """Modal's rules for `max_inputs`/`target_inputs` (`@modal.concurrent`, `.with_concurrency()`);
    the target as an int."""
    if max_inputs is not None and (isinstance(max_inputs, bool) or not isinstance(max_inputs, int)):
        raise InvalidError(f"`max_inputs` must be an integer, not {max_inputs!r}.")
    if max_inputs is not None and max_inputs < 1:
        raise InvalidError("`max_inputs` must be a positive integer.")
    if target_inputs is None:
        return None
    if isinstance(target_inputs, float) and not target_inputs.is_integer():
        raise InvalidError(
            "The `target_inputs` argument must be an integer; fractional values are only supported for Servers."
        )
    if isinstance(target_inputs, bool) or not isinstance(target_inputs, (int, float)) or target_inputs < 0:
        raise InvalidError("`target_inputs` must be a non-negative integer.")
    if max_inputs is not None and int(target_inputs) > max_inputs:
        raise InvalidError("`target_inputs` parameter cannot be greater than `max_inputs`.")
    return int(target_inputs)


def concurrent(
    _warn_parentheses_missing: Any = None,
    *,
    max_inputs: int | None = None,
    target_inputs: int | None = None,
) -> Callable[[Any], PartialFunction]:
    """Let one container handle up to `max_inputs` inputs at once (autoscaling aims at `target_inputs`)."""
    _check_positional(_warn_parentheses_missing, "concurrent")
    target_inputs = check_concurrency(max_inputs, target_inputs)

    def wrapper(obj: Any) -> PartialFunction:
        return _merge(
            obj,
            "concurrent",
            flags={CONCURRENT},
            max_inputs=max_inputs,
            target_inputs=target_inputs,
            concurrent_declared=True,
        )

    return wrapper


def enter(_warn_parentheses_missing: Any = None, *, snap: bool = False) -> Callable[[Any], PartialFunction]:
    """Run this method once when a container of the class starts, before it takes requests."""
    _check_positional(_warn_parentheses_missing, "enter")

    def wrapper(obj: Any) -> PartialFunction:
        if inspect.isclass(obj):
            raise InvalidError("Cannot apply `@modal.enter` to a class. Hint: consider applying to a method instead.")
        return _merge(obj, "enter", flags={LIFECYCLE_ENTER}, snap=snap)

    return wrapper


def build(_warn_parentheses_missing: Any = None, *, force: bool = False, timeout: int = 86400
          ) -> Callable[[Any], PartialFunction]:
    """Legacy (removed from Modal in 1.1): ran a method of an `@app.cls` while building its image.
    Here it runs when each container starts, before `@modal.enter` hooks: what it writes (model weights,
    say) is there for the methods, as it was, but made per container, not once per image."""
    _check_positional(_warn_parentheses_missing, "build")
    deprecation_warning((2025, 1, 15), "The `@modal.build` decorator is deprecated and will be removed in a future "
                                       "release.\n\nWe now recommend storing large assets (such as model weights) "
                                       "using a `modal.Volume` instead of writing them directly into the "
                                       "`modal.Image` filesystem. For other use cases we recommend using "
                                       "`Image.run_function` instead.\n\nSee "
                                       "https://modal.com/docs/guide/modal-1-0-migration for more information.")

    def wrapper(obj: Any) -> PartialFunction:
        if inspect.isclass(obj):
            raise InvalidError("Cannot apply `@modal.build` to a class. Hint: consider applying to a method instead.")
        return _merge(obj, "build", flags={LIFECYCLE_ENTER}, snap=False)

    return wrapper


_said: set[str] = set()


def _say_once(name: str, why: str) -> None:
    if name not in _said:
        _said.add(name)
        sys.stderr.write(f"Note: `@modal.{name}` is accepted but has no effect here: {why}.\n")


def clustered(size: int, broadcast: bool = True, rdma: bool = False) -> Callable[[Any], Any]:
    """Multi-node gang scheduling (`@modal.clustered(size=...)`): one container here, said once."""
    if not isinstance(size, int) or size < 1:
        raise InvalidError("size must be a positive integer.")

    def wrapper(obj: Any) -> Any:
        _say_once("clustered", "containers are not gang-scheduled across machines; each runs alone")
        return obj

    return wrapper


def sessioned() -> Callable[[Any], Any]:
    """Sticky sessions of an `@app.server` class (Modal 1.6): marks the class; the sessions API itself is not
    built yet (sdk/server.py)."""

    def wrapper(obj: Any) -> Any:
        if not inspect.isclass(obj) and not isinstance(obj, PartialFunction):
            raise InvalidError("`@modal.sessioned()` must be applied to a Server class, not a method.")
        if inspect.isclass(obj):
            obj.__sampan_sessioned__ = True  # read by `@app.server` (sdk/server.py SESSIONED)
        return obj

    return wrapper


def exit(_warn_parentheses_missing: Any = None) -> Callable[[Any], PartialFunction]:  # noqa: A001
    """Run this method once when a container of the class shuts down."""
    _check_positional(_warn_parentheses_missing, "exit")

    def wrapper(obj: Any) -> PartialFunction:
        if inspect.isclass(obj):
            raise InvalidError("Cannot apply `@modal.exit` to a class. Hint: consider applying to a method instead.")
        return _merge(obj, "exit", flags={LIFECYCLE_EXIT})

    return wrapper


def method(
    _warn_parentheses_missing: Any = None, *, is_generator: bool | None = None
) -> Callable[[Any], PartialFunction]:
    """Expose a method of an `@app.cls` class as a callable function."""
    _check_positional(_warn_parentheses_missing, "method")

    def wrapper(obj: Any) -> PartialFunction:
        if isinstance(obj, PartialFunction) and obj.web is not None:
            raise InvalidError("Callable decorators cannot be combined with web interface decorators.")
        return _merge(obj, "method", flags={INTERFACE_METHOD}, is_generator=is_generator)

    return wrapper


def check_batching(max_batch_size: int, wait_ms: int) -> None:
    """Modal's rules for `@modal.batched` and `.with_batching()`."""
    if max_batch_size < 1:
        raise InvalidError("max_batch_size must be a positive integer.")
    if max_batch_size > MAX_MAX_BATCH_SIZE:
        raise InvalidError(f"max_batch_size cannot be greater than {MAX_MAX_BATCH_SIZE}.")
    if wait_ms < 0:
        raise InvalidError("wait_ms must be a non-negative integer.")
    if wait_ms >= MAX_BATCH_WAIT_MS + 1:
        raise InvalidError(f"wait_ms cannot be greater than {MAX_BATCH_WAIT_MS}.")


def batched(_warn_parentheses_missing: Any = None, *, max_batch_size: int, wait_ms: int
            ) -> Callable[[Any], PartialFunction]:
    """Dynamic batching: callers send single inputs; the function gets up to `max_batch_size` of them
    (or what arrived within `wait_ms` of the first) as lists, once, and returns a list of results."""
    _check_positional(_warn_parentheses_missing, "batched")
    check_batching(max_batch_size, wait_ms)

    def wrapper(obj: Any) -> PartialFunction:
        if inspect.isclass(obj):
            raise InvalidError("Cannot apply `@modal.batched` to a class. Hint: consider applying to a method "
                               "instead.")
        if isinstance(obj, FunctionHandle):
            raise InvalidError("Cannot stack `@modal.batched` on top of `@app.function`. Hint: swap the order of "
                               "the decorators.")
        return _merge(obj, "batched", flags={INTERFACE_BATCHED}, batch=(int(max_batch_size), int(wait_ms)))

    return wrapper


@dataclass(frozen=True)
class Parameter:
    """The value `modal.parameter()` leaves on the class body until `@app.cls()` reads it."""

    default: Any = NO_DEFAULT
    init: bool = True


def parameter(*, default: Any = NO_DEFAULT, init: bool = True) -> Any:
    """Declare a class parameter of an `@app.cls` class (int, str, bytes or bool)."""
    return Parameter(default=default, init=init)
