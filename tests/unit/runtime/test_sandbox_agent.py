"""A Sandbox's agent in process (no container): real processes, their output by offset, input, exit codes,
timeouts, files."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

from sampan.runtime import sandbox_files
from sampan.runtime.sandbox_agent import MAX_KEPT, Agent, Stream


def agent() -> Agent:
    return Agent({"entry": {"web": {}}, "unix_socket": None})


async def read_all(a: Agent, process: str, fd: int = 1) -> bytes:
    out, offset = b"", 0
    while True:
        got = await a.io({"process": process, "op": "read", "fd": fd, "offset": offset, "wait": 5})
        out += base64.b64decode(got["data"])
        offset = got["offset"]
        if got["eof"]:
            return out


def test_output_input_and_exit_codes() -> None:
    async def main() -> None:
        a = agent()
        await a.start("p", ["sh", "-c", "read x; echo got:$x; echo oops >&2; exit 3"], "/", None, False, None)
        await a.io({"process": "p", "op": "write", "data": base64.b64encode(b"hello\n").decode()})
        await a.io({"process": "p", "op": "eof"})
        assert await read_all(a, "p") == b"got:hello\n"
        assert await read_all(a, "p", 2) == b"oops\n"
        assert (await a.io({"process": "p", "op": "wait", "timeout": 5}))["returncode"] == 3
        # a reader may start again from the beginning
        again = await a.io({"process": "p", "op": "read", "fd": 1, "offset": 0})
        assert base64.b64decode(again["data"]) == b"got:hello\n" and again["eof"]
        await a.close()

    asyncio.run(main())


def test_a_read_waits_for_output_and_codes_follow_modal() -> None:
    async def main() -> None:
        a = agent()
        await a.start("slow", ["sh", "-c", "sleep 0.3; echo late"], "/", None, False, None)
        first = await a.io({"process": "slow", "op": "read", "fd": 1, "offset": 0, "wait": 0})
        assert first["data"] == "" and not first["eof"]
        waited = await a.io({"process": "slow", "op": "read", "fd": 1, "offset": 0, "wait": 5})
        assert base64.b64decode(waited["data"]) == b"late\n"
        await a.start("long", ["sleep", "30"], "/", None, False, 0.2)  # an exec past its timeout: -1
        assert (await a.io({"process": "long", "op": "wait", "timeout": 5}))["returncode"] == -1
        await a.start("killed", ["sleep", "30"], "/", None, False, None)
        await a.io({"process": "killed", "op": "kill", "signal": 15})
        assert (await a.io({"process": "killed", "op": "wait", "timeout": 5}))["returncode"] == 128 + 15
        await a.start("env", ["sh", "-c", "echo $GREETING; pwd"], "/tmp", {"GREETING": "hi"}, False, None)
        assert await read_all(a, "env") == b"hi\n/tmp\n"
        await a.start("tty", ["sh", "-c", "test -t 1 && echo tty; echo err >&2"], "/", None, True, None)
        assert (await read_all(a, "tty")).replace(b"\r", b"") == b"tty\nerr\n"  # a PTY merges stderr
        await a.close()

    asyncio.run(main())


def test_a_stream_keeps_its_last_bytes_and_says_what_was_lost() -> None:
    async def main() -> None:
        stream = Stream()
        stream.add(b"x" * MAX_KEPT)
        stream.add(b"tail")
        got = await stream.read(0, 0)
        assert got["lost"] == 4 and got["offset"] == 4 + min(MAX_KEPT, 4 << 20)

    asyncio.run(main())


def test_files(tmp_path: Path) -> None:
    async def main() -> None:
        target = str(tmp_path / "a.txt")
        await sandbox_files.operate({"op": "write", "path": target, "data": base64.b64encode(b"abc").decode()})
        await sandbox_files.operate({"op": "write", "path": target, "data": base64.b64encode(b"def").decode(),
                                     "append": True})
        got = await sandbox_files.operate({"op": "read", "path": target, "offset": 1, "length": 4})
        assert base64.b64decode(got["data"]) == b"bcde" and got["size"] == 6
        info = await sandbox_files.operate({"op": "stat", "path": target})
        assert info["type"] == "file" and info["size"] == 6 and info["name"] == "a.txt"
        await sandbox_files.operate({"op": "mkdir", "path": str(tmp_path / "d" / "e"), "parents": True})
        listed = await sandbox_files.operate({"op": "list", "path": str(tmp_path)})
        assert [e["name"] for e in listed["entries"]] == ["a.txt", "d"]
        watcher = asyncio.create_task(sandbox_files.operate({"op": "watch", "path": str(tmp_path), "timeout": 5}))
        await asyncio.sleep(0.2)
        (tmp_path / "new.txt").write_text("x")
        assert {"type": "Create", "paths": [str(tmp_path / "new.txt")]} in (await watcher)["events"]
        await sandbox_files.operate({"op": "remove", "path": str(tmp_path / "d"), "recursive": True})
        assert not os.path.exists(tmp_path / "d")
        for bad in ({"op": "read", "path": "relative"}, {"op": "nope", "path": "/"}):
            try:
                await sandbox_files.operate(bad)
            except ValueError:
                continue
            raise AssertionError(bad)

    asyncio.run(main())


def test_a_command_that_is_not_there_exits_127() -> None:
    async def main() -> None:
        a = agent()
        answer = await a.handle("/exec", {"argv": ["no-such-command-sampan"]})
        pid = answer["process"]
        assert (await a.io({"process": pid, "op": "wait", "timeout": 1}))["returncode"] == 127
        assert b"no-such-command-sampan" in await read_all(a, pid, 2)
        assert await read_all(a, pid) == b""
        await a.io({"process": pid, "op": "kill"})  # nothing to kill: no error
        await a.close()

    asyncio.run(main())
