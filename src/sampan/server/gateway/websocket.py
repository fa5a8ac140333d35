"""WebSocket proxying after the 101: raw bytes both ways, with the client's message size checked.

The gateway does not terminate WebSockets; it reads the client's frame headers (RFC 6455 §5.2) as
they pass, so a message over the limit (2 MiB, Modal's) is answered with close code 1009 whatever
server is behind (an ASGI app or a `web_server`). Server-to-client bytes are copied untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from ...config import WS_MAX_MESSAGE
from .bodies import CHUNK

CLOSE_TOO_BIG = 1009
MAX_MESSAGE = WS_MAX_MESSAGE


class MessageTooBig(Exception):
    pass


def close_frame(code: int, reason: str = "") -> bytes:
    """An unmasked close frame, as a server sends it."""
    payload = struct.pack("!H", code) + reason.encode()[:123]
    return bytes([0x88, len(payload)]) + payload


async def _exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    return await reader.readexactly(n)


async def client_to_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_message: int) -> None:
    """Copy client frames to the server, tracking each message's size across its fragments."""
    message = 0
    while True:
        head = await _exactly(reader, 2)
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        extra = b""
        if length == 126:
            extra = await _exactly(reader, 2)
            length = struct.unpack("!H", extra)[0]
        elif length == 127:
            extra = await _exactly(reader, 8)
            length = struct.unpack("!Q", extra)[0]
        mask = await _exactly(reader, 4) if head[1] & 0x80 else b""
        if opcode in (0x1, 0x2):
            message = length
        elif opcode == 0x0:
            message += length
        if opcode < 0x8 and message > max_message:
            raise MessageTooBig(message)
        writer.write(head + extra + mask)
        remaining = length
        while remaining:
            data = await reader.read(min(remaining, CHUNK))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            writer.write(data)
            remaining -= len(data)
            await writer.drain()
        await writer.drain()


async def server_to_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        data = await reader.read(CHUNK)
        if not data:
            return
        writer.write(data)
        await writer.drain()


async def proxy(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                server_reader: asyncio.StreamReader, server_writer: asyncio.StreamWriter,
                max_message: int = MAX_MESSAGE) -> None:
    up = asyncio.create_task(client_to_server(client_reader, server_writer, max_message))
    down = asyncio.create_task(server_to_client(server_reader, client_writer))
    try:
        done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if up in done and isinstance(up.exception(), MessageTooBig):
            client_writer.write(close_frame(CLOSE_TOO_BIG, "message too big"))
            with contextlib.suppress(Exception):
                await client_writer.drain()
            return
        if up in done:
            with contextlib.suppress(Exception):
                if server_writer.can_write_eof():
                    server_writer.write_eof()
        # One side finished: give the other a moment to finish its closing handshake.
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 5.0)
    finally:
        for task in (up, down):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
