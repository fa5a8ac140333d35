"""`Function.update_autoscaler` settings (server/autoscaler.override), with Modal's texts."""

from __future__ import annotations

import pytest

from sampan.server.autoscaler import PoolConfig, describe, override


def test_given_settings_replace_the_deployed_ones() -> None:
    base = PoolConfig(max_inputs=4, min_containers=0, max_containers=10, scaledown_window=60)
    new = override(base, min_containers=2, scaledown_window=5)
    assert (new.min_containers, new.max_containers, new.scaledown_window, new.max_inputs) == (2, 10, 5, 4)
    assert describe(new) == {"min_containers": 2, "max_containers": 10, "buffer_containers": 0,
                             "scaledown_window": 5}
    assert override(base) == base


@pytest.mark.parametrize("kwargs, message", [
    ({"min_containers": -1}, "`min_containers` must be a nonnegative integer or `None`."),
    ({"buffer_containers": 1.5}, "`buffer_containers` must be a nonnegative integer or `None`."),
    ({"max_containers": 0}, "`max_containers` must be a postive integer or `None`."),
    ({"scaledown_window": 1}, "`scaledown_window` must be between 2 and 3600 (inclusive)"),
    ({"min_containers": 20}, "cannot be greater than `max_containers`"),
])
def test_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        override(PoolConfig(max_containers=10), **kwargs)  # type: ignore[arg-type]
