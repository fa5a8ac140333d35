"""A full collection after each gateway test. A test that leaves a socket or a stream writer in a
reference cycle is then reported at its own teardown (pytest turns the ResourceWarning of the object's
`__del__` into an error), instead of failing whichever later test happens to trigger the collection:
twice that was the allocation-heavy parser fuzz test, with no sign of where the leak came from."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    yield
    gc.collect()
