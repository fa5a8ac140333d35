"""`Function.from_name` / `Cls.from_name`: handles to functions deployed on a Sampan server.

Lazy, as in Modal: nothing is looked up until a method needs it (`get_web_url()`); then the
control API of the server found in $SAMPAN_HOME (or SAMPAN_SERVER_URL with SAMPAN_TOKEN_ID and
SAMPAN_TOKEN_SECRET) answers.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from ..exception import ExecutionError, InvalidError, NotFoundError
from .calls import AutoscalerMixin, CallMixin, CallTarget


def _control() -> tuple[str, str]:
    """The control API and a bearer token: a persistent server with the CLI's API token, else a
    running `sampan serve` of this $SAMPAN_HOME with its own token (the local user's workspace)."""
    from ..config import Settings, read_token
    from ..server.control import running_servers

    settings = Settings.from_env()
    token = read_token(settings)
    url = os.environ.get("SAMPAN_SERVER_URL")
    if url is not None:
        if token is None:
            raise ExecutionError("No Sampan API token: set SAMPAN_TOKEN_ID and SAMPAN_TOKEN_SECRET.")
        return url, f"{token[0]}:{token[1]}"
    servers = running_servers(settings.home)
    persistent = [s for s in servers if s.kind == "server"]
    if persistent and token is not None:
        return persistent[0].control_url, f"{token[0]}:{token[1]}"
    if servers and servers[0].token:
        return servers[0].control_url, servers[0].token
    if persistent:
        raise ExecutionError("No Sampan API token: set SAMPAN_TOKEN_ID and SAMPAN_TOKEN_SECRET.")
    raise ExecutionError("No Sampan server is running: start one with `sampan server start`.")


def web_url(app_name: str, tag: str) -> str | None:
    from .calls import _server

    url, token = _server()
    request = urllib.request.Request(f"{url}/v1/functions/{quote(app_name)}/{quote(tag)}",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - the local control API
            return json.load(resp)["web_url"]
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]
        except (ValueError, KeyError):
            message = f"lookup failed ({exc.code})"
        raise NotFoundError(message) from None


class RemoteFunction(CallMixin, AutoscalerMixin):
    """A deployed function, looked up by name (the server checks what it is when it is called)."""

    def __init__(self, app_name: str, tag: str) -> None:
        self.app_name = app_name
        self.tag = tag

    def __repr__(self) -> str:
        return f"Function.from_name({self.app_name!r}, {self.tag!r})"

    def get_web_url(self) -> str | None:
        return web_url(self.app_name, self.tag)

    @property
    def web_url(self) -> str | None:
        return self.get_web_url()

    def local(self, *args: Any, **kwargs: Any) -> Any:
        raise ExecutionError("`.local()` is not available on a Function looked up with `from_name`.")

    def _call_target(self) -> CallTarget:
        return CallTarget(self.app_name, self.tag, dict(getattr(self, "params", {}) or {}))


class RemoteCls:
    """A deployed class, looked up by name; instantiate it to reach its methods."""

    def __init__(self, app_name: str, name: str) -> None:
        self.app_name = app_name
        self.name = name

    def __call__(self, **params: Any) -> RemoteObj:
        return RemoteObj(self, params)


class RemoteObj:
    def __init__(self, cls: RemoteCls, params: dict[str, Any]) -> None:
        self._cls = cls
        self._params = params

    def __getattr__(self, method: str) -> RemoteFunction:
        if method.startswith("_"):
            raise AttributeError(method)
        fn = _RemoteMethod(self._cls.app_name, f"{self._cls.name}.{method}", self._params)
        return fn


class _RemoteMethod(RemoteFunction):
    def __init__(self, app_name: str, tag: str, params: dict[str, Any]) -> None:
        super().__init__(app_name, tag)
        self.params = params

    def get_web_url(self) -> str | None:
        from urllib.parse import urlencode

        base = super().get_web_url()
        if base is None or not self.params:
            return base
        return base + "?" + urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in self.params.items()})


def function_from_name(app_name: str, name: str, **_: Any) -> RemoteFunction:
    if "." in name:
        raise InvalidError(
            f"Invalid name: {name!r}. Looking up class methods with `Function.from_name` is not supported: "
            "use `modal.Cls.from_name` instead."
        )
    return RemoteFunction(app_name, name)


def cls_from_name(app_name: str, name: str, **_: Any) -> RemoteCls:
    return RemoteCls(app_name, name)
