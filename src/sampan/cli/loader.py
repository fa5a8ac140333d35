"""A warm loader for `sampan serve`'s reloads: one process that has imported Sampan's importer once, and
forks a child for each load of the user's script.

A fresh interpreter per load (what `serve` did) spends ~150-200 ms starting Python and importing Sampan
before it reads a line of the user's code. The loader pays that once; each child imports the user's
code from scratch (the parent never does, so nothing of one version survives into the next) and exits.
The protocol is one JSON line per load on the loader's stdin (`{"args": [...]}`, the importer's own
arguments) and one per answer on its stdout (`{"code": N, "stderr": "..."}`). If the loader is gone
or cannot be started, `serve` falls back to a fresh interpreter: the loader only ever makes it faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from typing import Any

from .importer import main as importer_main


class WarmLoader:
    """The serving side: starts the loader process, sends it loads one at a time."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.lock = asyncio.Lock()

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sampan.cli.loader", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)

    async def load(self, args: list[str]) -> tuple[int, str] | None:
        """The importer's exit code and stderr for these arguments; None when the loader is unusable."""
        async with self.lock:
            proc = self.proc
            if proc is None or proc.returncode is not None or proc.stdin is None or proc.stdout is None:
                return None
            try:
                proc.stdin.write(json.dumps({"args": args}).encode() + b"\n")
                await proc.stdin.drain()
                line = await proc.stdout.readline()
                answer = json.loads(line)
            except (OSError, ValueError, ConnectionError):
                return None
            return int(answer["code"]), str(answer["stderr"])

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


def _child(args: list[str], stderr_path: str) -> None:
    """In the forked child: the importer, its stderr into a file the parent reads back."""
    fd = os.open(stderr_path, os.O_WRONLY | os.O_TRUNC)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    code = 1
    try:
        code = importer_main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - a load failure is the user's, reported as the importer would
        import traceback

        traceback.print_exc()
    finally:
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)


def main() -> None:
    """The loader process: the importer is imported (at the top), then a fork per request until stdin closes."""
    out = sys.stdout
    for line in sys.stdin:
        request: dict[str, Any] = json.loads(line)
        with tempfile.NamedTemporaryFile(prefix="sampan-load-", suffix=".err", delete=False) as err:
            stderr_path = err.name
        try:
            pid = os.fork()
            if pid == 0:
                sys.stdin.close()
                _child(list(request["args"]), stderr_path)
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            with open(stderr_path, errors="replace") as fh:
                text = fh.read()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(stderr_path)
        out.write(json.dumps({"code": code, "stderr": text}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
