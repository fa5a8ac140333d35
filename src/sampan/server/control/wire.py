"""How the control API writes its answers: JSON, NDJSON and text streams.

Connections are kept alive (a client's calls reuse one), so every answer is framed exactly: a
content-length for JSON, chunked encoding for streams. An answer that ends its connection says
`connection: close`. Pure byte builders, plus the one writer that streams a call's outcome without
holding it twice.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Protocol


class Writer(Protocol):
    """The part of asyncio.StreamWriter the handlers use (tests pass an in-memory one)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


class HTTPError(Exception):
    """An answer with this status and `{"error": message}` (server/control_pkg/router.py maps the rest)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def json_response(status: int, payload: Any, close: bool = False) -> bytes:
    body = json.dumps(payload).encode()
    ending = "connection: close\r\n" if close else ""
    return (
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{ending}\r\n"
    ).encode() + body


def response(status: int, body: bytes, content_type: str) -> bytes:
    """A whole answer of another type than JSON (Prometheus's text format)."""
    return (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


def stream_head(content_type: str) -> bytes:
    """The head of a streamed answer (NDJSON events, log lines): chunked until the last chunk."""
    return f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n".encode()


NDJSON = "application/x-ndjson"
TEXT = "text/plain; charset=utf-8"
LAST_CHUNK = b"0\r\n\r\n"


SMALL_RESULT = 1 << 20  # a call's result up to this size is answered in one write


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def event(payload: dict[str, Any]) -> bytes:
    """One NDJSON event as a chunk."""
    return chunk(json.dumps(payload).encode() + b"\n")


async def write_result(writer: Writer, outcome: bytes, extra: dict[str, Any] | None = None) -> None:
    """`{"result": <base64 of outcome>, **extra}`, written in pieces: a large result is never held as a
    base64 string and a JSON document besides the outcome itself."""
    prefix = b'{"result": "'
    suffix = b'"' + (b", " + json.dumps(extra).encode()[1:-1] if extra else b"") + b"}"
    encoded = 4 * ((len(outcome) + 2) // 3)
    head = (f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            f"{len(prefix) + encoded + len(suffix)}\r\n\r\n".encode() + prefix)
    if len(outcome) <= SMALL_RESULT:  # one write, one wake-up of the client (a `.remote()` round trip)
        writer.write(head + base64.b64encode(outcome) + suffix)
        return
    writer.write(head)
    view = memoryview(outcome)
    step = 3 * 65536
    for start in range(0, len(outcome), step):
        writer.write(base64.b64encode(view[start:start + step]))
        await writer.drain()
    writer.write(suffix)
