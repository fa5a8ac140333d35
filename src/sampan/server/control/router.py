"""The control API's route table: a route is data (method, pattern, handler), matched without I/O.

Patterns name their parameters in braces (`/v1/apps/{name}/stop`); a parameter matches one path
segment, percent-decoded. `STATUS` is the one map from an exception to the answer's status: every
handler raises, none writes an error itself.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from ...exception import AlreadyExistsError, AuthError, InvalidError, NotFoundError, ResourceExhaustedError
from ..images.recipe import ImageBuildError
from .wire import HTTPError, Writer

WRITTEN = object()  # a handler's answer when it wrote a streamed response itself


@dataclass
class Request:
    """What a handler gets: the caller's workspace, the route's parameters, the query, the JSON body."""

    workspace: Any  # store.Workspace
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    writer: Writer

    @property
    def json(self) -> dict[str, Any]:
        """The body as an object ({} when none was sent); anything else is a 400."""
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise InvalidError("the request body must be a JSON object")
        return self.body


Handler = Callable[[Any, Request], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: Handler = field(compare=False)

    @functools.cached_property
    def segments(self) -> tuple[str, ...]:
        """Split once: `match` runs for every request, over every route before the one that fits."""
        return tuple(self.pattern.strip("/").split("/"))


def match(routes: list[Route], method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route for `method path` and its parameters; HTTPError 404 (no path) or 405 (other method)."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    path_found = False
    for route in routes:
        segments = route.segments
        if len(segments) != len(parts):
            continue
        params: dict[str, str] = {}
        for want, got in zip(segments, parts, strict=True):
            if want.startswith("{") and want.endswith("}"):
                if not got:
                    break
                params[want[1:-1]] = got
            elif want != got:
                break
        else:
            if route.method == method:
                return route, params
            path_found = True
    if path_found:
        raise HTTPError(405, f"{method} is not allowed here")
    raise HTTPError(404, "not found")


def literal_routes(routes: list[Route]) -> dict[tuple[str, str], Route]:
    """`(method, path) -> route` for the routes without parameters, each kept only where `match` finds that
    very route for it (an earlier pattern may take the path first): a dict lookup answers the common
    request (`POST /v1/calls`) without walking the list."""
    index = {}
    for route in routes:
        if "{" not in route.pattern:
            with contextlib.suppress(HTTPError):
                if match(routes, route.method, route.pattern)[0] is route:
                    index[(route.method, route.pattern)] = route
    return index


def parse_query(raw: bytes) -> dict[str, str]:
    return dict(parse_qsl(raw.decode("latin-1")))


STATUS: dict[type[BaseException], int] = {
    NotFoundError: 404,
    AlreadyExistsError: 409,
    ResourceExhaustedError: 429,
    AuthError: 401,
    InvalidError: 400,
    ImageBuildError: 400,
    ValueError: 400,
    KeyError: 400,
    TypeError: 400,
    AttributeError: 400,
}


def status_for(exc: BaseException) -> int | None:
    """The status an exception answers with, or None for one that is a server bug (re-raised)."""
    if isinstance(exc, HTTPError):
        return exc.status
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return None


def error_text(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}" if exc.args else "missing field"
    return str(exc) or type(exc).__name__
