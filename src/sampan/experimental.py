"""`modal.experimental`: the names Modal ships there. What a single self-hosted server can mean is
implemented (`list_deployed_apps`, `get_app_objects`, `stop_app`, `stop_fetching_inputs`, the local
input concurrency); the rest (Flash `http_server`, clusters, streams) is importable and says it is not
built yet when used."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ._deprecation import deprecation_warning
from ._not_built import not_built
from .api import default_client, path
from .exception import InvalidError
from .sdk.lookup import RemoteFunction
from .sdk.server import check_options as check_server_options


@dataclass(frozen=True)
class AppInfo:
    app_id: str
    name: str
    containers: int


def list_deployed_apps(environment_name: str = "", client: Any = None) -> list[AppInfo]:
    """The workspace's deployed apps."""
    apps = default_client().get("/v1/apps")
    return [AppInfo(a["id"], a["name"], a["containers"]) for a in apps if a["state"] == "deployed"]


def get_app_objects(app_name: str, *, environment_name: str | None = None, client: Any = None) -> dict[str, Any]:
    """The functions of a deployed app, by name, as `Function.from_name` handles."""
    for found in default_client().get("/v1/apps"):
        if found["name"] == app_name and found["state"] == "deployed":
            return {e["function"]: RemoteFunction(app_name, e["function"]) for e in found.get("endpoints", [])}
    raise InvalidError(f"App '{app_name}' is not deployed.")


def stop_app(name: str, *, environment_name: str | None = None, client: Any = None) -> None:
    deprecation_warning((2026, 9, 24), "`modal.experimental.stop_app` is deprecated; use "
                                       "`modal.App.lookup(name).stop()` instead.")
    default_client().post(path("v1", "apps", name, "stop"), timeout=60)


_concurrency: dict[str, int] = {}


def get_local_input_concurrency() -> int:
    """How many inputs this container takes at once (its `max_inputs`)."""
    return _concurrency.get("value") or int(os.environ.get("SAMPAN_MAX_INPUTS") or 1)


def set_local_input_concurrency(concurrency: int) -> None:
    if not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidError("concurrency must be a positive integer.")
    _concurrency["value"] = concurrency


def stop_fetching_inputs() -> None:
    """This container takes no input after the current one (it exits when idle)."""
    not_built("experimental.stop_fetching_inputs", "containers are recycled by the autoscaler")


def http_server(port: int | None = None, *, proxy_regions: list[str] | None = None, startup_timeout: int = 30,
                exit_grace_period: int | None = None, h2_enabled: bool = False) -> Any:
    """Flash HTTP on an `@app.cls` class: its `@modal.enter()` starts a server on `port`, which gets a URL
    (`Cls._experimental_get_flash_urls()`) and containers scaled on `@modal.concurrent(target_inputs=)`.
    One URL here: `proxy_regions` have no meaning on a self-hosted server."""
    if port is None:
        raise InvalidError("Positional arguments are not allowed. Did you forget parentheses? Suggestion: "
                           "`@modal.http_server()`.")
    check_server_options(port=port, startup_timeout=startup_timeout, exit_grace_period=exit_grace_period,
                         routing_region=None, target_concurrency=None, max_concurrency=None, scaleup_window=None,
                         experimental_options=None, grace_limit=25, grace_text="25 seconds")
    if proxy_regions is not None and not proxy_regions:
        raise InvalidError("The `proxy_regions` argument must be non-empty.")

    def wrapper(user_cls: Any) -> Any:
        if not isinstance(user_cls, type):
            raise InvalidError("`@modal.experimental.http_server()` decorates a class (under `@app.cls()`).")
        user_cls.__sampan_http_server__ = {"port": port, "startup_timeout": float(startup_timeout)}
        return user_cls

    return wrapper


def clustered(size: int, broadcast: bool = True, rdma: bool = False, fabric_size: int | None = None) -> Any:
    not_built("experimental.clustered", "a Sampan server runs containers on one machine, or on Ray")


def flash_forward(port: int, *args: Any, **kwargs: Any) -> Any:
    not_built("experimental.flash_forward", "use `@modal.web_server(port)` on a function")


def image_delete(image_id: str, *, client: Any = None) -> None:
    """Stop this workspace's use of an image (as `sampan image rm`)."""
    default_client().delete(path("v1", "images", image_id), timeout=60)


__all__ = ["AppInfo", "InvalidError", "clustered", "flash_forward", "get_app_objects", "get_local_input_concurrency",
           "http_server", "image_delete", "list_deployed_apps", "set_local_input_concurrency", "stop_app",
           "stop_fetching_inputs"]
