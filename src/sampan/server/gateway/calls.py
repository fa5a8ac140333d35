"""Long requests (fact sheet §5): after the redirect window (150 s), the client gets a 303 to the same
URL with `__modal_function_call_id=fc-…`; the function keeps running and its response is kept here
until the client fetches it from that URL.

The response is spooled (in memory up to SPOOL_MEMORY bytes, then to a temporary file), so a long
result does not sit in RAM. A result nobody fetches is dropped KEEP_UNFETCHED_S after it is ready;
a delivered one is dropped at once ("HTTP has stream semantics").
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field

from .http import ResponseHead

CALL_PARAM = b"__modal_function_call_id"
SPOOL_MEMORY = 1 << 20
KEEP_UNFETCHED_S = 600.0


class Spool:
    """A write-only stream into a SpooledTemporaryFile, shaped like a StreamWriter for copy_body()."""

    def __init__(self) -> None:
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115 - closed in PendingCall

    def write(self, data: bytes) -> None:
        self.file.write(data)

    async def drain(self) -> None:
        return None


@dataclass(eq=False)
class PendingCall:
    id: str
    created: float = field(default_factory=time.monotonic)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    response: ResponseHead | None = None
    error: tuple[int, str] | None = None
    spool: Spool = field(default_factory=Spool)
    finished_at: float | None = None
    owner: str = ""  # "<workspace>/<function tag>": only that function's URL hands the result out

    def finish(self) -> None:
        self.finished_at = time.monotonic()
        self.done.set()

    def close(self) -> None:
        self.spool.file.close()


class CallStore:
    def __init__(self) -> None:
        self.calls: dict[str, PendingCall] = {}

    def add(self, call: PendingCall) -> None:
        self._expire()
        self.calls[call.id] = call

    def get(self, call_id: str) -> PendingCall | None:
        self._expire()
        return self.calls.get(call_id)

    def claim(self, call: PendingCall) -> bool:
        """Take a finished call out of the table to deliver it: of two fetches, only one gets it."""
        if self.calls.get(call.id) is not call:
            return False
        del self.calls[call.id]
        return True

    def remove(self, call_id: str) -> None:
        call = self.calls.pop(call_id, None)
        if call is not None:
            call.close()

    def close(self) -> None:
        for call_id in list(self.calls):
            self.remove(call_id)

    def _expire(self) -> None:
        now = time.monotonic()
        for call_id in [c.id for c in self.calls.values()
                        if c.finished_at is not None and now - c.finished_at > KEEP_UNFETCHED_S]:
            self.remove(call_id)


def call_id_from_query(query: bytes) -> str | None:
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == CALL_PARAM:
            return value.decode("latin-1")
    return None


def redirect_target(target: bytes, call_id: str) -> bytes:
    """The same URL plus `__modal_function_call_id=<id>` (relative, as RFC 9110 allows in Location)."""
    if call_id_from_query(target.split(b"?", 1)[1] if b"?" in target else b"") is not None:
        return target
    sep = b"&" if b"?" in target else b"?"
    return target + sep + CALL_PARAM + b"=" + call_id.encode()
