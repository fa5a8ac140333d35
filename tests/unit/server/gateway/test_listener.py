"""The gateway's listening sockets (gateway/listener.py)."""

from __future__ import annotations

import asyncio
import socket

from sampan.server.gateway.listener import _bind


def test_accepted_connections_get_tcp_nodelay_on_the_plain_asyncio_loop() -> None:
    """asyncio sets TCP_NODELAY only on sockets created with proto=IPPROTO_TCP; without it a response
    head and body written apart wait for the client's delayed ACK (40 ms a request, seen in a
    benchmark on the plain loop)."""

    async def main() -> int:
        sock = _bind("127.0.0.1", 0)
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted = writer.get_extra_info("socket")
            seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(main()) != 0
