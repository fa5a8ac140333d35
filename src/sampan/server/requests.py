"""Every request through the gateway, recorded: a bounded ring of `Request` records, queried by
`sampan app requests` and followed live; and the aggregates behind `/metrics` and `sampan app stats`
(server/metrics.py), updated as each request ends, never computed by scanning the log.

The gateway's hot path pays one `record()` per request: a tuple-like object appended to a deque and a
few counters bumped. Queries and filters are pure functions over the records, tested with a fake clock.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

MAX_RECORDS = 100_000  # requests kept, all workspaces together; the oldest go first
MAX_FOLLOWERS = 64


@dataclass(slots=True)
class Request:
    """One request as the gateway saw it (times in seconds since the epoch, durations in ms)."""

    time: float
    workspace: str
    app: str  # the app version's key: `<workspace>/<name>` (deployed) or `<workspace>/serve:<name>`
    function: str
    method: str
    path: str
    status: int
    duration_ms: float
    queue_ms: float  # waiting for a container (Modal's input_queue_time)
    cold: bool  # the container started for this request (or while it waited)
    container: str
    bytes_in: int
    bytes_out: int
    client: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_since(text: str | None, now: float) -> float | None:
    """`10m`, `2h`, `30s`, `1d` ago, or an epoch time; None when not given. Raises ValueError."""
    if not text:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if match:
        return now - float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(text)


def status_matches(status: int, wanted: str | None) -> bool:
    """`--status 5xx`, `--status 404`, `--status 4xx,5xx`."""
    if not wanted:
        return True
    for part in wanted.split(","):
        part = part.strip().lower()
        if len(part) == 3 and part.endswith("xx") and part[0].isdigit():
            if status // 100 == int(part[0]):
                return True
        elif part.isdigit() and status == int(part):
            return True
    return False


def select(records: Iterable[Request], *, workspace: str, app: str | None = None, status: str | None = None,
           since: float | None = None, function: str | None = None) -> list[Request]:
    """The records a caller may see (its workspace only) that pass the filters, oldest first."""
    return [r for r in records if r.workspace == workspace and (app is None or r.app == app)
            and (since is None or r.time >= since) and (function is None or r.function == function)
            and status_matches(r.status, status)]


class RequestLog:
    """The ring of recent requests, its live followers, and the aggregates it feeds."""

    def __init__(self, max_records: int = MAX_RECORDS, clock: Callable[[], float] = time.time) -> None:
        self.records: collections.deque[Request] = collections.deque(maxlen=max_records)
        self.clock = clock
        self.followers: set[asyncio.Queue[Request]] = set()
        self.sinks: list[Callable[[Request], None]] = []  # the metrics (server/metrics.py), an exporter

    def record(self, request: Request) -> None:
        self.records.append(request)
        for sink in self.sinks:
            sink(request)
        for queue in self.followers:
            if queue.qsize() < 10_000:  # a follower that does not read loses lines, not the server's memory
                queue.put_nowait(request)

    def follow(self) -> asyncio.Queue[Request]:
        if len(self.followers) >= MAX_FOLLOWERS:
            raise ValueError("too many followers of the request log")
        queue: asyncio.Queue[Request] = asyncio.Queue()
        self.followers.add(queue)
        return queue

    def unfollow(self, queue: asyncio.Queue[Request]) -> None:
        self.followers.discard(queue)
