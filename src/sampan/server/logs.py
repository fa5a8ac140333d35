"""Container output kept by the server: the last lines of each container, and live followers.

Bounded: each container keeps its last LINES_PER_CONTAINER lines, and the store forgets the
oldest containers beyond MAX_CONTAINERS, so a long-running server's memory does not grow.

A line is tagged with the function call (`fc-...`) its container was running when it arrived: the one
input in flight there, or the one that ended less than LATE_S ago (output can arrive just after the
result). A container running several inputs at once tags none of them: which printed what is unknown.
That is what `FunctionCall.logs` reads: best effort, as Modal says of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

LINES_PER_CONTAINER = 2000
MAX_CONTAINERS = 500
LATE_S = 0.5


@dataclass(frozen=True)
class LogLine:
    time: float
    stream: str
    text: str
    container_id: str = ""
    tag: str = ""
    call_id: str = ""  # the function call its container was running (see above), or ""

    def display(self) -> str:
        return f"{self.tag} {self.container_id} │ {self.text}" if self.tag else self.text


class LogStore:
    def __init__(self) -> None:
        self._lines: OrderedDict[str, deque[LogLine]] = OrderedDict()
        self._followers: dict[str, set[asyncio.Queue[LogLine | None]]] = {}
        self._owner: dict[str, str] = {}  # container id -> app key
        self._workspace: dict[str, str] = {}  # container id -> the workspace whose logs they are
        self._app_followers: dict[asyncio.Queue[LogLine | None], tuple[str | None, set[str]]] = {}
        self._running: dict[str, list[str]] = {}  # container id -> function calls in flight there
        self._ended: dict[str, tuple[str, float]] = {}  # container id -> (its last call, when it ended)

    def input_started(self, container_id: str, call_id: str) -> None:
        self._running.setdefault(container_id, []).append(call_id)

    def input_ended(self, container_id: str, call_id: str, now: float | None = None) -> None:
        running = self._running.get(container_id, [])
        if call_id in running:
            running.remove(call_id)
        if not running:
            self._running.pop(container_id, None)
        self._ended[container_id] = (call_id, time.monotonic() if now is None else now)

    def call_of(self, container_id: str, now: float | None = None) -> str:
        """The function call a line of this container belongs to, or "" (see the module's docstring)."""
        running = self._running.get(container_id)
        if running:
            return running[0] if len(running) == 1 else ""
        ended = self._ended.get(container_id)
        if ended is not None and (time.monotonic() if now is None else now) - ended[1] < LATE_S:
            return ended[0]
        return ""

    def containers_of(self, app_key: str) -> list[str]:
        return [cid for cid, key in self._owner.items() if key == app_key and cid in self._lines]

    def follow_all(self, app_key: str | None, container_ids: set[str]) -> asyncio.Queue[LogLine | None]:
        """Lines of these containers and, with `app_key`, of every container the app starts later."""
        queue: asyncio.Queue[LogLine | None] = asyncio.Queue()
        self._app_followers[queue] = (app_key, set(container_ids))
        return queue

    def unfollow_all(self, queue: asyncio.Queue[LogLine | None]) -> None:
        self._app_followers.pop(queue, None)

    def append(self, container_id: str, stream: str, text: str, app_key: str | None = None, tag: str = "",
               workspace: str | None = None) -> None:
        if app_key is not None:
            self._owner[container_id] = app_key
        if workspace is not None:
            self._workspace[container_id] = workspace
        lines = self._lines.get(container_id)
        if lines is None:
            lines = self._lines[container_id] = deque(maxlen=LINES_PER_CONTAINER)
            while len(self._lines) > MAX_CONTAINERS:
                gone, _ = self._lines.popitem(last=False)
                self._owner.pop(gone, None)
                self._workspace.pop(gone, None)
                self._ended.pop(gone, None)
        line = LogLine(time.time(), stream, text, container_id, tag, self.call_of(container_id))
        lines.append(line)
        for queue in self._followers.get(container_id, ()):
            queue.put_nowait(line)
        owner = self._owner.get(container_id)
        for queue, (key, ids) in self._app_followers.items():
            if container_id in ids or (key is not None and key == owner):
                queue.put_nowait(line)

    def containers_of_workspace(self, workspace: str) -> list[str]:
        return [cid for cid, ws in self._workspace.items() if ws == workspace and cid in self._lines]

    def known(self, container_id: str) -> bool:
        return container_id in self._lines

    def workspace_of(self, container_id: str) -> str | None:
        """Whose logs these are: a container's logs outlive it, and only its workspace may read them."""
        return self._workspace.get(container_id)

    def tail(self, container_id: str, n: int | None = None) -> list[LogLine]:
        lines = list(self._lines.get(container_id, ()))
        return lines[-n:] if n else lines

    def follow(self, container_id: str) -> asyncio.Queue[LogLine | None]:
        queue: asyncio.Queue[LogLine | None] = asyncio.Queue()
        self._followers.setdefault(container_id, set()).add(queue)
        return queue

    def unfollow(self, container_id: str, queue: asyncio.Queue[LogLine | None]) -> None:
        self._followers.get(container_id, set()).discard(queue)

    def close(self, container_id: str) -> None:
        """The container is gone: followers get the end of the stream."""
        for queue in self._followers.pop(container_id, set()):
            queue.put_nowait(None)
