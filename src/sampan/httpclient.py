"""A small HTTP/1.1 client connection: what the control API's one client (api.py) needs, and no more.

`http.client` costs ~290 µs of CPU per request and answer here (its headers go through the `email`
parser), ~70 µs for the same exchange over a socket: on a `.remote()` round trip of about a
millisecond, that is a fifth. This module sends a request in one `sendall` and reads the answer from
a buffered socket file: a status line, headers, and a body by content-length, by chunks, or to the
end of the connection. The response is file-like as http.client's is (`read`, `readline`, iteration
by lines, `status`, `will_close`, `isclosed`), so api.py reads JSON, NDJSON and text from it alike.

socket and ssl are imported on first use: `import sampan` stays free of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MAX_LINE = 65536  # a status line, header or chunk-size line longer than this is not an answer we read


class Closed(ConnectionError):
    """The server closed the connection before answering (a kept connection it had let go)."""


def _split_hostport(hostport: str, https: bool) -> tuple[str, int]:
    host, sep, port = hostport.rpartition(":")
    if not sep or "]" in port:  # no port (or an IPv6 address without one)
        host, port = hostport, ""
    host = host.strip("[]")
    return host, int(port) if port else (443 if https else 80)


class Response:
    """An answer being read from a connection."""

    def __init__(self, file: Any, method: str) -> None:
        line = file.readline(MAX_LINE)
        if not line:
            raise Closed("the server closed the connection")
        version, _, rest = line.partition(b" ")
        try:
            self.status = int(rest[:3])
        except ValueError:
            raise ConnectionError(f"not an HTTP answer: {line[:80]!r}") from None
        self.headers: dict[str, str] = {}
        while True:
            line = file.readline(MAX_LINE)
            if not line:
                raise ConnectionError("the server closed the connection in the middle of an answer")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.partition(b":")
            self.headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        self._file = file
        self.will_close = self.headers.get("connection", "").lower() == "close" or version == b"HTTP/1.0"
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._left: int | None = None  # bytes of the body (or of the current chunk) not read yet
        if method == "HEAD" or self.status in (204, 304) or self.status < 200:
            self._left = 0
        elif not self._chunked and "content-length" in self.headers:
            self._left = int(self.headers["content-length"])
        elif not self._chunked:
            self.will_close = True  # a body that ends with the connection
        self._done = self._left == 0 and not self._chunked

    def isclosed(self) -> bool:
        """Whether the body has been read to its end."""
        return self._done

    def _room(self) -> int:
        """Bytes that may be read now without passing the body's (or chunk's) end; -1: to the end."""
        if self._chunked and not self._left:
            size = self._file.readline(MAX_LINE).split(b";", 1)[0].strip()
            if not size:
                raise ConnectionError("the server closed the connection in the middle of an answer")
            self._left = int(size, 16)
            if self._left == 0:
                while self._file.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._done = True
                return 0
        return -1 if self._left is None else self._left

    def _took(self, data: bytes) -> None:
        if self._left is None:
            if not data:
                self._done = True
            return
        self._left -= len(data)
        if self._left == 0:
            if self._chunked:
                self._file.readline(MAX_LINE)  # the CRLF after the chunk
            else:
                self._done = True
        elif not data:
            raise ConnectionError("the server closed the connection in the middle of an answer")

    def read(self, amount: int = -1) -> bytes:
        out = bytearray()
        while not self._done and (amount < 0 or len(out) < amount):
            room = self._room()
            if self._done:
                break
            want = room if amount < 0 else (min(room, amount - len(out)) if room >= 0 else amount - len(out))
            data = self._file.read(want) if want >= 0 else self._file.read()
            self._took(data)
            out += data
        return bytes(out)

    def readline(self) -> bytes:
        out = bytearray()
        while not self._done and not out.endswith(b"\n"):
            room = self._room()
            if self._done:
                break
            data = self._file.readline(room) if room >= 0 else self._file.readline()
            self._took(data)
            out += data
        return bytes(out)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class Connection:
    """One kept-alive connection to `host:port` (TLS with `context`)."""

    def __init__(self, hostport: str, timeout: float | None, context: Any = None) -> None:
        import socket

        self.hostport = hostport
        host, port = _split_hostport(hostport, context is not None)
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._file = sock.makefile("rb")
        self._timeout = timeout

    def settimeout(self, timeout: float | None) -> None:
        if timeout != self._timeout:  # each change is two fcntl calls: a `.remote()` loop never changes it
            self.sock.settimeout(timeout)
            self._timeout = timeout

    def request(self, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> Response:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.hostport}", *(f"{k}: {v}" for k, v in headers.items())]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        return Response(self._file, method)

    def close(self) -> None:
        self._file.close()
        self.sock.close()
