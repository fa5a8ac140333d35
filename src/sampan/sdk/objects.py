"""`modal.Dict` and `modal.Queue`: named objects kept by the Sampan server (server/objects.py).

Handles are lazy, as in Modal: `Dict.from_name("cache", create_if_missing=True)` does no I/O;
each operation is one request to the control API (sdk/calls.py finds the server). Keys and
values travel pickled (cloudpickle); keys with a fixed protocol, so that equal keys are equal
bytes on the server. Named objects are durable (they survive a server restart); ephemeral ones
are deleted when their `with` block ends.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..api import default_client, path

_KEY_PROTOCOL = 4
T = TypeVar("T")


def _dump(value: Any, protocol: int | None = None) -> str:
    import cloudpickle

    return base64.b64encode(cloudpickle.dumps(value, protocol=protocol)).decode()


@contextlib.contextmanager
def ephemeral(make: Callable[[str, bool], T], delete: Callable[[str], None]) -> Iterator[T]:
    """A named object with a random name, deleted when the `with` block ends (Dict, Queue, Volume)."""
    import secrets

    obj = make(f"ephemeral-{secrets.token_hex(6)}", True)
    try:
        yield obj
    finally:
        delete(obj.name)  # type: ignore[attr-defined]


def _load(data: str) -> Any:
    import pickle

    return pickle.loads(base64.b64decode(data))


class _Object:
    _kind = ""

    def __init__(self, name: str, create_if_missing: bool = False) -> None:
        self.name = name
        self._create = create_if_missing

    def __repr__(self) -> str:
        return f"{type(self).__name__}.from_name({self.name!r})"

    def _op(self, op: str, http_timeout: float | None = 60.0, **fields: Any) -> dict[str, Any]:
        body = {"op": op, "create_if_missing": self._create, **fields}
        return default_client().call("POST", path("v1", "objects", self._kind, self.name), body, timeout=http_timeout)

    @classmethod
    def from_name(cls, name: str, *, environment_name: str | None = None, create_if_missing: bool = False,
                  client: Any = None) -> Any:
        return cls(name, create_if_missing)

    @classmethod
    def ephemeral(cls, client: Any = None,
                  environment_name: str | None = None) -> contextlib.AbstractContextManager[Any]:
        return ephemeral(cls, cls.delete)

    @classmethod
    def delete(cls, name: str, *, client: Any = None, environment_name: str | None = None) -> None:
        default_client().delete(path("v1", "objects", cls._kind, name))


class Dict(_Object):
    """A dictionary shared by every container and client of a workspace."""

    _kind = "dict"

    def get(self, key: Any, default: Any = None) -> Any:
        found = self._op("get", key=_dump(key, _KEY_PROTOCOL))
        return _load(found["value"]) if found["found"] else default

    def __getitem__(self, key: Any) -> Any:
        found = self._op("get", key=_dump(key, _KEY_PROTOCOL))
        if not found["found"]:
            raise KeyError(key)
        return _load(found["value"])

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        return bool(self._op("put", key=_dump(key, _KEY_PROTOCOL), value=_dump(value),
                             skip_if_exists=skip_if_exists)["created"])

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def update(self, other: Any = None, /, **kwargs: Any) -> None:
        items = dict(other or {}, **kwargs)
        self._op("update", items=[[_dump(k, _KEY_PROTOCOL), _dump(v)] for k, v in items.items()])

    def pop(self, key: Any, default: Any = ...) -> Any:
        found = self._op("pop", key=_dump(key, _KEY_PROTOCOL))
        if found["found"]:
            return _load(found["value"])
        if default is ...:
            raise KeyError(key)
        return default

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    def contains(self, key: Any) -> bool:
        return bool(self._op("contains", key=_dump(key, _KEY_PROTOCOL))["found"])

    def __contains__(self, key: Any) -> bool:
        return self.contains(key)

    def len(self) -> int:
        return int(self._op("len")["len"])

    def __len__(self) -> int:
        return self.len()

    def _items(self) -> list[tuple[Any, Any]]:
        return [(_load(k), _load(v)) for k, v in self._op("items")["items"]]

    def keys(self) -> Iterator[Any]:
        return iter([k for k, _ in self._items()])

    def values(self) -> Iterator[Any]:
        return iter([v for _, v in self._items()])

    def items(self) -> Iterator[tuple[Any, Any]]:
        return iter(self._items())

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def clear(self) -> None:
        self._op("clear")


class Queue(_Object):
    """A FIFO queue with partitions, shared by every container and client of a workspace."""

    _kind = "queue"

    def put(self, v: Any, block: bool = True, timeout: float | None = None, *, partition: str | None = None,
            partition_ttl: int = 86400) -> None:
        self.put_many([v], block, timeout, partition=partition, partition_ttl=partition_ttl)

    def put_many(self, vs: list[Any], block: bool = True, timeout: float | None = None, *,
                 partition: str | None = None, partition_ttl: int = 86400) -> None:
        self._op("put", values=[_dump(v) for v in vs], partition=partition, partition_ttl=partition_ttl)

    def _get(self, n: int, block: bool, timeout: float | None, partition: str | None) -> list[Any]:
        http_timeout = None if (block and timeout is None) else (timeout or 0) + 60
        found = self._op("get", http_timeout=http_timeout, n=n, block=block, timeout=timeout, partition=partition)
        if found.get("timed_out"):
            import queue

            raise queue.Empty()
        return [_load(v) for v in found["values"]]

    def peek(self, n: int = 1, *, partition: str | None = None) -> list[Any]:
        """The next `n` items, left in the queue (what `sampan queue peek` shows)."""
        return [_load(v) for v in self._op("peek", n=n, partition=partition)["values"]]

    def get(self, block: bool = True, timeout: float | None = None, *, partition: str | None = None) -> Any:
        """The oldest item; None at once when empty and `block=False`; queue.Empty after `timeout`."""
        values = self._get(1, block, timeout, partition)
        return values[0] if values else None

    def get_many(self, n_values: int, block: bool = True, timeout: float | None = None, *,
                 partition: str | None = None) -> list[Any]:
        return self._get(n_values, block, timeout, partition)

    def len(self, *, partition: str | None = None, total: bool = False) -> int:
        return int(self._op("len", partition=partition, total=total)["len"])

    def __len__(self) -> int:
        return self.len()

    def clear(self, *, partition: str | None = None, all: bool = False) -> None:  # noqa: A002 - Modal's name
        self._op("clear", partition=partition, all=all)

    def iterate(self, *, partition: str | None = None, item_poll_timeout: float = 0.0) -> Iterator[Any]:
        """Items as they come, until none arrives within `item_poll_timeout` seconds."""
        while True:
            try:
                values = self._get(1, item_poll_timeout > 0, item_poll_timeout or None, partition)
            except Exception as exc:  # queue.Empty, imported only when a queue runs dry
                if type(exc).__name__ == "Empty":
                    return
                raise
            if not values:
                return
            yield values[0]


__all__ = ["Dict", "Queue"]
