"""The control API's route table and matcher (server/control/router.py, routes.py): pure."""

from __future__ import annotations

import pytest

from sampan.exception import InvalidError, NotFoundError
from sampan.server.control import ROUTES
from sampan.server.control.router import Route, error_text, literal_routes, match, status_for
from sampan.server.control.wire import HTTPError
from sampan.server.images.recipe import ImageBuildError


async def handler(control: object, req: object) -> object:
    return None


TABLE = [Route("GET", "/v1/apps/{name}/logs", handler), Route("POST", "/v1/apps/{name}/stop", handler),
         Route("DELETE", "/v1/images/{id}", handler), Route("POST", "/v1/images/prune", handler)]


def test_parameters_are_one_decoded_segment() -> None:
    route, params = match(TABLE, "GET", "/v1/apps/my%20app/logs")
    assert route.pattern == "/v1/apps/{name}/logs" and params == {"name": "my app"}
    assert match(TABLE, "POST", "/v1/images/prune")[0].pattern == "/v1/images/prune"
    assert match(TABLE, "DELETE", "/v1/images/prune")[1] == {"id": "prune"}


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/apps/x/stop", 405), ("GET", "/v1/apps//logs", 404), ("GET", "/v1/apps/a/b/logs", 404),
    ("PUT", "/v1/images/x", 405), ("GET", "/nothing", 404)])
def test_misses_say_404_or_405(method: str, path: str, status: int) -> None:
    with pytest.raises(HTTPError) as info:
        match(TABLE, method, path)
    assert info.value.status == status


def test_every_route_is_unique_and_under_v1() -> None:
    keys = [(r.method, r.pattern) for r in ROUTES]
    assert len(keys) == len(set(keys)) and all(p.startswith("/v1/") or p == "/metrics" for _, p in keys)


def test_one_map_from_exception_to_status() -> None:
    assert status_for(NotFoundError("x")) == 404
    assert status_for(InvalidError("x")) == 400
    assert status_for(ImageBuildError("x")) == 400
    assert status_for(HTTPError(504, "slow")) == 504
    assert status_for(RuntimeError("a bug")) is None  # not an answer: the bug surfaces
    assert error_text(KeyError("name")) == "missing field 'name'"


def test_the_literal_index_answers_as_the_walk_would() -> None:
    """`literal_routes` lets a dict answer a path without parameters; a literal route that a pattern before it
    takes (POST /v1/things/new under POST /v1/things/{id}) stays with the pattern."""
    table = [Route("POST", "/v1/things/{id}", handler), Route("POST", "/v1/things/new", handler),
             Route("GET", "/v1/things/new", handler), Route("POST", "/v1/calls", handler)]
    index = literal_routes(table)
    assert set(index) == {("GET", "/v1/things/new"), ("POST", "/v1/calls")}
    for (method, path), route in index.items():
        assert match(table, method, path)[0] is route
    real = literal_routes(ROUTES)
    assert ("POST", "/v1/calls") in real
    for (method, path), route in real.items():
        assert match(ROUTES, method, path)[0] is route
