"""`Function.from_name` / `Cls.from_name`: handles to functions deployed on a Sampan server.

Lazy, as in Modal: nothing is looked up until a method needs it (`get_web_url()`); then the
control API of the server found in $SAMPAN_HOME (or SAMPAN_SERVER_URL with SAMPAN_TOKEN_ID and
SAMPAN_TOKEN_SECRET) answers.
"""

from __future__ import annotations

from typing import Any

from ..api import default_client, path
from ..exception import ExecutionError, InvalidError
from .calls import AutoscalerMixin, CallMixin, CallTarget
from .logs import LogsManager
from .variants import VariantMixin


def web_url(app_name: str, tag: str) -> str | None:
    return default_client().get(path("v1", "functions", app_name, tag), timeout=10)["web_url"]


class RemoteFunction(CallMixin, AutoscalerMixin, VariantMixin):
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

    @property
    def logs(self) -> LogsManager:
        return LogsManager(self.app_name, self.tag, f"fu-{self.tag}")

    def _call_target(self) -> CallTarget:
        return CallTarget(self.app_name, self.tag, dict(getattr(self, "params", {}) or {}), variant=self._variant)


class RemoteCls(VariantMixin):
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
        fn._variant = self._cls._variant
        return fn


class _RemoteMethod(RemoteFunction):
    def __init__(self, app_name: str, tag: str, params: dict[str, Any]) -> None:
        super().__init__(app_name, tag)
        self.params = params

    def get_web_url(self) -> str | None:
        base = super().get_web_url()
        if base is None or not self.params:
            return base
        return base + path(query={k: str(v).lower() if isinstance(v, bool) else v for k, v in self.params.items()})


def function_from_name(app_name: str, name: str, **_: Any) -> RemoteFunction:
    if "." in name:
        raise InvalidError(
            f"Invalid name: {name!r}. Looking up class methods with `Function.from_name` is not supported: "
            "use `modal.Cls.from_name` instead."
        )
    return RemoteFunction(app_name, name)


def cls_from_name(app_name: str, name: str, **_: Any) -> RemoteCls:
    return RemoteCls(app_name, name)
