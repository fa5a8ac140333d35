"""`modal.Function` and `modal.Cls`: the handles `@app.function()` and `@app.cls()` return.

A handle holds a `FunctionSpec` (everything declared about the function) and, once the app is
published, its web URL. Handles do no I/O on their own: `.local()` calls the Python code in this
process; `.get_web_url()` returns the URL the server assigned.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from ..classparams import NO_DEFAULT, PARAMETER_TYPES, ClassParam, resolve_class_params
from ..exception import InvalidError
from .calls import AutoscalerMixin, CallMixin, CallTarget, local_target
from .logs import LogsManager
from .lookup import cls_from_name, function_from_name
from .partial import (
    LIFECYCLE_ENTER,
    LIFECYCLE_EXIT,
    ClsHandle,
    FunctionHandle,
    Parameter,
    PartialFunction,
    WebConfig,
)
from .variants import VariantMixin


@dataclass
class FunctionSpec:
    """What one function (or one method of a class) declares. Pure data, JSON-able via the manifest."""

    tag: str
    raw_f: Any
    web: WebConfig | None
    options: dict[str, Any]
    max_inputs: int = 1
    target_inputs: int | None = None
    cls_name: str | None = None
    method_name: str | None = None
    is_generator: bool = False
    ignored: tuple[str, ...] = ()
    class_params: tuple[ClassParam, ...] = ()
    batch: tuple[int, int] | None = None  # @modal.batched: (max_batch_size, wait_ms)


def _call_sync(result: Any) -> Any:
    """`.local()` of an async function runs it to completion when no loop is running."""
    if inspect.isawaitable(result):
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(_await(result))
        return result
    return result


async def _await(aw: Any) -> Any:
    return await aw


class _WebMixin(CallMixin):
    _web_url: str | None
    spec: FunctionSpec

    def get_web_url(self) -> str | None:
        """The URL of a web function once its app is served or deployed, else None."""
        return self._web_url

    @property
    def web_url(self) -> str | None:
        return self._web_url

    def _check_callable(self, verb: str) -> None:
        """Modal's checks before a remote call (fact sheet §1.5), made here, before any I/O."""
        name = self.spec.tag
        if self.spec.web is not None:
            raise InvalidError(
                f"A webhook function cannot be invoked for remote execution with `.{verb}`. "
                f"Invoke this function via its web url '{self._web_url}' or call it locally: {name}.local()"
            )
        if self.spec.is_generator and verb != "remote_gen":
            raise InvalidError(
                f"A generator function cannot be called with `.{verb}(...)`. Use `.remote_gen(...)` instead."
            )
        if verb == "remote_gen" and not self.spec.is_generator:
            raise InvalidError("A non-generator function cannot be called with `.remote_gen(...)`. "
                               "Use `.remote(...)` instead.")


class Function(_WebMixin, AutoscalerMixin, VariantMixin, FunctionHandle):
    """A function registered on an App. Not callable directly: use `.local()` (or the web URL)."""

    def __init__(self, app: Any, spec: FunctionSpec) -> None:
        self.app = app
        self.spec = spec
        self._web_url = None
        self.__doc__ = getattr(spec.raw_f, "__doc__", None)

    def __repr__(self) -> str:
        return f"Function({self.spec.tag!r})"

    @property
    def tag(self) -> str:
        return self.spec.tag

    def get_raw_f(self) -> Any:
        return self.spec.raw_f

    @property
    def logs(self) -> LogsManager:
        """`f.logs.fetch(since=)`, `.tail()`, `.stream()`: what this function's containers printed."""
        return LogsManager(getattr(self.app, "name", None), self.spec.tag, f"fu-{self.spec.tag}")

    def _call_target(self) -> CallTarget:
        return local_target(self.app, self.spec.tag, variant=self._variant)

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function in this process, as plain Python."""
        return _call_sync(self.spec.raw_f(*args, **kwargs))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Modal 0.x allowed calling a function handle directly inside containers; keep that working.
        return self.local(*args, **kwargs)

    @staticmethod
    def from_name(app_name: str, name: str, *, version: int | None = None, environment_name: str | None = None,
                  client: Any = None) -> Any:
        """A deployed function of the Sampan server (lazy: looked up when used)."""
        return function_from_name(app_name, name)


class Cls(VariantMixin, ClsHandle):
    """An `@app.cls()` class. Instantiate it with its parameters to reach its methods."""

    def __init__(self, app: Any, user_cls: type, options: dict[str, Any], methods: dict[str, FunctionSpec],
                 params: tuple[ClassParam, ...]) -> None:
        self.app = app
        self.user_cls = user_cls
        self.options = options
        self.methods = methods
        self.params = params
        self._web_urls: dict[str, str | None] = {name: None for name in methods}
        self.__doc__ = user_cls.__doc__

    def __repr__(self) -> str:
        return f"Cls({self.user_cls.__name__!r})"

    @property
    def name(self) -> str:
        return self.user_cls.__name__

    @staticmethod
    def from_name(app_name: str, name: str, *, version: int | None = None, environment_name: str | None = None,
                  client: Any = None) -> Any:
        """A deployed class of the Sampan server (lazy: looked up when used)."""
        return cls_from_name(app_name, name)

    def __call__(self, **kwargs: Any) -> Obj:
        return Obj(self, resolve_class_params(self.params, kwargs))

    def _experimental_get_flash_urls(self) -> list[str] | None:
        """The URL of an `@modal.experimental.http_server` class (one: no proxy regions here)."""
        url = self._web_urls.get("")
        return [url] if url else None

    def __getattr__(self, name: str) -> Any:
        methods = self.__dict__.get("methods", {})
        if name in methods:
            return Obj(self, resolve_class_params(self.params, {}, allow_missing=True)).__getattr__(name)
        raise AttributeError(name)


class Obj:
    """An instance of an `@app.cls()` class with its parameter values bound."""

    def __init__(self, cls: Cls, params: dict[str, Any]) -> None:
        self._cls = cls
        self._params = params
        self._local_instance: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._cls.methods:
            return BoundMethod(self, self._cls.methods[name])
        return getattr(self._local(), name)

    def _local(self) -> Any:
        if self._local_instance is None:
            self._local_instance = instantiate(self._cls.user_cls, self._params)
            run_lifecycle(self._local_instance, LIFECYCLE_ENTER)
        return self._local_instance


class BoundMethod(_WebMixin):
    def __init__(self, obj: Obj, spec: FunctionSpec) -> None:
        self._obj = obj
        self.spec = spec
        base = obj._cls._web_urls.get(spec.method_name or "")
        self._web_url = _with_params(base, obj._cls.params, obj._params) if base else None

    def _call_target(self) -> CallTarget:
        return local_target(self._obj._cls.app, self.spec.tag, self._obj._params, self._obj._cls._variant)

    def local(self, *args: Any, **kwargs: Any) -> Any:
        instance = self._obj._local()
        return _call_sync(getattr(instance, self.spec.method_name or "")(*args, **kwargs))


def _with_params(url: str, declared: tuple[ClassParam, ...], values: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    extra = {}
    for p in declared:
        v = values.get(p.name, p.default)
        if v is NO_DEFAULT or (not p.required and v == p.default):
            continue
        extra[p.name] = v.decode() if isinstance(v, bytes) else (str(v).lower() if isinstance(v, bool) else v)
    return f"{url}?{urlencode(extra)}" if extra else url


def class_params_of(user_cls: type) -> tuple[ClassParam, ...]:
    """The `modal.parameter()` fields of a class, in declaration order."""
    params: list[ClassParam] = []
    annotations: dict[str, Any] = {}
    for klass in reversed(user_cls.__mro__):
        annotations.update(getattr(klass, "__annotations__", {}) or {})
    for name, annotation in annotations.items():
        value = getattr(user_cls, name, None)
        if not isinstance(value, Parameter) or not value.init:
            continue
        type_name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
        if type_name not in PARAMETER_TYPES:
            raise InvalidError(
                f"{user_cls.__name__}.{name}: `modal.parameter()` supports the types "
                f"{', '.join(PARAMETER_TYPES)}; got {type_name!r}."
            )
        params.append(ClassParam(name=name, type=type_name, default=value.default))
    return tuple(params)


def instantiate(user_cls: type, params: dict[str, Any]) -> Any:
    """Create the user's object the way Modal does: parameters set as attributes, no __init__ args."""
    instance = user_cls.__new__(user_cls)
    for name, value in params.items():
        setattr(instance, name, value)
    init = user_cls.__init__
    if init is not object.__init__:
        init(instance)
    return instance


def lifecycle_methods(user_cls: type, flag: str) -> list[PartialFunction]:
    """Methods marked `@modal.enter` (snap=True first, as Modal runs them) or `@modal.exit`."""
    found: dict[str, PartialFunction] = {}
    for klass in reversed(user_cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, PartialFunction) and flag in value.flags:
                found[name] = value
    hooks = list(found.values())
    if flag == LIFECYCLE_ENTER:
        hooks.sort(key=lambda pf: not pf.snap)
    return hooks


def run_lifecycle(instance: Any, flag: str) -> None:
    """Run `@enter` or `@exit` hooks (sync or async) on `instance`, in order."""
    for pf in lifecycle_methods(type(instance), flag):
        _call_sync(pf.raw_f(instance))


__all__ = ["Cls", "Function", "FunctionSpec", "LIFECYCLE_EXIT", "Obj"]
