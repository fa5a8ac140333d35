"""`@app.server(...)` and `modal.Server` (Modal 1.5.1+), and `modal.experimental.http_server` on `@app.cls`.

A server class starts an HTTP server of its own in `@modal.enter()`, listening on `port`; the
platform gives it a URL and autoscales its containers on concurrent requests. Here it is a class-level
`web_server` endpoint (the container runs the class's `@enter` hooks, then waits for the port), with
Modal's validation and texts (fact sheet `modal-surface.md` §7.1-7.4). A server asks for a proxy token
unless `unauthenticated=True`, as on Modal.

`@modal.sessioned()` servers take sticky sessions (`server.sessions.start()`): the gateway binds a
session's token to one container (server/sessions.py).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..exception import ExecutionError, InvalidError
from .calls import AutoscalerMixin, CallTarget, FunctionAutoscalerSettings, local_target
from .logs import LogsManager
from .lookup import web_url
from .partial import LIFECYCLE_ENTER, LIFECYCLE_EXIT, Parameter, PartialFunction

SESSION_START_TIMEOUT_S = 300.0  # a session may wait for a container to start
UNLIMITED_INPUTS = 10_000  # `max_concurrency` unset or 0: no per-container limit (bounded all the same)
SESSIONED = "__sampan_sessioned__"  # set on a class by `@modal.sessioned()`


def check_options(*, port: Any, startup_timeout: Any, exit_grace_period: Any, routing_region: Any,
                  target_concurrency: Any, max_concurrency: Any, scaleup_window: Any,
                  experimental_options: dict[str, Any] | None, grace_limit: int = 3600,
                  grace_text: str = "3600 seconds (1 hour)") -> tuple[int, int | None]:
    """Modal's rules for a server's options; (max_inputs, target_inputs) for its pool."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidError("Port must be a positive integer between 1 and 65535.")
    if not isinstance(startup_timeout, (int, float)) or startup_timeout <= 0:
        raise InvalidError("The `startup_timeout` argument must be positive.")
    if exit_grace_period is not None:
        if exit_grace_period < 0:
            raise InvalidError("The `exit_grace_period` argument must be non-negative.")
        if exit_grace_period > grace_limit:
            raise InvalidError(f"The `exit_grace_period` argument must not exceed {grace_text}.")
    if routing_region is not None and not routing_region:
        raise InvalidError("The `routing_region` argument must be passed.")
    if scaleup_window is not None and (isinstance(scaleup_window, bool) or not isinstance(scaleup_window, int)
                                       or scaleup_window <= 0):
        raise InvalidError("`scaleup_window` must be > 0")
    target: int | None = None
    if target_concurrency is not None:
        if isinstance(target_concurrency, bool) or not isinstance(target_concurrency, (int, float)):
            raise InvalidError(f"The `target_concurrency` argument must be a number, not "
                               f"{type(target_concurrency).__name__}.")
        if not math.isfinite(target_concurrency):
            raise InvalidError(f"The `target_concurrency` argument must be finite, not {target_concurrency}.")
        if target_concurrency < 0:
            raise InvalidError("The `target_concurrency` argument must be non-negative.")
        target = max(1, math.ceil(target_concurrency)) if target_concurrency > 0 else None
    if max_concurrency is not None:
        if experimental_options and "max_concurrency" in experimental_options:
            raise InvalidError("`max_concurrency` cannot be set both as an app.server parameter and an "
                               "experimental option.")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, (int, float)):
            raise InvalidError(f"The `max_concurrency` argument must be a number, not "
                               f"{type(max_concurrency).__name__}.")
        if not float(max_concurrency).is_integer():
            raise InvalidError("The `max_concurrency` argument must be an integer.")
        if max_concurrency < 0:
            raise InvalidError("The `max_concurrency` argument must be non-negative.")
        if target_concurrency is not None and max_concurrency and target_concurrency > max_concurrency:
            raise InvalidError("The `target_concurrency` argument cannot be greater than `max_concurrency`.")
    limit = int(max_concurrency) if max_concurrency else UNLIMITED_INPUTS
    return limit, (min(target, limit) if target is not None else None)


def check_class(user_cls: Any, enable_memory_snapshot: bool) -> None:
    """What a server class may be (Modal's texts)."""
    if isinstance(user_cls, PartialFunction) or not inspect.isclass(user_cls):
        if isinstance(user_cls, PartialFunction) and user_cls.concurrent_declared:
            raise InvalidError(f"Server class {user_cls.__name__} cannot be decorated with `@modal.concurrent()`. "
                               "Please use `target_concurrency` param instead.")
        if isinstance(user_cls, PartialFunction) and user_cls.web is not None:
            raise InvalidError(f"Server class {user_cls.__name__} cannot be decorated with `@modal.web_server()`. "
                               "Servers already expose HTTP endpoints.")
        raise TypeError("The @app.server() decorator must be used on a class.")
    name = user_cls.__name__
    if getattr(user_cls, "__sampan_http_server__", None) is not None:
        raise InvalidError(f"Server class {name} cannot have @modal.experimental.http_server() decorator. "
                           "Servers already expose HTTP endpoints.")
    if "__init__" in vars(user_cls):
        raise InvalidError(f"Server class {name} cannot have a custom __init__ method. Use @modal.enter() for "
                           "initialization logic instead.")
    hooks = []
    for klass in reversed(user_cls.__mro__):
        for value in vars(klass).values():
            if not isinstance(value, PartialFunction):
                if isinstance(value, Parameter):
                    raise InvalidError(f"Server class {name} cannot use modal.parameter(). Servers do not support "
                                       "parameterization.")
                continue
            if value.flags & {LIFECYCLE_ENTER}:
                hooks.append(value)
            elif not value.flags & {LIFECYCLE_EXIT}:
                raise InvalidError(f"Server class {name} cannot have `@modal.method()` decorated functions. "
                                   "Servers only expose HTTP endpoints.")
    if not hooks:
        raise InvalidError("Server class must have an @modal.enter() to setup the server.")
    if any(h.snap for h in hooks) and not enable_memory_snapshot:
        raise InvalidError("Server must have `enable_memory_snapshot=True` to use `snap=True` on `@modal.enter` "
                           "methods.")


@dataclass(frozen=True)
class ServerSessionCredentials:
    """A session of a `@modal.sessioned()` server: send `Modal-Authorization: Bearer <token>` with each
    request and it reaches the same container until the session ends."""

    session_id: str
    token: str


class _Sessions:
    """`server.sessions`: start and terminate sticky sessions (answered by the gateway, server/sessions.py)."""

    def __init__(self, server: Server) -> None:
        self._server = server

    def _post(self, action: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        import http.client
        from urllib.parse import urlsplit

        url = self._server.get_url()
        if not url:
            raise ExecutionError("The server has no URL yet: it is not running.")
        parts = urlsplit(url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = kind(parts.hostname or "127.0.0.1", parts.port, timeout=SESSION_START_TIMEOUT_S)
        try:
            conn.request("POST", f"/_modal/sessions/{action}", body=b"",
                         headers={**headers, **_proxy_auth(), "x-idempotency-key": secrets.token_hex(8)})
            resp = conn.getresponse()
            return resp.status, resp.reason, resp.read()
        except OSError as exc:
            raise ExecutionError(f"Failed to {action} session: {exc}") from None
        finally:
            conn.close()

    def start(self, idle_timeout: int = 600) -> ServerSessionCredentials:
        if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, int) or idle_timeout <= 0:
            raise InvalidError("`idle_timeout` must be a positive integer.")
        status, reason, body = self._post("start", {"x-modal-server-session-idle-timeout": str(idle_timeout),
                                                    "x-modal-timestamp": str(time.time())})
        if status >= 400:
            raise ExecutionError(f"Failed to start session: status {status} {reason}")
        try:
            data = json.loads(body)
            return ServerSessionCredentials(str(data["session_id"]), str(data["token"]))
        except (ValueError, KeyError, TypeError):
            raise ExecutionError("Failed to start session: unexpected response from server") from None

    def terminate(self, token: str) -> None:
        status, reason, _ = self._post("terminate", {"x-modal-server-session-token": token})
        if status >= 400 and status != 404:
            raise ExecutionError(f"Failed to terminate session: status {status} {reason}")


def _proxy_auth() -> dict[str, str]:
    """A proxy token for servers that need one (MODAL_KEY/MODAL_SECRET in the environment)."""
    key, secret = os.environ.get("MODAL_KEY"), os.environ.get("MODAL_SECRET")
    return {"Modal-Key": key, "Modal-Secret": secret} if key and secret else {}


class Server(AutoscalerMixin):
    """What `@app.server(...)` returns: the server's handle (its URL, its autoscaler)."""

    def __init__(self, cls_handle: Any = None, sessioned: bool | None = False, app_name: str | None = None,
                 name: str | None = None) -> None:
        self._cls = cls_handle
        self._sessioned = sessioned
        self._app_name = app_name if cls_handle is None else getattr(cls_handle.app, "name", None)
        self._name = name if cls_handle is None else cls_handle.name

    def __repr__(self) -> str:
        return f"Server({self._name!r})"

    @property
    def object_id(self) -> str:
        return f"fu-{self._app_name}-{self._name}"

    @staticmethod
    def from_name(app_name: str, name: str, *, environment_name: str | None = None, client: Any = None) -> Server:
        """A deployed server of the Sampan server, by app and class name (lazy)."""
        return Server(app_name=app_name, name=name, sessioned=None)  # the gateway knows whether it is sessioned

    def hydrate(self, client: Any = None) -> Server:
        return self

    def get_url(self) -> str | None:
        """The server's URL: known inside its app's containers and `sampan run`, else asked of the server."""
        if self._cls is not None and self._cls._web_urls.get(""):
            return self._cls._web_urls[""]
        if not self._app_name or not self._name:
            return None
        return web_url(self._app_name, self._name)

    @property
    def logs(self) -> LogsManager:
        """What the server's containers printed."""
        return LogsManager(self._app_name, self._name, self.object_id)

    @property
    def sessions(self) -> _Sessions:
        if self._sessioned is False:
            raise InvalidError("`sessions` requires `@modal.sessioned()` on the Server.")
        return _Sessions(self)

    def _call_target(self) -> CallTarget:
        if self._cls is not None:
            return local_target(self._cls.app, self._name)
        return CallTarget(self._app_name, self._name or "")

    def update_autoscaler(self, *, target_concurrency: float | None = None, min_containers: int | None = None,
                          max_containers: int | None = None, buffer_containers: int | None = None,
                          scaledown_window: int | None = None, scaleup_window: int | None = None
                          ) -> FunctionAutoscalerSettings:
        """Override the server's autoscaler until its next deploy (`target_concurrency` as well)."""
        if target_concurrency is not None and (isinstance(target_concurrency, bool) or target_concurrency <= 0):
            raise InvalidError("Invalid argument: `target_concurrency` must be a postive float or `None`.")
        if scaleup_window is not None and (isinstance(scaleup_window, bool) or not isinstance(scaleup_window, int)
                                           or scaleup_window <= 0):
            raise InvalidError("Invalid argument: `scaleup_window` must be a postive integer.")
        return self._update(min_containers=min_containers, max_containers=max_containers,
                            buffer_containers=buffer_containers, scaledown_window=scaledown_window,
                            target_inputs=math.ceil(target_concurrency) if target_concurrency else None)
