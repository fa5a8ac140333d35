"""Routes of `modal.Sandbox` (server/sandboxes.py): create, look up, list, wait, terminate, tags, exec and
process I/O, files, tunnels. Every route finds the sandbox in the caller's workspace first: another
workspace's sandbox is as good as none (404), and only the server reaches a sandbox's agent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from ...exception import InvalidError
from ...manifest import FunctionEntry, compose_env
from ..images.rootfs import snapshot_path
from ..sandboxes import AgentError
from .containers import container_pid, run_in_container
from .router import Request
from .wire import HTTPError

if TYPE_CHECKING:
    from .server import ControlServer

TAG = re.compile(r"[A-Za-z0-9._-]{1,63}\Z")
MAX_WAIT_S = 50.0  # one long poll; clients poll again


def _app_key(control: ControlServer, req: Request, body: dict[str, Any]) -> tuple[str, str]:
    """The app a sandbox belongs to: a container's own app (`app_key`, checked to be of the caller's
    workspace), else the caller's app of that name (deployed or not: sandboxes group under it)."""
    ws = req.workspace
    key = body.get("app_key")
    if key:
        if not str(key).startswith(f"{ws.name}/"):
            raise InvalidError("That app is not of your workspace.")
        return str(key), str(key).split("/", 1)[1].removeprefix("serve:")
    name = body.get("app")
    if not name or not isinstance(name, str):
        raise InvalidError("Sandboxes require an App when created outside of a Modal container.\n\n"
                           "Run an ephemeral App (`with app.run(): ...`), or reference a deployed App using "
                           "`App.lookup`:\n\n```\napp = modal.App.lookup('sandbox-app', create_if_missing=True)\n"
                           "sb = modal.Sandbox.create(..., app=app)\n```")
    for candidate in (control.app_key(ws, name), control.ephemeral_key(ws, name)):
        if candidate in control.server.apps:
            return candidate, name
    return control.app_key(ws, name), name


def check_tags(tags: Any) -> dict[str, str]:
    if not isinstance(tags, dict):
        raise InvalidError("tags must be a dict of strings")
    for key, value in tags.items():
        if not isinstance(key, str) or not TAG.match(key):
            raise InvalidError(f"Invalid tag key: {key!r}.\n\nTags may contain only alphanumeric characters, dashes, "
                               "periods, or underscores, and must be 63 characters or less.")
        if not isinstance(value, str) or not TAG.match(value):
            raise InvalidError(f"Invalid tag value: {value!r}.\n\nTags may contain only alphanumeric characters, "
                               "dashes, periods, or underscores, and must be 63 characters or less.")
    return dict(tags)


def _state(control: ControlServer, sandbox: Any) -> dict[str, Any]:
    return {**sandbox.describe(), "app": sandbox.app_key.split("/", 1)[-1],
            "tunnels": {str(port): {"url": t.url, "host": t.host, "port": t.port}
                        for port, t in sandbox.tunnels.items()}}


async def create(control: ControlServer, req: Request) -> Any:
    body = dict(req.json)
    key, name = _app_key(control, req, body)
    body["tags"] = check_tags(body.get("tags") or {})
    sandbox = await control.server.sandboxes.create(req.workspace.name, key, name, body)
    return _state(control, sandbox)


async def get(control: ControlServer, req: Request) -> Any:
    return _state(control, control.server.sandboxes.get(req.workspace.name, req.params["id"]))


async def listed(control: ControlServer, req: Request) -> Any:
    app = req.query.get("app")
    key = _app_key(control, req, {"app": app})[0] if app else None
    tags = {k[4:]: v for k, v in req.query.items() if k.startswith("tag.")}
    return [_state(control, s) for s in control.server.sandboxes.listed(req.workspace.name, key, tags)]


async def by_name(control: ControlServer, req: Request) -> Any:
    key, _ = _app_key(control, req, {"app": req.params["app"]})
    found = control.server.sandboxes.by_name(req.workspace.name, key, req.params["name"],
                                             req.query.get("include_terminated") in ("1", "true"))
    return _state(control, found)


async def wait(control: ControlServer, req: Request) -> Any:
    sandbox = control.server.sandboxes.get(req.workspace.name, req.params["id"])
    timeout = min(float(req.json.get("timeout") or 0), MAX_WAIT_S)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(sandbox.done.wait(), timeout)
    return _state(control, sandbox)


async def terminate(control: ControlServer, req: Request) -> Any:
    sandbox = control.server.sandboxes.get(req.workspace.name, req.params["id"])
    await control.server.sandboxes.terminate(sandbox)
    return _state(control, sandbox)


async def set_tags(control: ControlServer, req: Request) -> Any:
    sandbox = control.server.sandboxes.get(req.workspace.name, req.params["id"])
    sandbox.tags = check_tags(req.json.get("tags") or {})
    return _state(control, sandbox)


async def _agent(control: ControlServer, req: Request, path: str, body: dict[str, Any], timeout: float) -> Any:
    sandboxes = control.server.sandboxes
    sandbox = sandboxes.running(req.workspace.name, req.params["id"])
    try:
        return await sandboxes.call(sandbox, path, body, timeout)
    except AgentError as exc:
        if path == "/fs":  # the SDK raises the file error the agent met (FileNotFoundError, ...)
            return {"error": str(exc), "kind": exc.kind}
        raise HTTPError(404 if exc.status == 404 else 400, str(exc)) from None
    except (OSError, TimeoutError) as exc:
        if sandbox.returncode is not None or not sandbox.container.alive:
            raise InvalidError(f"Sandbox {sandbox.id} has finished.") from None
        raise HTTPError(503, f"the sandbox did not answer: {exc}") from None


async def exec_(control: ControlServer, req: Request) -> Any:
    body = req.json
    argv = body.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise InvalidError("All arguments to exec must be strings")
    workdir = body.get("workdir")
    if workdir is not None and not str(workdir).startswith("/"):
        raise InvalidError(f"workdir must be an absolute path, got: {workdir}")
    env = dict(body.get("env") or {})
    if body.get("secrets"):
        entry = FunctionEntry(tag="exec", kind="sandbox", web={}, secrets=tuple(body["secrets"]))
        env = {**compose_env(entry, control.server.secret_resolver(req.workspace.name)), **env}
    return await _agent(control, req, "/exec", {"argv": argv, "workdir": workdir, "env": env,
                                                "pty": bool(body.get("pty")), "timeout": body.get("timeout")}, 60)


async def io(control: ControlServer, req: Request) -> Any:
    body = dict(req.json)
    sandbox = control.server.sandboxes.get(req.workspace.name, req.params["id"])
    if sandbox.returncode is not None and (body.get("process") or "main") == "main":
        if body.get("op") == "read":  # a finished sandbox's entrypoint output, kept by the server
            return control.server.sandboxes.read_kept(sandbox, body)
        if body.get("op") == "wait":
            return {"returncode": sandbox.returncode}
    wait_s = float(body.get("wait") or body.get("timeout") or 0)
    if wait_s > MAX_WAIT_S:
        body["wait" if "wait" in body else "timeout"] = MAX_WAIT_S
    return await _agent(control, req, "/io", body, min(wait_s, MAX_WAIT_S) + 30)


async def fs(control: ControlServer, req: Request) -> Any:
    body = dict(req.json)
    return await _agent(control, req, "/fs", body, min(float(body.get("timeout") or 0), 55.0) + 60)


async def ready(control: ControlServer, req: Request) -> Any:
    return await _agent(control, req, "/ready", {}, 30)


def _expire(directory: Any) -> None:
    """Snapshots past their `ttl` go (looked at whenever the workspace takes another)."""
    now = time.time()
    for meta in directory.glob("im-*.json"):
        with contextlib.suppress(OSError, ValueError):
            expires = json.loads(meta.read_text()).get("expires")
            if expires is not None and expires < now:
                meta.with_suffix(".tar").unlink(missing_ok=True)
                meta.unlink()


SNAPSHOT_EXCLUDE = ("./proc", "./sys", "./dev", "./run", "./tmp", "./__sampan", "./.sampan*")


async def snapshot(control: ControlServer, req: Request) -> Any:
    """`sb.snapshot_filesystem()`: the sandbox's files, taken with `tar` inside its own namespaces (its root,
    its view; pseudo-filesystems, its Volumes and Sampan's runtime left out) into the workspace's snapshot
    directory; the answer is the recipe of an image made from it (rootfs.py `op_sandbox_snapshot`)."""
    sandboxes, rootfs = control.server.sandboxes, control.server.rootfs
    sandbox = sandboxes.running(req.workspace.name, req.params["id"])
    if rootfs is None:
        raise InvalidError("Sandbox snapshots need real images (a root server with the container sandbox and "
                           "Debian's mmdebstrap).")
    pid = container_pid(sandbox.container)
    if pid is None:
        raise InvalidError("Sandbox snapshots need the container sandbox.")
    timeout = min(max(float(req.json.get("timeout") or 55), 1.0), 3600.0)
    ttl = req.json.get("ttl")
    image = sandbox.endpoint.image
    snapshot_id = "im-" + secrets.token_hex(16)
    target = snapshot_path(rootfs.cache, req.workspace.name, snapshot_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    _expire(target.parent)
    mounts = [f".{path}" for path, _ in sandbox.endpoint.volume_mounts]
    argv = ["tar", "--numeric-owner", "-cf", "-", "-C", "/",
            *(f"--exclude={path}" for path in (*SNAPSHOT_EXCLUDE, *mounts)), "."]
    sandbox.busy += 1
    try:
        with open(target, "wb") as out:
            code, _, err = await run_in_container(pid, argv, timeout, "the snapshot", stdout=out)
        if code not in (0, 1):  # 1: a file changed while it was read, which a live sandbox may do
            raise InvalidError(f"the snapshot failed: {err.decode(errors='replace').strip()[-500:]}")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        sandbox.busy -= 1
    target.with_suffix(".json").write_text(json.dumps({"expires": time.time() + float(ttl) if ttl else None}))
    args = {"id": snapshot_id, "workspace": req.workspace.name,
            "env": dict(image.env) if image is not None else {}, "workdir": image.workdir if image else None}
    return {"snapshot_id": snapshot_id, "image": [{"op": "sandbox_snapshot", "args": args}],
            "size": target.stat().st_size}
