"""Routes of containers: list, logs (also an app's), stop, and exec inside a sandboxed one."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...exception import InvalidError
from .router import WRITTEN, Request
from .wire import LAST_CHUNK, NDJSON, TEXT, HTTPError, Writer, chunk, stream_head

if TYPE_CHECKING:
    from .server import ControlServer

EXEC_OUTPUT_LIMIT = 16 << 20  # bytes of each stream an exec answers with (the last ones)


def container_pid(container: Any) -> int | None:
    """The host pid of a sandboxed container's PID 1: the only child of its supervisor."""
    isolation = getattr(container, "isolation", None)
    proc = getattr(container, "proc", None)
    if isolation is None or not isolation.enabled or proc is None or proc.returncode is not None:
        return None
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


async def list_containers(control: ControlServer, req: Request) -> Any:
    ws = req.workspace
    rows = [c for c in control.server.describe_containers() if c["workspace"] == ws.name]
    for row in rows:  # the host pid of a sandboxed container's PID 1: what `sampan shell` enters
        found = control.server.find_container(ws.name, row["id"])
        row["pid"] = container_pid(found[1].backend) if found is not None else None
    return rows


async def logs(control: ControlServer, req: Request) -> Any:
    cid, logs = req.params["id"], control.server.logs
    # Running or stopped, a container's logs are its workspace's alone.
    if not logs.known(cid) or logs.workspace_of(cid) != req.workspace.name:
        raise HTTPError(404, f"no container {cid}")
    await stream_logs(logs, [cid], req.query, req.writer)
    return WRITTEN


async def stop(control: ControlServer, req: Request) -> Any:
    cid = req.params["id"]
    if not control.server.stop_container(req.workspace.name, cid, bool(req.json.get("graceful"))):
        raise HTTPError(404, f"no container {cid}")
    return {"stopped": cid}


async def exec_in(control: ControlServer, req: Request) -> Any:
    """A command in the container's own namespaces (nsenter into its PID 1: its root, its uid)."""
    cid, body = req.params["id"], req.json
    found = control.server.find_container(req.workspace.name, cid)
    if found is None:
        raise HTTPError(404, f"no container {cid}")
    argv = body.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv) \
            or argv[0].startswith("-"):
        raise InvalidError("exec needs `argv`, a non-empty list of strings naming a program.")
    timeout = float(body.get("timeout") or 60)
    if not 0 < timeout <= 3600:
        raise InvalidError("exec `timeout` must be between 0 and 3600 seconds.")
    pid = container_pid(found[1].backend)
    if pid is None:
        raise InvalidError("`container exec` needs the container sandbox (this container runs as a plain "
                           "process, or has exited).")
    code, out, err = await run_in_container(pid, argv, timeout, "the command")
    return {"code": code, "stdout": base64.b64encode(out[-EXEC_OUTPUT_LIMIT:]).decode(),
            "stderr": base64.b64encode(err[-EXEC_OUTPUT_LIMIT:]).decode()}


async def run_in_container(pid: int, argv: list[str], timeout: float, what: str,
                           stdout: Any = asyncio.subprocess.PIPE) -> tuple[int, bytes, bytes]:
    """`argv` in the container whose PID 1 is `pid` (nsenter into all its namespaces: its root, its uid);
    (exit code, stdout unless given elsewhere, stderr). Past `timeout`, killed, and a 504."""
    proc = await asyncio.create_subprocess_exec(
        "nsenter", "--target", str(pid), "--all", "--root", "--wd", *argv,
        stdin=asyncio.subprocess.DEVNULL, stdout=stdout, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        await proc.wait()
        raise HTTPError(504, f"{what} ran longer than {timeout:g} s") from None
    return proc.returncode or 0, out or b"", err or b""


async def stream_logs(logs: Any, container_ids: list[str], query: dict[str, str], writer: Writer,
                      app_key: str | None = None) -> None:
    """Log lines of these containers, oldest first, filtered as `sampan app logs` asks (n, since, until,
    search, source, function, function_call); with follow=1, then every new line until the app stops.
    format=json: NDJSON records instead of text."""
    n = int(query["n"]) if query.get("n", "").isdigit() else None
    since = float(query["since"]) if query.get("since") else None
    until = float(query["until"]) if query.get("until") else None
    search = query.get("search") or None
    source = query.get("source") or None
    function = query.get("function") or None
    call_id = query.get("function_call") or None
    follow = query.get("follow") in ("1", "true")
    as_json = query.get("format") == "json"  # the SDK's `.logs` readers (sdk/logs.py)
    writer.write(stream_head(NDJSON if as_json else TEXT))

    def wanted(ln: Any) -> bool:
        return ((since is None or ln.time >= since) and (until is None or ln.time <= until)
                and (search is None or search in ln.text) and (source is None or ln.stream == source)
                and (function is None or ln.tag == function) and (call_id is None or ln.call_id == call_id))

    def encode(ln: Any) -> bytes:
        if as_json:
            return json.dumps({"time": ln.time, "stream": ln.stream, "text": ln.text, "container": ln.container_id,
                               "function": ln.tag, "function_call": ln.call_id}).encode() + b"\n"
        return (ln.display() + "\n").encode()

    lines = sorted((line for cid in container_ids for line in logs.tail(cid)), key=lambda ln: ln.time)
    lines = [ln for ln in lines if wanted(ln)]
    for line in lines[-n:] if n else lines:
        writer.write(chunk(encode(line)))
    await writer.drain()
    if follow:
        queue = logs.follow_all(app_key, set(container_ids))
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if not wanted(item):
                    continue
                writer.write(chunk(encode(item)))
                await writer.drain()
        finally:
            logs.unfollow_all(queue)
    writer.write(LAST_CHUNK)
