"""A connection on a container's Unix socket copied to a port inside the container's own network: how the
gateway reaches a `web_server` function's port, and how a Sandbox's exposed ports are reached. `pipe` is
one direction of such a copy (the server's tunnels use it too, gateway/tunnels.py)."""

from __future__ import annotations

import asyncio


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until the end of `reader`, then half-close `writer`; a broken connection closes it."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, address: tuple[str, int] | str) -> None:
    """Copy one connection to `address` (host and port, or a Unix socket's path) and back, half-closes
    included; a target that does not answer closes the connection."""
    try:
        if isinstance(address, tuple):
            app_r, app_w = await asyncio.open_connection(*address)
        else:
            app_r, app_w = await asyncio.open_unix_connection(address)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(pipe(client_r, app_w), pipe(app_r, client_w))
    finally:
        app_w.close()
        client_w.close()


async def relay_to_port(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, port: int) -> None:
    """Copy one gateway connection to the app's port and back, half-closes included."""
    await relay(client_r, client_w, ("127.0.0.1", port))
