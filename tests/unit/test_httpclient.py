"""The control API's HTTP/1.1 client connection (httpclient.py) against a real server on loopback that
answers by content-length, by chunks, to the connection's end, and closes kept connections."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from sampan.httpclient import Closed, Connection

ANSWERS = {
    b"/length": b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello\nworld",
    b"/chunked": (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                  b"6\r\nhello\n\r\n8;ext=1\r\nwor\nld\n!\r\n0\r\ntrailer: x\r\n\r\n"),
    b"/empty": b"HTTP/1.1 204 No Content\r\n\r\n",
    b"/close": b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n{\"error\": \"gone\"}",
}


@pytest.fixture
def server() -> Iterator[tuple[str, list[bytes]]]:
    """Answers each request on a connection from ANSWERS; `/bye` closes without answering."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    byte = reader.read(1)
                    if not byte:
                        return
                    head += byte
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                seen.append(head + reader.read(length))
                path = head.split(b" ")[1]
                if path == b"/bye":
                    return
                conn.sendall(ANSWERS[path])
                if path in (b"/close",):
                    return

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}", seen
    listener.close()


def test_bodies_by_length_chunks_and_none_on_one_kept_connection(server: tuple[str, list[bytes]]) -> None:
    address, seen = server
    conn = Connection(address, 5)
    try:
        resp = conn.request("POST", "/length", b'{"a": 1}', {"Authorization": "Bearer t"})
        assert resp.status == 200 and resp.read() == b"hello\nworld" and resp.isclosed() and not resp.will_close
        assert seen[-1].endswith(b"Content-Length: 8\r\n\r\n{\"a\": 1}") and b"Host: " + address.encode() in seen[-1]
        resp = conn.request("GET", "/chunked", None, {})
        assert list(resp) == [b"hello\n", b"wor\n", b"ld\n", b"!"] and resp.isclosed()
        assert b"Content-Length" not in seen[-1], "a GET without a body says nothing of one"
        resp = conn.request("POST", "/length", None, {})
        assert resp.readline() == b"hello\n" and resp.read(3) == b"wor" and resp.read() == b"ld"
        assert seen[-1].endswith(b"Content-Length: 0\r\n\r\n")
        resp = conn.request("DELETE", "/empty", None, {})
        assert resp.status == 204 and resp.read() == b"" and resp.isclosed()
        resp = conn.request("GET", "/close", None, {})
        assert resp.status == 404 and resp.will_close
    finally:
        conn.close()


def test_a_connection_the_server_let_go_says_so(server: tuple[str, list[bytes]]) -> None:
    address, _ = server
    conn = Connection(address, 5)
    try:
        with pytest.raises(Closed):
            conn.request("GET", "/bye", None, {})
    finally:
        conn.close()


def test_a_slow_answer_times_out() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        conn = Connection(f"127.0.0.1:{listener.getsockname()[1]}", 0.2)
        with pytest.raises(TimeoutError):
            conn.request("GET", "/", None, {})
        conn.close()
    finally:
        listener.close()
