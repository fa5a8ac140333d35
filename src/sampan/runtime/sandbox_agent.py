"""Inside a `modal.Sandbox`: the agent that runs its entrypoint and every `exec`, keeps their output, takes
their input, works on its files, and relays its exposed ports. The server talks to it, and only it can:
JSON over HTTP on the container's Unix socket (mode 0600, in the container's own socket directory).

Processes run in the container (its filesystem, its namespaces, its root) in sessions of their own; their
output is kept in memory per stream, from offset 0, up to MAX_KEPT bytes (older bytes are dropped and
a reader is told how many it lost), so a reader that comes later, or twice, reads the same bytes. A read
waits up to `wait` seconds for bytes past its offset: a client streams a process's output line by line
by reading in a loop. The entrypoint is process `main`.

Each exposed port has a second socket beside the agent's (`<socket>.<port>`) that the server's tunnels
connect to; the agent copies each connection to 127.0.0.1:<port> inside the container's network.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import pty
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from . import sandbox_files
from .relay import relay_to_port

MAX_KEPT = 32 << 20  # bytes of one stream kept for readers
MAX_READ = 4 << 20  # bytes of one answer to a read
MAX_BODY = 96 << 20
MAX_PROCESSES = 1024


@dataclass
class Stream:
    """One output stream of a process: its bytes from offset `base`, and whether it ended."""

    data: bytearray = field(default_factory=bytearray)
    base: int = 0
    eof: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, piece: bytes) -> None:
        self.data += piece
        if len(self.data) > MAX_KEPT:
            drop = len(self.data) - MAX_KEPT
            del self.data[:drop]
            self.base += drop
        self.changed.set()

    def end(self) -> None:
        self.eof = True
        self.changed.set()

    async def read(self, offset: int, wait: float) -> dict[str, Any]:
        deadline = time.monotonic() + max(0.0, wait)
        while offset >= self.base + len(self.data) and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        lost = max(0, self.base - offset)
        start = max(offset, self.base) - self.base
        piece = bytes(self.data[start:start + MAX_READ])
        end = self.base + start + len(piece)
        return {"data": base64.b64encode(piece).decode(), "offset": end, "lost": lost,
                "eof": self.eof and end >= self.base + len(self.data)}


@dataclass
class Process:
    proc: asyncio.subprocess.Process | None  # None: it could not start (Agent.failed)
    streams: dict[int, Stream]
    stdin: Any  # a StreamWriter, or the pty's master fd (int)
    deadline: float | None = None
    returncode: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    timed_out: bool = False


class Agent:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.web = spec["entry"]["web"]
        self.processes: dict[str, Process] = {}
        self.relays: list[asyncio.AbstractServer] = []

    # -- processes --------------------------------------------------------------------------------
    async def start(self, pid: str, argv: list[str], workdir: str | None, env: dict[str, str] | None,
                    use_pty: bool, timeout: float | None) -> None:
        if len(self.processes) >= MAX_PROCESSES:
            for old in [k for k, p in self.processes.items() if p.done.is_set()][:MAX_PROCESSES // 2]:
                del self.processes[old]
        environ = {**os.environ, **(env or {})}
        for name in ("SAMPAN_SERVER_PID",):
            environ.pop(name, None)
        cwd = workdir or self.web.get("workdir") or os.getcwd()
        streams = {1: Stream(), 2: Stream()}
        if use_pty:
            leader, follower = pty.openpty()
            proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, env=environ, stdin=follower,
                                                        stdout=follower, stderr=follower, start_new_session=True)
            os.close(follower)
            streams[2].end()  # a PTY merges stderr into stdout, as on Modal
            process = Process(proc, streams, leader)
            asyncio.get_running_loop().create_task(self._pump_pty(process, leader, streams[1]))
        else:
            proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, env=environ, stdin=asyncio.subprocess.PIPE,
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE, start_new_session=True)
            process = Process(proc, streams, proc.stdin)
            loop = asyncio.get_running_loop()
            loop.create_task(self._pump(proc.stdout, streams[1], pid == "main", "stdout"))
            loop.create_task(self._pump(proc.stderr, streams[2], pid == "main", "stderr"))
        if timeout:
            process.deadline = time.monotonic() + timeout
        self.processes[pid] = process
        asyncio.get_running_loop().create_task(self._reap(process))

    @staticmethod
    async def _pump(reader: Any, stream: Stream, echo: bool, name: str) -> None:
        """Keep a process's output; the entrypoint's also goes to the container's log."""
        out = getattr(sys, name)
        while piece := await reader.read(65536):
            stream.add(piece)
            if echo:
                out.write(piece.decode(errors="replace"))
                out.flush()
        stream.end()

    @staticmethod
    async def _pump_pty(process: Process, leader: int, stream: Stream) -> None:
        """A PTY's output until it ends; then its descriptor is closed and forgotten (a later write cannot
        reach whatever file reuses the number)."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def readable() -> None:
            try:
                piece = os.read(leader, 65536)
            except OSError:
                piece = b""
            if piece:
                stream.add(piece)
            else:
                loop.remove_reader(leader)
                stream.end()
                if not done.done():
                    done.set_result(None)

        loop.add_reader(leader, readable)
        try:
            await done
        finally:
            process.stdin = None
            with contextlib.suppress(OSError):
                os.close(leader)

    def failed(self, exc: OSError, argv: list[str]) -> Process:
        """A process that could not start: its message on stderr, and the shell's exit code for it."""
        streams = {1: Stream(), 2: Stream()}
        streams[2].add(f"{argv[0] if argv else ''}: {exc.strerror or exc}\n".encode())
        for stream in streams.values():
            stream.end()
        process = Process(None, streams, None, returncode=127 if isinstance(exc, FileNotFoundError) else 126)
        process.done.set()
        return process

    async def _reap(self, process: Process) -> None:
        proc = process.proc
        assert proc is not None
        if process.deadline is not None:
            try:
                await asyncio.wait_for(proc.wait(), max(0.0, process.deadline - time.monotonic()))
            except asyncio.TimeoutError:
                process.timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        code = await proc.wait()
        # Modal's codes: an exec past its timeout is -1; a process ended by signal N is 128 + N.
        process.returncode = -1 if process.timed_out else (128 - code if code < 0 else code)
        if process.stdin is not None and not isinstance(process.stdin, int):
            process.stdin.close()  # its pipe: no descriptor left behind by an ended process
        process.done.set()

    async def close(self) -> None:
        """End every process (its whole group) and wait for each to be reaped."""
        for process in self.processes.values():
            if process.proc is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.proc.pid, signal.SIGKILL)
        for process in self.processes.values():
            if process.proc is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(process.done.wait(), 5)

    def _process(self, pid: str) -> Process:
        found = self.processes.get(pid)
        if found is None:
            raise LookupError(f"no process {pid}")
        return found

    async def io(self, body: dict[str, Any]) -> dict[str, Any]:
        process = self._process(str(body.get("process") or "main"))
        op = body.get("op")
        if op == "read":
            return await process.streams[int(body.get("fd") or 1)].read(int(body.get("offset") or 0),
                                                                         float(body.get("wait") or 0))
        if op == "write":
            data = base64.b64decode(body.get("data") or "")
            if isinstance(process.stdin, int):
                os.write(process.stdin, data)
            elif process.stdin is None or process.stdin.is_closing():
                raise ValueError("Stdin is closed. Cannot write to it.")
            else:
                process.stdin.write(data)
                with contextlib.suppress(ConnectionError):
                    await process.stdin.drain()
            return {}
        if op == "eof":
            if isinstance(process.stdin, int):
                os.write(process.stdin, b"\x04")
            elif process.stdin is not None and not process.stdin.is_closing():
                process.stdin.write_eof() if process.stdin.can_write_eof() else process.stdin.close()
            return {}
        if op == "wait":
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.done.wait(), max(0.0, float(body.get("timeout") or 0)))
            return {"returncode": process.returncode}
        if op == "kill":
            with contextlib.suppress(ProcessLookupError):
                if process.proc is not None:
                    os.killpg(process.proc.pid, int(body.get("signal") or signal.SIGKILL))
            return {}
        raise ValueError(f"unknown process operation {op!r}")

    # -- readiness and ports ---------------------------------------------------------------------------
    async def ready(self) -> bool:
        probe = self.web.get("probe")
        if not probe:
            return True
        if probe.get("tcp_port"):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", int(probe["tcp_port"]))
            except OSError:
                return False
            writer.close()
            return True
        proc = await asyncio.create_subprocess_exec(*probe["exec_argv"], stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        return await proc.wait() == 0

    async def relay_ports(self, unix_path: str) -> None:
        for port in self.web.get("ports") or []:
            path = f"{unix_path}.{int(port)}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            server = await asyncio.start_unix_server(lambda r, w, p=int(port): relay_to_port(r, w, p), path)
            os.chmod(path, 0o600)
            self.relays.append(server)

    # -- the server's requests ---------------------------------------------------------------------
    async def handle(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == "/exec":
            pid = "pr-" + secrets.token_hex(8)
            argv = body.get("argv")
            if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
                raise ValueError("exec needs a command: a non-empty list of strings")
            try:
                await self.start(pid, argv, body.get("workdir"), body.get("env"), bool(body.get("pty")),
                                 body.get("timeout"))
            except OSError as exc:  # a command that is not there: a process that exits 127, as in a shell
                self.processes[pid] = self.failed(exc, argv)
            return {"process": pid}
        if path == "/io":
            return await self.io(body)
        if path == "/fs":
            return await sandbox_files.operate(body)
        if path == "/ready":
            return {"ready": await self.ready()}
        raise LookupError(f"no route {path}")


async def _answer(agent: Agent, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        _method, path, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length > MAX_BODY:
            raise ValueError("request too large")
        body = json.loads(await reader.readexactly(length) or b"{}") if length else {}
        try:
            answer, status = await agent.handle(path, body), 200
        except FileNotFoundError as exc:
            answer, status = {"error": str(exc), "kind": "FileNotFoundError"}, 404
        except (IsADirectoryError, NotADirectoryError, FileExistsError, PermissionError, OSError) as exc:
            answer, status = {"error": str(exc), "kind": type(exc).__name__}, 400
        except LookupError as exc:
            answer, status = {"error": str(exc), "kind": "LookupError"}, 404
        except (ValueError, TypeError, KeyError) as exc:
            answer, status = {"error": str(exc), "kind": type(exc).__name__}, 400
        data = json.dumps(answer).encode()
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n"
                     f"connection: close\r\n\r\n".encode() + data)
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def serve(spec: dict[str, Any], status: Any) -> int:
    """The sandbox's main process: start the entrypoint, answer the server until it stops the container."""
    agent = Agent(spec)
    web = agent.web
    unix_path = spec.get("unix_socket")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if web.get("cmd"):
            await agent.start("main", list(web["cmd"]), web.get("workdir"), None, bool(web.get("pty")), None)
        else:  # no entrypoint: the sandbox lives until its timeout or terminate()
            await agent.start("main", ["sleep", "infinity"], "/", None, False, None)
    except OSError as exc:  # as a shell would: 127 not found, 126 not executable; the sandbox then ends
        agent.processes["main"] = agent.failed(exc, list(web.get("cmd") or []))
    if unix_path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(unix_path)
        server = await asyncio.start_unix_server(lambda r, w: _answer(agent, r, w), unix_path, limit=1 << 20)
        os.chmod(unix_path, 0o600)
        await agent.relay_ports(unix_path)
        status.send({"ready": {"unix": unix_path}})
    else:  # the process runtime: a loopback port
        server = await asyncio.start_server(lambda r, w: _answer(agent, r, w), "127.0.0.1", 0, limit=1 << 20)
        host, port = server.sockets[0].getsockname()[:2]
        status.send({"ready": {"host": host, "port": port}})
    try:
        await stop.wait()
    finally:
        server.close()
        for relay in agent.relays:
            relay.close()
        await agent.close()
    return 0
