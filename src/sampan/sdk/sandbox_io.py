"""A Sandbox process and its streams (`modal.container_process`, `modal.io_streams`), over the server's
`/v1/sandboxes/{id}/io`: output is read by offset with long polls (so a reader streams it as it is
written, and reads it again from the start if it wants), input is buffered here until `drain()`.

Every method has its `.aio` twin (`twin` below), which runs the same call in a worker thread.
"""

from __future__ import annotations

import base64
import codecs
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar

from ..api import default_client, path
from ..exception import InvalidError
from ..stream_type import StreamType

T = TypeVar("T", str, bytes)
READ_WAIT_S = 30.0
MAX_BUFFERED = 2 << 20


class twin:  # noqa: N801 - used as a decorator, like property
    """A method with an `.aio` twin: `p.wait()` and `await p.wait.aio()`."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return _Bound(self.fn, obj)


class static_twin:  # noqa: N801 - used as a decorator, like staticmethod
    """A static method with an `.aio` twin: `Sandbox.create(...)` and `await Sandbox.create.aio(...)`."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn  # inspect.signature() shows the function's own

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    async def aio(self, *args: Any, **kwargs: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(self.fn, *args, **kwargs)


class _Bound:
    def __init__(self, fn: Callable[..., Any], obj: Any) -> None:
        self.fn, self.obj = fn, obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(self.obj, *args, **kwargs)

    async def aio(self, *args: Any, **kwargs: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(self.fn, self.obj, *args, **kwargs)


def io_call(sandbox_id: str, body: dict[str, Any], timeout: float = 90.0) -> Any:
    return default_client().call("POST", path("v1", "sandboxes", sandbox_id, "io"), body, timeout=timeout)


class StreamReader(Generic[T]):
    """A process's stdout or stderr: `read()` everything until it ends, or iterate as it comes (pieces, or
    lines with `bufsize=1`)."""

    def __init__(self, sandbox_id: str, process: str, fd: int, text: bool = True, by_line: bool = False,
                 stream_type: StreamType = StreamType.PIPE) -> None:
        self._sandbox, self._process, self._fd = sandbox_id, process, fd
        self._text, self._by_line, self._type = text, by_line, stream_type
        self._offset = 0

    @property
    def file_descriptor(self) -> int:
        return self._fd

    def _check(self) -> None:
        if self._type == StreamType.DEVNULL:
            raise ValueError("read is not supported for a stream configured with StreamType.DEVNULL")
        if self._type == StreamType.STDOUT:
            raise InvalidError("Output can only be retrieved using the PIPE stream type.")

    def _pieces(self) -> Iterator[bytes]:
        self._check()
        while True:
            got = io_call(self._sandbox, {"process": self._process, "op": "read", "fd": self._fd,
                                          "offset": self._offset, "wait": READ_WAIT_S}, READ_WAIT_S + 60)
            self._offset = got["offset"]
            data = base64.b64decode(got["data"])
            if data:
                yield data
            if got["eof"]:
                return

    def _items(self) -> Iterator[Any]:
        decoder = codecs.getincrementaldecoder("utf-8")("replace") if self._text else None
        pending: Any = "" if self._text else b""
        newline: Any = "\n" if self._text else b"\n"
        for piece in self._pieces():
            item = decoder.decode(piece) if decoder is not None else piece
            if not self._by_line:
                if item:
                    yield item
                continue
            pending += item
            *lines, pending = pending.split(newline)
            for line in lines:
                yield line + newline
        tail = decoder.decode(b"", final=True) if decoder is not None else b""
        if self._by_line:
            pending += tail
            if pending:
                yield pending
        elif tail:
            yield tail

    def __iter__(self) -> Iterator[T]:
        return self._items()

    async def __aiter__(self) -> AsyncIterator[T]:
        import asyncio

        items, done = self._items(), object()
        while (item := await asyncio.to_thread(next, items, done)) is not done:
            yield item  # type: ignore[misc]

    @twin
    def read(self) -> T:
        """Everything the stream holds until it ends."""
        items = list(self._items())
        return ("" if self._text else b"").join(items)  # type: ignore[return-value]


class StreamWriter:
    """A process's stdin: `write()` buffers, `drain()` sends, `write_eof()` closes it after what was written."""

    def __init__(self, sandbox_id: str, process: str) -> None:
        self._sandbox, self._process = sandbox_id, process
        self._buffer = bytearray()
        self._eof = False
        self._closed = False

    def write(self, data: bytes | bytearray | memoryview | str) -> None:
        if self._eof or self._closed:
            raise ValueError("Stdin is closed. Cannot write to it.")
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__}")
        if len(self._buffer) + len(data) > MAX_BUFFERED:
            raise BufferError("Buffer size exceed limit. Call drain to flush the buffer.")
        self._buffer += bytes(data)

    def write_eof(self) -> None:
        self._eof = True

    @twin
    def drain(self) -> None:
        """Send what was written (and the end of input, after `write_eof()`)."""
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            io_call(self._sandbox, {"process": self._process, "op": "write", "data": base64.b64encode(data).decode()})
        if self._eof and not self._closed:
            io_call(self._sandbox, {"process": self._process, "op": "eof"})
            self._closed = True


class ContainerProcess(Generic[T]):
    """A process in a Sandbox (`sb.exec(...)`, or the entrypoint's streams)."""

    def __init__(self, sandbox_id: str, process: str, text: bool = True, by_line: bool = False,
                 stdout: StreamType = StreamType.PIPE, stderr: StreamType = StreamType.PIPE) -> None:
        self._sandbox, self._process = sandbox_id, process
        self._returncode: int | None = None
        self.stdout: StreamReader[T] = StreamReader(sandbox_id, process, 1, text, by_line, stdout)
        self.stderr: StreamReader[T] = StreamReader(sandbox_id, process, 2, text, by_line, stderr)
        self.stdin = StreamWriter(sandbox_id, process)

    @property
    def object_id(self) -> str:
        return self._process

    def _wait(self, timeout: float) -> int | None:
        got = io_call(self._sandbox, {"process": self._process, "op": "wait", "timeout": timeout}, timeout + 60)
        self._returncode = got["returncode"]
        return self._returncode

    @twin
    def poll(self) -> int | None:
        """None while it runs, else its exit code (-1 after its exec `timeout`, 128+N after signal N)."""
        return self._returncode if self._returncode is not None else self._wait(0)

    @twin
    def wait(self) -> int:
        """Block until it exits; its exit code."""
        while self._returncode is None:
            self._wait(READ_WAIT_S)
        return self._returncode

    @property
    def returncode(self) -> int:
        if self._returncode is None:
            raise InvalidError("You must call wait() before accessing the returncode. To poll for the status of a "
                               "running process, use poll() instead.")
        return self._returncode

    def attach(self) -> None:
        """Connect this terminal to the process (one started with `pty=True`): keys go to its stdin, its
        output to the screen, until it exits. The terminal is in raw mode meanwhile, and restored."""
        import os
        import select
        import sys
        import termios
        import threading
        import tty

        stdin_fd = sys.stdin.fileno()
        if not os.isatty(stdin_fd):
            raise InvalidError("ContainerProcess.attach() needs a terminal (stdin is not a TTY).")
        finished = threading.Event()

        def show() -> None:
            out = sys.stdout.buffer
            for piece in self.stdout._pieces():
                out.write(piece)
                out.flush()
            finished.set()

        saved = termios.tcgetattr(stdin_fd)
        reader = threading.Thread(target=show, daemon=True)
        try:
            tty.setraw(stdin_fd)
            reader.start()
            while not finished.is_set():
                ready, _, _ = select.select([stdin_fd], [], [], 0.1)
                if ready:
                    data = os.read(stdin_fd, 4096)
                    if not data:
                        break
                    io_call(self._sandbox, {"process": self._process, "op": "write",
                                            "data": base64.b64encode(data).decode()})
        finally:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        reader.join(5)
        self.wait()
