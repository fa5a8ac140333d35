"""`modal.App` (and the legacy `modal.Stub`): the registry of functions and classes in a script.

`@app.function()` and `@app.cls()` validate what they are given with Modal's messages and return
handles. Nothing here starts processes or talks to a server: `sampan serve` imports the script,
reads the registry and publishes it.

Longer than 400 lines because `modal.App` is one public class whose decorators carry Modal's validation
and error texts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import sys
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from .. import output
from .._deprecation import _user_frame, deprecation_warning
from ..exception import ExecutionError, InvalidError
from .functions import ClassParam, Cls, Function, FunctionSpec, class_params_of
from .image import Image
from .logs import LogsManager
from .partial import (
    CONCURRENT,
    FASTAPI_ENDPOINT,
    INTERFACE_BATCHED,
    INTERFACE_METHOD,
    INTERFACE_WEB,
    LIFECYCLE_ENTER,
    LIFECYCLE_EXIT,
    WEB_SERVER,
    PartialFunction,
    WebConfig,
    _say_once,
    asgi_app,
    fastapi_endpoint,
    wsgi_app,
)
from .schedule import Schedule
from .secret import Secret
from .server import SESSIONED, UNLIMITED_INPUTS, Server
from .server import check_class as server_check_class
from .server import check_options as server_check_options

_UNSET: Any = object()

# Keywords Modal accepts that the local backend cannot honour (yet). Accepted, recorded in the
# manifest, and reported once by the CLI. The value says why.
NOT_HONOURED = {
    "ephemeral_disk": "containers share the host's disk",
    "proxy": "static-IP egress proxies do not exist on a self-hosted server",
    "cloud": "there is one cloud on the local backend (the Ray backend places by node label `cloud`)",
    "region": "there is one region on the local backend (the Ray backend places by node label `region`)",
    "routing_region": "there is one region here: your machine",
    "nonpreemptible": "local containers are never preempted",
    "block_network": "the local backend does not isolate the network",
    "restrict_modal_access": "the local backend does not restrict access to the server",
    "single_use_containers": "containers are reused; single-use containers are not implemented yet",
    "i6pn": "there is no private IPv6 network on the local backend",
    "experimental_options": "no experimental options are known to Sampan",
    "_experimental_restrict_output": "outputs are not pickled for web functions",
    "serialized": "functions are always imported from the code bundle",
}

_AUTOSCALER_RENAMES = {
    "keep_warm": "min_containers",
    "concurrency_limit": "max_containers",
    "container_idle_timeout": "scaledown_window",
    "_experimental_buffer_containers": "buffer_containers",
}


def _is_global(f: Any) -> bool:
    return "<locals>" not in getattr(f, "__qualname__", "")


class App:
    """A collection of functions and classes that are served or deployed together."""

    def __init__(
        self,
        name: str | None = None,
        *,
        tags: dict[str, str] | None = None,
        image: Image | None = None,
        secrets: Sequence[Secret] = (),
        volumes: dict[Any, Any] | None = None,
        include_source: bool = True,
        mounts: Sequence[Any] = (),
        description: str | None = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise InvalidError(f"Invalid value for `name`: {name!r}. App name must be a string.")
        if image is not None and not isinstance(image, Image):
            raise InvalidError("App `image=` must be a `modal.Image`.")
        for secret in secrets:
            if not isinstance(secret, Secret):
                raise InvalidError(f"App `secrets=` must be a list of `modal.Secret`, got {secret!r}.")
        self.name = name
        self.description = description or name
        self.tags = dict(tags or {})
        self.image = image
        self.mounts = tuple(mounts or ())  # legacy `modal.Mount`s: added to every function's image (manifest.py)
        self.secrets = list(secrets)
        self.volumes = dict(volumes or {})
        self.include_source = include_source
        self.functions: dict[str, Function] = {}
        self.classes: dict[str, Cls] = {}
        self.local_entrypoints: dict[str, Callable[..., Any]] = {}
        self.app_id: str | None = None
        self._running = False
        # Where the App was declared, so that `app.deploy()` can send that file (no I/O here).
        filename = _user_frame()[0]
        self._source_file: str | None = filename if filename.endswith(".py") else None

    def __repr__(self) -> str:
        return f"App({self.name!r})"

    @property
    def registered_functions(self) -> dict[str, Function]:
        return dict(self.functions)

    @property
    def registered_classes(self) -> dict[str, Cls]:
        return dict(self.classes)

    def call_specs(self) -> list[FunctionSpec]:
        """Every function and `@modal.method` that is not a web endpoint (called with `.remote()`)."""
        specs = [f.spec for f in self.functions.values() if f.spec.web is None]
        for cls in self.classes.values():
            specs.extend(s for s in cls.methods.values() if s.web is None)
        return specs

    def web_specs(self) -> list[FunctionSpec]:
        """Every web function and web method, in declaration order."""
        specs = [f.spec for f in self.functions.values() if f.spec.web is not None]
        for cls in self.classes.values():
            specs.extend(s for s in cls.methods.values() if s.web is not None)
        return specs

    # -- @app.function ----------------------------------------------------------------------
    def function(
        self,
        _warn_parentheses_missing: Any = None,
        *,
        image: Image | None = None,
        schedule: Any = None,
        env: dict[str, str | None] | None = None,
        secrets: Collection[Secret] | None = None,
        gpu: Any = None,
        serialized: bool = False,
        network_file_systems: dict[Any, Any] | None = None,
        volumes: dict[Any, Any] | None = None,
        cpu: Any = None,
        memory: Any = None,
        ephemeral_disk: int | None = None,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaledown_window: int | None = None,
        proxy: Any = None,
        retries: Any = None,
        timeout: int | None = 300,
        startup_timeout: int | None = None,
        name: str | None = None,
        is_generator: bool | None = None,
        cloud: str | None = None,
        region: str | Sequence[str] | None = None,
        routing_region: str | None = None,
        nonpreemptible: bool = False,
        enable_memory_snapshot: bool = False,
        block_network: bool = False,
        restrict_modal_access: bool = False,
        single_use_containers: bool = False,
        i6pn: bool | None = None,
        include_source: bool | None = None,
        experimental_options: dict[str, Any] | None = None,
        _experimental_restrict_output: bool = False,
        max_inputs: int | None = None,
        # Legacy spellings (Modal < 1.0), accepted with a DeprecationError warning:
        keep_warm: Any = _UNSET,
        concurrency_limit: Any = _UNSET,
        container_idle_timeout: Any = _UNSET,
        allow_concurrent_inputs: Any = _UNSET,
        _experimental_buffer_containers: Any = _UNSET,
        mounts: Sequence[Any] = (),
    ) -> Callable[[Any], Function]:
        """Register a function. Every keyword of Modal's `App.function` is accepted."""
        if _warn_parentheses_missing is not None:
            if callable(_warn_parentheses_missing) and getattr(self, "_legacy_bare_ok", False):
                return self.function()(_warn_parentheses_missing)  # type: ignore[return-value]
            raise InvalidError(
                "Positional arguments are not allowed. Did you forget parentheses? Suggestion: `@app.function()`."
            )
        options = {k: v for k, v in locals().items() if k not in ("self", "_warn_parentheses_missing")}
        return self._function_decorator(_apply_legacy_autoscaler(options))

    def _function_decorator(self, options: dict[str, Any]) -> Callable[[Any], Function]:

        def wrapper(f: Any) -> Function:
            pf = f if isinstance(f, PartialFunction) else PartialFunction(raw_f=f)
            raw = pf.raw_f
            if isinstance(f, (Function, Cls)):
                raise InvalidError("Cannot apply `@app.function` twice (or to a class handle).")
            if inspect.isclass(raw):
                raise TypeError("`app.function` cannot be used on a class. Please use `app.cls` instead.")
            if pf.flags & {LIFECYCLE_ENTER, LIFECYCLE_EXIT, INTERFACE_METHOD}:
                raise InvalidError(
                    "`@app.function` cannot be used on methods or lifecycle hooks. "
                    "Hint: decorate the class with `@app.cls()` instead."
                )
            if not callable(raw):
                raise TypeError(f"`@app.function` must decorate a function, not {raw!r}.")
            tag = options.get("name") or raw.__name__
            _check_schedule(raw, options.get("schedule"))
            spec = self._make_spec(tag, raw, pf, options)
            if not _is_global(raw) and not options.get("serialized"):
                raise InvalidError(
                    f"Function {raw.__qualname__} is not defined in global scope. Sampan imports your functions "
                    "from your file, so define it at module level (or pass `serialized=True`)."
                )
            if tag in self.functions:
                warnings.warn(f"function name '{tag}' collision!", stacklevel=2)
            handle = Function(self, spec)
            self.functions[tag] = handle
            return handle

        return wrapper

    def _make_spec(self, tag: str, raw: Any, pf: PartialFunction, options: dict[str, Any],
                   cls_name: str | None = None, method_name: str | None = None,
                   class_params: tuple[ClassParam, ...] = (), cls_pf: PartialFunction | None = None) -> FunctionSpec:
        _validate_options(options)
        if cls_name is not None and pf.concurrent_declared:
            raise InvalidError(
                "The `@modal.concurrent` decorator cannot be used on methods; decorate the class instead."
            )
        conc = cls_pf if cls_pf is not None else pf
        max_inputs, target_inputs = 1, None
        if conc is not None and conc.concurrent_declared:
            if conc.max_inputs is None:
                raise TypeError("`@modal.concurrent()` missing required argument: `max_inputs`.")
            max_inputs, target_inputs = conc.max_inputs, conc.target_inputs
        legacy_conc = options.pop("_legacy_max_inputs", None)
        if legacy_conc is not None:
            if conc is not None and conc.concurrent_declared:
                raise InvalidError("Cannot set `max_inputs` twice.")
            max_inputs = int(legacy_conc)
        generator = pf.is_generator
        if generator is None:
            generator = options.get("is_generator")
        if generator is None:
            generator = inspect.isgeneratorfunction(raw) or inspect.isasyncgenfunction(raw)
        if pf.web is not None:
            if generator:
                if pf.web.kind == FASTAPI_ENDPOINT:
                    raise InvalidError(
                        "Webhooks cannot be generators. To stream a response, return a FastAPI "
                        "`StreamingResponse`: https://modal.com/docs/guide/streaming-endpoints"
                    )
                raise InvalidError("Webhooks cannot be generators")
            if options.get("retries") is not None:
                raise InvalidError("Web Functions do not support retries.")
        if pf.batch is not None:
            name = getattr(raw, "__name__", repr(raw))
            if generator:
                raise InvalidError(f"Modal batched function {name} cannot return generators")
            if any(p.default is not inspect.Parameter.empty for p in inspect.signature(raw).parameters.values()):
                raise InvalidError(f"Modal batched function {name} does not accept default arguments.")
            # The container takes a whole batch of inputs at once (times `@modal.concurrent` batches).
            max_inputs = pf.batch[0] * max(1, max_inputs)
        ignored = tuple(k for k, why in NOT_HONOURED.items() if k in options and _given(k, options[k]))
        return FunctionSpec(
            tag=tag,
            raw_f=raw,
            web=pf.web,
            options=options,
            max_inputs=max_inputs,
            target_inputs=target_inputs,
            cls_name=cls_name,
            method_name=method_name,
            is_generator=bool(generator),
            ignored=ignored,
            class_params=class_params,
            batch=pf.batch,
        )

    # -- @app.cls ---------------------------------------------------------------------------
    def cls(
        self,
        _warn_parentheses_missing: Any = None,
        *,
        image: Image | None = None,
        env: dict[str, str | None] | None = None,
        secrets: Collection[Secret] | None = None,
        gpu: Any = None,
        serialized: bool = False,
        network_file_systems: dict[Any, Any] | None = None,
        volumes: dict[Any, Any] | None = None,
        cpu: Any = None,
        memory: Any = None,
        ephemeral_disk: int | None = None,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaledown_window: int | None = None,
        proxy: Any = None,
        retries: Any = None,
        timeout: int | None = 300,
        startup_timeout: int | None = None,
        cloud: str | None = None,
        region: str | Sequence[str] | None = None,
        routing_region: str | None = None,
        nonpreemptible: bool = False,
        enable_memory_snapshot: bool = False,
        block_network: bool = False,
        restrict_modal_access: bool = False,
        single_use_containers: bool = False,
        i6pn: bool | None = None,
        include_source: bool | None = None,
        experimental_options: dict[str, Any] | None = None,
        _experimental_restrict_output: bool = False,
        max_inputs: int | None = None,
        keep_warm: Any = _UNSET,
        concurrency_limit: Any = _UNSET,
        container_idle_timeout: Any = _UNSET,
        allow_concurrent_inputs: Any = _UNSET,
        _experimental_buffer_containers: Any = _UNSET,
        mounts: Sequence[Any] = (),
    ) -> Callable[[Any], Cls]:
        """Register a class whose methods are functions (or web endpoints) sharing one container setup."""
        if _warn_parentheses_missing is not None:
            raise InvalidError(
                "Positional arguments are not allowed. Did you forget parentheses? Suggestion: `@app.cls()`."
            )
        options = {k: v for k, v in locals().items() if k not in ("self", "_warn_parentheses_missing")}
        options = _apply_legacy_autoscaler(options)

        def wrapper(user_cls: Any) -> Cls:
            cls_pf = user_cls if isinstance(user_cls, PartialFunction) else None
            if cls_pf is not None:
                if cls_pf.flags - {CONCURRENT}:
                    raise InvalidError("Only `@modal.concurrent` may decorate a class.")
                user_cls = cls_pf.raw_f
            if isinstance(user_cls, (Function, Cls)):
                raise InvalidError("Cannot stack `@app.cls()` on top of another `@app.function` or `@app.cls()`.")
            if not inspect.isclass(user_cls):
                raise TypeError("The @app.cls decorator must be used on a class.")
            params = class_params_of(user_cls)
            methods: dict[str, FunctionSpec] = {}
            for klass in reversed(user_cls.__mro__):
                for attr, value in vars(klass).items():
                    if isinstance(value, PartialFunction) and value.flags & {INTERFACE_WEB, INTERFACE_METHOD,
                                                                            INTERFACE_BATCHED}:
                        tag = f"{user_cls.__name__}.{attr}"
                        methods[attr] = self._make_spec(
                            tag, value.raw_f, value, dict(options), cls_name=user_cls.__name__,
                            method_name=attr, class_params=params, cls_pf=cls_pf,
                        )
                    elif isinstance(value, PartialFunction) and value.concurrent_declared:
                        raise InvalidError(
                            "The `@modal.concurrent` decorator cannot be used on methods; decorate the class instead."
                        )
                    elif isinstance(value, PartialFunction) and value.snap and not options.get(
                        "enable_memory_snapshot"
                    ):
                        raise InvalidError(
                            "A class must have `enable_memory_snapshot=True` to use `snap=True` on its methods."
                        )
            flash = getattr(user_cls, "__sampan_http_server__", None)
            if flash is not None:  # `@modal.experimental.http_server(port)`: the class serves HTTP itself
                methods[""] = self._flash_spec(user_cls, flash, cls_pf, dict(options))
            batched_methods = [m for m in methods.values() if m.batch is not None]
            if len(batched_methods) > 1:
                raise InvalidError(f"Modal class {user_cls.__name__} can only have one batched function.")
            if batched_methods and len(methods) > 1:
                raise InvalidError(f"Modal class {user_cls.__name__} with a modal batched function cannot have "
                                   "other modal methods.")
            if not _is_global(user_cls) and not options.get("serialized"):
                raise InvalidError(
                    f"Class {user_cls.__qualname__} is not defined in global scope. Sampan imports your classes "
                    "from your file, so define it at module level (or pass `serialized=True`)."
                )
            handle = Cls(self, user_cls, options, methods, params)
            self.classes[user_cls.__name__] = handle
            return handle

        return wrapper

    def _flash_spec(self, user_cls: Any, flash: dict[str, Any], cls_pf: PartialFunction | None,
                    options: dict[str, Any]) -> FunctionSpec:
        if cls_pf is not None and cls_pf.concurrent_declared:
            if cls_pf.max_inputs is not None:
                raise TypeError("@modal.concurrent(max_inputs=...) is not yet supported for Flash functions. Use "
                                "`@modal.concurrent(target_inputs=...)` instead.")
            if cls_pf.target_inputs is None:
                raise TypeError("`@modal.concurrent()` missing required argument: `target_inputs`.")
        web = WebConfig(kind=WEB_SERVER, port=flash["port"], startup_timeout=flash["startup_timeout"])
        pf = PartialFunction(raw_f=user_cls, flags=frozenset({INTERFACE_WEB}), web=web)
        spec = self._make_spec(user_cls.__name__, user_cls, pf, options, cls_name=user_cls.__name__)
        target = cls_pf.target_inputs if cls_pf is not None else None
        return dataclasses.replace(spec, max_inputs=UNLIMITED_INPUTS, target_inputs=target)

    # -- @app.server (Modal 1.5.1+; sdk/server.py) -----------------------------------------------
    def server(
        self,
        *,
        image: Image | None = None,
        env: dict[str, str | None] | None = None,
        secrets: Collection[Secret] | None = None,
        gpu: Any = None,
        serialized: bool = False,
        volumes: dict[Any, Any] | None = None,
        cpu: Any = None,
        memory: Any = None,
        ephemeral_disk: int | None = None,
        target_concurrency: float | None = None,
        max_concurrency: int | None = None,
        min_containers: int | None = None,
        max_containers: int | None = None,
        buffer_containers: int | None = None,
        scaleup_window: int | None = None,
        scaledown_window: int | None = None,
        startup_timeout: int = 30,
        name: str | None = None,
        port: int = 8000,
        unauthenticated: bool = False,
        h2_enabled: bool = False,
        exit_grace_period: int = 0,
        routing_region: str = "us-east",
        compute_region: str | Sequence[str] | None = None,
        cloud: str | None = None,
        nonpreemptible: bool = False,
        proxy: Any = None,
        i6pn: bool | None = None,
        enable_memory_snapshot: bool = False,
        include_source: bool | None = None,
        experimental_options: dict[str, Any] | None = None,
    ) -> Callable[[Any], Server]:
        """Register a class whose `@modal.enter()` starts an HTTP server on `port`: it gets a URL of its own
        and containers scaled on concurrent requests (`target_concurrency`, at most `max_concurrency`)."""
        max_inputs, target_inputs = server_check_options(
            port=port, startup_timeout=startup_timeout, exit_grace_period=exit_grace_period,
            routing_region=routing_region, target_concurrency=target_concurrency, max_concurrency=max_concurrency,
            scaleup_window=scaleup_window, experimental_options=experimental_options)
        options = {k: v for k, v in dict(
            image=image, env=env, secrets=secrets, gpu=gpu, serialized=serialized, volumes=volumes, cpu=cpu,
            memory=memory, ephemeral_disk=ephemeral_disk, min_containers=min_containers,
            max_containers=max_containers, buffer_containers=buffer_containers, scaledown_window=scaledown_window,
            startup_timeout=startup_timeout, cloud=cloud, nonpreemptible=nonpreemptible, proxy=proxy, i6pn=i6pn,
            enable_memory_snapshot=enable_memory_snapshot, include_source=include_source,
            experimental_options=experimental_options).items() if v is not None}
        if compute_region is not None:
            options["region"] = compute_region
        for key, given in (("h2_enabled", h2_enabled), ("scaleup_window", scaleup_window is not None),
                           ("exit_grace_period", bool(exit_grace_period))):
            if given:
                _say_once(key, f"`{key}=` of `@app.server` has no effect here")

        def wrapper(user_cls: Any) -> Server:
            server_check_class(user_cls, enable_memory_snapshot)
            if not _is_global(user_cls) and not serialized:
                raise InvalidError(f"Class {user_cls.__qualname__} is not defined in global scope. Sampan imports "
                                   "your classes from your file, so define it at module level.")
            tag = name or user_cls.__name__
            web = WebConfig(kind=WEB_SERVER, port=port, startup_timeout=float(startup_timeout),
                            requires_proxy_auth=not unauthenticated, refuse_when_full=bool(max_concurrency),
                            sessioned=bool(getattr(user_cls, SESSIONED, False)))
            pf = PartialFunction(raw_f=user_cls, flags=frozenset({INTERFACE_WEB}), web=web)
            spec = self._make_spec(tag, user_cls, pf, dict(options), cls_name=user_cls.__name__)
            spec = dataclasses.replace(spec, max_inputs=max_inputs, target_inputs=target_inputs)
            handle = Cls(self, user_cls, options, {"": spec}, ())
            self.classes[user_cls.__name__] = handle
            return Server(handle, sessioned=bool(getattr(user_cls, SESSIONED, False)))

        return wrapper

    # -- other registrations ----------------------------------------------------------------
    def local_entrypoint(self, _warn_parentheses_missing: Any = None, *, name: str | None = None
                         ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a function that `sampan run` calls on the local machine."""
        if _warn_parentheses_missing is not None:
            raise InvalidError(
                "Positional arguments are not allowed. Did you forget parentheses? "
                "Suggestion: `@app.local_entrypoint()`."
            )

        def wrapper(f: Callable[..., Any]) -> Callable[..., Any]:
            tag = name or f.__qualname__
            if tag in self.local_entrypoints:
                raise InvalidError(f"Duplicate local entrypoint name: {tag}. Local entrypoint names must be unique.")
            self.local_entrypoints[tag] = f
            return f

        return wrapper

    def deploy(self, *, name: str | None = None, environment_name: str | None = None, tag: str = "",
               client: Any = None, strategy: str = "rolling") -> App:
        """Deploy this App to the Sampan server, as `sampan deploy <its file>` would."""

        caller = sys._getframe(1)
        if caller.f_code.co_name == "<module>" and caller.f_globals.get("__name__") != "__main__":
            raise InvalidError(
                "`App.deploy()` should not be called in global scope: it would run every time the file is "
                "imported. Call it inside `if __name__ == \"__main__\":`, or use `sampan deploy`."
            )
        if not self._source_file:
            raise InvalidError("`App.deploy()` needs the App to be defined in a file.")
        result = _deploy_in_child(self._source_file + (f"::{self._var_name()}" if self._var_name() else ""),
                                  name or self.name, strategy, tag)
        self.app_id = result.get("app_id")
        return self

    @contextlib.contextmanager
    def run(self, *, name: str | None = None, client: Any = None, detach: bool = False, interactive: bool = False,
            environment_name: str | None = None, show_progress: bool | None = None) -> Iterator[App]:
        """`with app.run(): f.remote()` from plain `python script.py`: the app is an ephemeral app on the
        Sampan server (or an embedded one) for as long as the block runs (cli/apprun.py)."""
        caller = sys._getframe(2)
        if caller.f_code.co_name == "<module>" and caller.f_globals.get("__name__") != "__main__":
            raise InvalidError(
                "`App.run()` cannot be called in global scope. Use `if __name__ == \"__main__\"` to run Apps in "
                "a script, or convert the block to a local entrypoint and use the `modal run` CLI.")
        if show_progress is True:
            raise InvalidError("`show_progress=True` is no longer supported. Use `with modal.enable_output():` "
                               "instead.")
        if self._running or os.environ.get("SAMPAN_APP_KEY"):
            raise InvalidError("App is already running and can't be started again.\nYou should not use `app.run` "
                               "or `run_app` within a Modal `local_entrypoint`")
        if interactive and not output.is_enabled():
            raise InvalidError("Interactive mode requires output to be enabled. (Use the the `modal.enable_output()` "
                               "context manager.)")
        if not self._source_file:
            raise InvalidError("`App.run()` needs the App to be defined in a file.")
        ref = self._source_file + (f"::{self._var_name()}" if self._var_name() else "")
        read_fd, write_fd = os.pipe()
        quiet = not output.is_enabled()
        env = {**os.environ, "SAMPAN_APP_RUN_FD": str(write_fd), "SAMPAN_APP_RUN_NAME": name or ""}
        import subprocess

        proc = subprocess.Popen([sys.executable, "-m", "sampan.cli.apprun", ref], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL if quiet else None,
                                stderr=subprocess.PIPE if quiet else None, pass_fds=(write_fd,), env=env)
        os.close(write_fd)
        with os.fdopen(read_fd) as handshake:
            line = handshake.readline()
        if not line:
            proc.wait()
            detail = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            raise ExecutionError(f"The app could not be started:\n{detail}" if detail else
                                 "The app could not be started.")
        saved = {k: os.environ.get(k) for k in ("SAMPAN_SERVER_URL", "SAMPAN_SERVER_TOKEN", "SAMPAN_APP_KEY",
                                                 "SAMPAN_WEB_URLS")}
        published = json.loads(line)
        os.environ.update(published)
        urls: dict[str, str] = json.loads(published.get("SAMPAN_WEB_URLS") or "{}")
        for tag, url in urls.items():
            if tag in self.functions:
                self.functions[tag]._web_url = url
            elif tag in self.classes:  # a server class (`@app.server`)
                self.classes[tag]._web_urls[""] = url
        self._running = True
        try:
            yield self
        finally:
            self._running = False
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    @staticmethod
    def lookup(name: str, *, client: Any = None, environment_name: str | None = None,
               create_if_missing: bool = False) -> App:
        """A handle to an app by name (for `Sandbox.create(app=...)`); Sampan needs no server record for it."""
        if name.startswith("ap-") and create_if_missing:
            raise InvalidError("`create_if_missing=True` is not supported when looking up an App by ID.")
        return App(name)

    @property
    def logs(self) -> LogsManager:
        """`app.logs.fetch(since=)`, `.tail()`, `.stream()`: what the deployed app's containers printed."""
        return LogsManager(self.name, None, self.app_id or "")

    def _var_name(self) -> str | None:
        module = sys.modules.get("__main__")
        for key, value in vars(module).items() if module else ():
            if value is self:
                return key
        return None

    def include(self, other_app: App, /, inherit_tags: bool = True) -> App:
        """Add another App's functions and classes to this one."""
        self.functions.update(other_app.functions)
        self.classes.update(other_app.classes)
        if inherit_tags:
            self.tags = {**other_app.tags, **self.tags}
        return self

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def get_tags(self) -> dict[str, str]:
        return dict(self.tags)

    # -- Modal 0.x web decorators on the app/stub (`@stub.webhook`, `@stub.asgi`, `@stub.wsgi`) --
    def webhook(self, _f: Any = None, *, method: str = "GET", label: str | None = None,
                wait_for_response: bool = True, custom_domains: Any = None, **function_kwargs: Any) -> Any:
        """Legacy `@stub.webhook`: `@app.function()` + `@modal.fastapi_endpoint()`."""
        deprecation_warning(
            (2023, 10, 1),
            "`@stub.webhook` is deprecated: use `@app.function()` with `@modal.fastapi_endpoint()` below it.",
        )
        web = fastapi_endpoint(method=method, label=label, custom_domains=custom_domains)
        return self._legacy_web(_f, web, function_kwargs)

    def asgi(self, _f: Any = None, *, label: str | None = None, wait_for_response: bool = True,
             custom_domains: Any = None, **function_kwargs: Any) -> Any:
        """Legacy `@stub.asgi`: `@app.function()` + `@modal.asgi_app()`."""
        deprecation_warning(
            (2023, 10, 1), "`@stub.asgi` is deprecated: use `@app.function()` with `@modal.asgi_app()` below it."
        )
        return self._legacy_web(_f, asgi_app(label=label, custom_domains=custom_domains), function_kwargs)

    def wsgi(self, _f: Any = None, *, label: str | None = None, wait_for_response: bool = True,
             custom_domains: Any = None, **function_kwargs: Any) -> Any:
        """Legacy `@stub.wsgi`: `@app.function()` + `@modal.wsgi_app()`."""
        deprecation_warning(
            (2023, 10, 1), "`@stub.wsgi` is deprecated: use `@app.function()` with `@modal.wsgi_app()` below it."
        )
        return self._legacy_web(_f, wsgi_app(label=label, custom_domains=custom_domains), function_kwargs)

    def _legacy_web(self, f: Any, web: Callable[[Any], PartialFunction], function_kwargs: dict[str, Any]) -> Any:
        def wrapper(fn: Any) -> Function:
            return self.function(**function_kwargs)(web(fn))

        return wrapper(f) if f is not None else wrapper


class Stub(App):
    """Modal 0.x's name for `App`. Works, with a deprecation warning; bare `@stub.function` too."""

    _legacy_bare_ok = True

    def __init__(self, name: str | None = None, *args: Any, **kwargs: Any) -> None:
        deprecation_warning(
            (2024, 4, 29),
            'The use of "Stub" has been deprecated in favor of "App". This is a pure name change with no other '
            "implications: use `modal.App` instead.",
        )
        if args:
            raise InvalidError("Stub() takes the app name as its only positional argument.")
        super().__init__(name, **_stub_kwargs(kwargs))


def _stub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    known = {"tags", "image", "secrets", "volumes", "include_source", "mounts", "description"}
    extra = sorted(set(kwargs) - known)
    if extra:
        raise TypeError(f"Stub() got unexpected keyword argument(s): {', '.join(extra)}")
    return kwargs


def _given(key: str, value: Any) -> bool:
    """True when a not-honoured keyword was set to something other than its default."""
    if value is None or value is False or value is _UNSET:
        return False
    if isinstance(value, (dict, list, tuple)) and not value:
        return False
    return True


def _apply_legacy_autoscaler(options: dict[str, Any]) -> dict[str, Any]:
    """Map Modal 0.x keywords onto their 1.x names, warning once per use."""
    options = dict(options)
    renamed: list[str] = []
    for old, new in _AUTOSCALER_RENAMES.items():
        value = options.pop(old, _UNSET)
        if value is _UNSET:
            continue
        if old == "keep_warm" and value is True:
            value = 2  # Modal 0.x: `keep_warm=True` kept a warm pool of 2 containers.
        elif old == "keep_warm" and value is False:
            value = None
        if options.get(new) is not None:
            raise InvalidError(f"Cannot set both `{old}` and `{new}`; use `{new}`.")
        options[new] = value
        renamed.append(f"- {old} -> {new}")
    if renamed:
        deprecation_warning(
            (2025, 2, 24),
            "We have renamed several parameters related to autoscaling. Please update your code to use the "
            "following new names:\n\n" + "\n".join(renamed)
            + "\n\nSee https://modal.com/docs/guide/modal-1-0-migration for more details.",
        )
    conc = options.pop("allow_concurrent_inputs", _UNSET)
    if conc is not _UNSET and conc is not None:
        deprecation_warning(
            (2025, 4, 9),
            "The `allow_concurrent_inputs` parameter is deprecated. Please use the `@modal.concurrent` decorator "
            "instead.\n\nSee https://modal.com/docs/guide/modal-1-0-migration for more details.",
        )
        if isinstance(conc, bool) or not isinstance(conc, int) or conc < 1:
            raise InvalidError(f"`allow_concurrent_inputs` must be a positive integer, not {conc!r}.")
        options["_legacy_max_inputs"] = conc
    return options


def _check_schedule(raw_f: Any, schedule: Any) -> None:
    """A scheduled function is a `Cron` or `Period` away from being called with no arguments."""
    if schedule is None:
        return
    if not isinstance(schedule, Schedule):
        raise InvalidError(f"`schedule` must be a modal.Cron or modal.Period, not {schedule!r}.")
    try:
        inspect.signature(raw_f).bind()
    except TypeError:
        raise InvalidError(
            f"Function {raw_f} has a schedule, so it needs to support being called with no arguments"
        ) from None


def _validate_options(options: dict[str, Any]) -> None:
    """Modal's client-side checks (fact sheet §9), with its messages."""
    timeout = options.get("timeout", 300)
    if timeout is None:
        raise InvalidError("The `timeout` parameter cannot be set to None: https://modal.com/docs/guide/timeouts")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 1 <= timeout <= 86400:
        raise InvalidError(f"`timeout` must be between 1 and 86400 seconds, got {timeout!r}.")
    startup = options.get("startup_timeout")
    if startup is not None and (not isinstance(startup, (int, float)) or not 1 <= startup <= 86400):
        raise InvalidError(f"`startup_timeout` must be between 1 and 86400 seconds, got {startup!r}.")
    for key in ("min_containers", "max_containers", "buffer_containers"):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidError(f"`{key}` must be a non-negative integer, got {value!r}.")
    lo, hi = options.get("min_containers"), options.get("max_containers")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidError(f"`min_containers` ({lo}) cannot be greater than `max_containers` ({hi})")
    if hi is not None and hi < 1:
        raise InvalidError("`max_containers` must be at least 1.")
    window = options.get("scaledown_window")
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, (int, float)) or not 2 <= window <= 3600
    ):
        raise InvalidError("`scaledown_window` must be between 2 and 3600 (inclusive)")
    for key in ("secrets",):
        for secret in options.get(key) or ():
            if not isinstance(secret, Secret):
                raise InvalidError(f"`secrets=` must be a list of `modal.Secret`, got {secret!r}.")
    image = options.get("image")
    if image is not None and not isinstance(image, Image):
        raise InvalidError(f"`image=` must be a `modal.Image`, got {image!r}.")


def _deploy_in_child(ref: str, name: str | None, strategy: str, tag: str) -> dict[str, Any]:
    """`sampan deploy REF` in a child process (the CLI's deploy, its output shown only inside
    `modal.enable_output()`); its result comes back on a pipe."""
    import subprocess

    read_fd, write_fd = os.pipe()
    argv = [sys.executable, "-m", "sampan", "deploy", ref, "--strategy", strategy, "--result-fd", str(write_fd)]
    if name:
        argv += ["--name", name]
    if tag:
        argv += ["--tag", tag]
    quiet = not output.is_enabled()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL if quiet else None,
                            stderr=subprocess.PIPE if quiet else None, pass_fds=(write_fd,))
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        line = pipe.readline()
    _, err = proc.communicate()
    if proc.returncode != 0 or not line:
        detail = (err or b"").decode(errors="replace").strip()
        raise ExecutionError(f"The app could not be deployed:\n{detail}" if detail else
                             "The app could not be deployed.")
    return dict(json.loads(line))
