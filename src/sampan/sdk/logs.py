"""`app.logs`, `function.logs`, `server.logs`, `function_call.logs` (Modal 1.5.3+): what containers printed,
read back through the server's log store (`GET /v1/apps/{name}/logs?format=json`, or a call's
`/v1/calls/{id}/logs`), as Modal's `LogEntry` objects.

`fetch(since=...)` a time range, `tail(entries)` the latest, `stream(timeout=)` new entries as they come
until none arrives for `timeout` seconds. Each has its async twin, `await`-free as Modal's are:
`async for entry in f.logs.tail.aio(10)`. Times that carry no timezone are local time, as on Modal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from ..api import default_client, path
from ..exception import InvalidError

LogSource = Literal["stdout", "stderr", "system"]


@dataclass(frozen=True)
class LogEntry:
    """One line a container printed (`modal.types.LogEntry`)."""

    message: str
    timestamp: dt.datetime
    source: LogSource
    object_id: str
    context_ids: list[str] = field(default_factory=list)


def _utc(value: Any, name: str) -> float:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{name} must be a datetime")
    if value.tzinfo is None:
        value = value.astimezone()  # a naive time is local time
    return value.timestamp()


class _Reader:
    """`logs.tail(...)` and `logs.tail.aio(...)`: a reader and its async twin, which pulls the same
    entries in a worker thread so an event loop is never blocked on the server."""

    def __init__(self, read: Callable[..., Iterator[LogEntry]]) -> None:
        self._read = read

    def __call__(self, *args: Any, **kwargs: Any) -> Iterator[LogEntry]:
        return self._read(*args, **kwargs)

    async def aio(self, *args: Any, **kwargs: Any) -> AsyncIterator[LogEntry]:
        import asyncio

        entries = self._read(*args, **kwargs)
        done = object()
        while True:
            entry = await asyncio.to_thread(next, entries, done)
            if entry is done:
                return
            yield entry  # type: ignore[misc]


class LogsManager:
    """The logs of an app, of one of its functions (`function` set), or of one function call (`call_id`)."""

    def __init__(self, app_name: str | None, function: str | None = None, object_id: str = "",
                 call_id: str | None = None) -> None:
        self._app = app_name
        self._function = function
        self._object_id = object_id
        self._call_id = call_id
        self.fetch = _Reader(self._fetch)
        self.tail = _Reader(self._tail)
        self.stream = _Reader(self._stream)

    def _read(self, query: dict[str, str], timeout: float | None = None) -> Iterator[LogEntry]:
        if self._call_id:
            route = path("v1", "calls", self._call_id, "logs", query={"format": "json", **query})
        elif not self._app:
            raise InvalidError("Logs are read from a deployed App: this App has no name.")
        else:
            if self._function:
                query["function"] = self._function
            route = path("v1", "apps", self._app, "logs", query={"format": "json", **query})
        try:
            for record in default_client().stream_json("GET", route, timeout=timeout):
                source = record["stream"] if record["stream"] in ("stdout", "stderr") else "system"
                yield LogEntry(record["text"] + "\n", dt.datetime.fromtimestamp(record["time"], dt.timezone.utc),
                               source, self._object_id, [record["container"]] if record["container"] else [])
        except TimeoutError:
            return

    def _fetch(self, *, since: dt.datetime, until: dt.datetime | None = None, source: LogSource | None = None,
              search_text: str = "") -> Iterator[LogEntry]:
        """Entries from `since` to `until` (now by default), oldest first."""
        query = {"since": str(_utc(since, "since")), "until": str(_utc(until or dt.datetime.now(dt.timezone.utc),
                                                                        "until"))}
        if source:
            query["source"] = source
        if search_text:
            query["search"] = search_text
        return self._read(query)

    def _tail(self, entries: int = 100, *, source: LogSource | None = None) -> Iterator[LogEntry]:
        """The latest `entries`, oldest first."""
        query = {"n": str(int(entries))}
        if source:
            query["source"] = source
        return self._read(query)

    def _stream(self, timeout: float | None = None) -> Iterator[LogEntry]:
        """New entries as they are printed; ends once none came for `timeout` seconds (None: never)."""
        if timeout is not None and timeout <= 0:
            return iter(())
        return self._read({"n": "0", "follow": "1", "since": str(dt.datetime.now().timestamp())},
                          timeout=timeout)
