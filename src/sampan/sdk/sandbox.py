"""`modal.Sandbox`: a container running any command, from Python (Modal 1.6's surface, with 1.5's file API).

`Sandbox.create(*cmd, app=, image=, ...)` asks the server (server/sandboxes.py) for a container of that
image running `cmd` under its agent; everything else goes through `/v1/sandboxes/{id}/...`: `exec`
processes (sdk/sandbox_io.py), files (`sb.filesystem`, and the older `sb.open/ls/mkdir/rm/watch`),
tunnels to its ports, tags, `wait/poll/terminate`. Keywords with no meaning on a self-hosted machine are
accepted and said once; network allowlists are refused rather than silently not enforced.
"""

from __future__ import annotations

import base64
import os
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._tunnel import Tunnel
from ..api import default_client, path
from ..exception import (
    ClientClosed,
    InvalidError,
    SandboxTerminatedError,
    SandboxTimeoutError,
)
from ..exception import TimeoutError as ModalTimeoutError
from ..file_io import FileIO, FileWatchEvent, FileWatchEventType
from ..localfiles import image_files
from ..resources import Resources
from ..stream_type import StreamType
from .image import Image, Step
from .refs import secret_refs, volumes_json
from .sandbox_fs import SandboxFilesystem, fs_error
from .sandbox_io import ContainerProcess, StreamReader, StreamWriter, static_twin, twin

MAX_LOCAL_FILES = 128 << 20  # bytes of an image's `add_local_*` files sent with a Sandbox.create
ENV_KEY = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
CREATE_TIMEOUT_S = 1800.0  # an image may be built first
WAIT_STEP_S = 45.0
NO_EFFECT = ("cloud", "region", "runtime", "custom_domain", "proxy", "include_oidc_identity_token", "verbose",
             "experimental_options", "_experimental_enable_snapshot", "_experimental_outbound_policy", "gpu")
_said: set[str] = set()


@dataclass(frozen=True)
class Probe:
    """A readiness probe (`Sandbox.create(readiness_probe=...)`, `sb.wait_until_ready()`)."""

    tcp_port: int | None = None
    exec_argv: tuple[str, ...] | None = None
    interval_ms: int = 100

    def __post_init__(self) -> None:
        if (self.tcp_port is None) == (self.exec_argv is None):
            raise InvalidError("Probe must be created with Probe.with_tcp(...) or Probe.with_exec(...)")

    @staticmethod
    def _interval(method: str, interval_ms: Any) -> int:
        if not isinstance(interval_ms, int) or isinstance(interval_ms, bool):
            raise InvalidError(f"Probe.{method}() expects an integer `interval_ms`")
        if interval_ms <= 0:
            raise InvalidError(f"Probe.{method}() expects `interval_ms` > 0, got {interval_ms}")
        return interval_ms

    @classmethod
    def with_tcp(cls, port: int, *, interval_ms: int = 100) -> Probe:
        if not isinstance(port, int) or isinstance(port, bool):
            raise InvalidError("Probe.with_tcp() expects an integer `port`")
        if not 1 <= port <= 65535:
            raise InvalidError(f"Probe.with_tcp() expects `port` in [1, 65535], got {port}")
        return cls(tcp_port=port, interval_ms=cls._interval("with_tcp", interval_ms))

    @classmethod
    def with_exec(cls, *argv: str, interval_ms: int = 100) -> Probe:
        if not argv:
            raise InvalidError("Probe.with_exec() requires at least one argument")
        if not all(isinstance(a, str) for a in argv):
            raise InvalidError("Probe.with_exec() expects all arguments to be strings")
        return cls(exec_argv=tuple(argv), interval_ms=cls._interval("with_exec", interval_ms))


class SandboxSnapshot:
    """Modal's memory snapshots of a Sandbox: not built in Sampan (no checkpointing of a process tree)."""

    @staticmethod
    def from_id(snapshot_id: str, client: Any = None) -> SandboxSnapshot:
        raise InvalidError("Sandbox memory snapshots are not built in Sampan.")


def _say_once(key: str, message: str) -> None:
    if key not in _said:
        _said.add(key)
        warnings.warn(message, stacklevel=3)


def _check_env(env: dict[str, Any] | None) -> dict[str, str]:
    for key in env or {}:
        if not key:
            raise InvalidError("Secret key name cannot be empty")
        if not ENV_KEY.match(key):
            raise InvalidError(f"Secret key name {key!r} is invalid for environment variables. Only letters, "
                               "numbers, and underscores are allowed.")
    return {k: v for k, v in (env or {}).items() if v is not None}


def _image_json(image: Image | None) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The image's recipe, and the local files its `add_local_*` steps need (path in the bundle -> base64),
    sent along as a deploy sends its bundle."""
    steps = (image or Image.debian_slim()).to_json()
    files: dict[str, str] = {}
    size = 0
    for target, local in image_files(steps).items():
        data = Path(local).read_bytes()
        size += len(data)
        if size > MAX_LOCAL_FILES:
            raise InvalidError(f"The image's local files are more than {MAX_LOCAL_FILES >> 20} MiB: use a Volume, "
                               "or `add_local_dir(..., copy=True)` for a layer built once.")
        files[target] = base64.b64encode(data).decode()
    return steps, files


class Sandbox:
    """A running (or finished) sandbox; `object_id` is its `sb-...` id."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state
        self.object_id: str = state["sandbox_id"]
        self._detached = False
        self._main = ContainerProcess(self.object_id, "main", text=True)
        self.filesystem = SandboxFilesystem(self)

    def __repr__(self) -> str:
        return f"Sandbox({self.object_id!r})"

    # -- create and find ----------------------------------------------------------------------------
    @static_twin
    def create(*args: str, app: Any = None, name: str | None = None, tags: dict[str, str] | None = None,
               image: Image | None = None, env: dict[str, str | None] | None = None,
               secrets: Sequence[Any] | None = None, network_file_systems: dict[str, Any] | None = None,
               timeout: int | None = 300, idle_timeout: int | None = None, workdir: str | None = None,
               gpu: str | None = None, cloud: str | None = None,
               region: str | Sequence[str] | None = None, cpu: Any = None, memory: Any = None,
               runtime: str | None = None, block_network: bool = False,
               outbound_cidr_allowlist: Sequence[str] | None = None,
               outbound_domain_allowlist: Sequence[str] | None = None, _experimental_outbound_policy: Any = None,
               inbound_cidr_allowlist: Sequence[str] | None = None, volumes: dict[str, Any] | None = None,
               pty: bool = False, encrypted_ports: Sequence[int] = (), h2_ports: Sequence[int] = (),
               unencrypted_ports: Sequence[int] = (), custom_domain: str | None = None, proxy: Any = None,
               include_oidc_identity_token: bool = False, readiness_probe: Probe | None = None,
               verbose: bool = False, experimental_options: dict[str, Any] | None = None,
               _experimental_enable_snapshot: bool = False, _experimental_persistent: bool = False,
               client: Any = None, environment_name: str | None = None, pty_info: Any = None,
               cidr_allowlist: Sequence[str] | None = None) -> Sandbox:
        """Start a sandbox running `args` (none: it lives until `timeout` or `terminate()`)."""
        if not all(isinstance(a, str) for a in args):
            raise InvalidError("All entrypoint arguments must be strings")
        if timeout is None and not _experimental_persistent:
            raise InvalidError("`timeout=None` is only supported for experimental persistent Sandboxes.")
        if workdir is not None and not workdir.startswith("/"):
            raise InvalidError(f"workdir must be an absolute path, got: {workdir}")
        if runtime is not None and runtime not in ("gvisor", "vm"):
            raise InvalidError(f"runtime must be one of ['gvisor', 'vm'], got {runtime!r}")
        if isinstance(gpu, list):
            raise InvalidError("Sandboxes do not support configuring a list of GPUs. Specify a single GPU "
                               "configuration, e.g. gpu='a10g'")
        ports = [*encrypted_ports, *h2_ports, *unencrypted_ports]
        if block_network:
            if ports:
                raise InvalidError("Cannot specify open ports when `block_network` is enabled")
            for label, value in (("outbound_cidr_allowlist", outbound_cidr_allowlist or cidr_allowlist),
                                 ("outbound_domain_allowlist", outbound_domain_allowlist),
                                 ("inbound_cidr_allowlist", inbound_cidr_allowlist)):
                if value:
                    raise InvalidError(f"`{label}` cannot be used when `block_network` is enabled")
        if cidr_allowlist is not None and outbound_cidr_allowlist is not None:
            raise InvalidError("Cannot specify both `cidr_allowlist` and `outbound_cidr_allowlist`.")
        for label, value in (("outbound_cidr_allowlist", outbound_cidr_allowlist or cidr_allowlist),
                             ("outbound_domain_allowlist", outbound_domain_allowlist),
                             ("inbound_cidr_allowlist", inbound_cidr_allowlist)):
            if value:  # a restriction Sampan could not enforce must not pass for one
                raise InvalidError(f"`{label}` is not enforced by Sampan yet: use `block_network=True`, or no "
                                   "restriction.")
        given = {"cloud": cloud, "region": region, "runtime": runtime, "custom_domain": custom_domain, "proxy": proxy,
                 "include_oidc_identity_token": include_oidc_identity_token, "verbose": verbose,
                 "experimental_options": experimental_options, "gpu": gpu,
                 "_experimental_enable_snapshot": _experimental_enable_snapshot,
                 "_experimental_outbound_policy": _experimental_outbound_policy}
        for key in NO_EFFECT:
            if given.get(key):
                _say_once(key, f"Sandbox.create(`{key}=`) is accepted but has no effect here.")
        if pty_info is not None:
            pty = True
        steps, files = _image_json(image)
        body: dict[str, Any] = {
            "cmd": list(args), "name": name, "tags": dict(tags or {}), "image": steps, "files": files,
            "image_env": dict((image or Image.debian_slim()).env_vars()),
            "env": _check_env(env), "secrets": list(secret_refs(list(secrets or []), None)),
            "volumes": list(volumes_json({**(volumes or {}), **(network_file_systems or {})})),
            "timeout": timeout if timeout is not None else 86400, "idle_timeout": idle_timeout, "workdir": workdir,
            "resources": Resources.parse(cpu, memory, None).to_json(), "block_network": bool(block_network),
            "ports": [int(p) for p in ports], "pty": bool(pty),
            "probe": ({"tcp_port": readiness_probe.tcp_port, "exec_argv": list(readiness_probe.exec_argv or ()) or None}
                      if readiness_probe is not None else None),
        }
        body.update(_app_ref(app))
        return Sandbox(default_client().call("POST", "/v1/sandboxes", body, timeout=CREATE_TIMEOUT_S))

    @static_twin
    def from_id(sandbox_id: str, client: Any = None) -> Sandbox:
        return Sandbox(default_client().get(path("v1", "sandboxes", sandbox_id)))

    @static_twin
    def from_name(app_name: str, name: str, *, environment_name: str | None = None, include_terminated: bool = False,
                  client: Any = None) -> Sandbox:
        query = {"include_terminated": "1"} if include_terminated else None
        return Sandbox(default_client().get(path("v1", "sandboxes", "by-name", app_name, name, query=query)))

    @static_twin
    def list(*, app_id: str | None = None, tags: dict[str, str] | None = None, client: Any = None) -> Iterator[Sandbox]:
        """Running sandboxes, newest first: of an app (its name), with all the given tags."""
        query = {f"tag.{k}": v for k, v in (tags or {}).items()}
        if app_id:
            query["app"] = app_id
        return iter([Sandbox(s) for s in default_client().get(path("v1", "sandboxes", query=query or None))])

    # -- state ------------------------------------------------------------------------------------------
    def _call(self, verb: str, body: dict[str, Any] | None = None, timeout: float = 90.0) -> Any:
        if self._detached:
            raise ClientClosed("Unable to perform operation on a detached sandbox")
        return default_client().call("POST", path("v1", "sandboxes", self.object_id, verb), body or {},
                                     timeout=timeout)

    def _refresh(self, wait: float = 0.0) -> dict[str, Any]:
        self._state = self._call("wait", {"timeout": wait}, wait + 60)
        return self._state

    @property
    def returncode(self) -> int | None:
        """None while it runs; 124 after its timeout, 137 when terminated, else the entrypoint's exit code."""
        return self.poll()

    @twin
    def poll(self) -> int | None:
        return self._refresh(0)["returncode"]

    @twin
    def wait(self, raise_on_termination: bool = True) -> None:
        """Block until the sandbox ends. Its timeout raises SandboxTimeoutError; a termination (terminate(),
        its idle timeout) raises SandboxTerminatedError unless `raise_on_termination=False`."""
        while self._refresh(WAIT_STEP_S)["returncode"] is None:
            pass
        how = self._state.get("how")
        if how == "timeout":
            raise SandboxTimeoutError()
        if how == "terminated" and raise_on_termination:
            raise SandboxTerminatedError()

    @twin
    def terminate(self, *, wait: bool = False) -> int | None:
        self._state = self._call("terminate")
        return self._state["returncode"] if wait else None

    @twin
    def wait_until_ready(self, *, timeout: int = 300) -> None:
        if timeout <= 0:
            raise InvalidError(f"`timeout` must be positive, got: {timeout}")
        deadline = time.monotonic() + timeout
        while not self._call("ready")["ready"]:
            if time.monotonic() > deadline:
                raise ModalTimeoutError(f"Sandbox {self.object_id} was not ready within {timeout} s.")
            time.sleep(0.1)

    def detach(self) -> None:
        self._detached = True

    @twin
    def set_tags(self, tags: dict[str, str], *, client: Any = None) -> None:
        self._state = self._call("tags", {"tags": dict(tags)})

    @twin
    def get_tags(self) -> dict[str, str]:
        return dict(default_client().get(path("v1", "sandboxes", self.object_id))["tags"])

    @twin
    def tunnels(self, timeout: int = 50) -> dict[int, Tunnel]:
        """Each exposed port's tunnel: a URL on the server's machine that reaches the port in the sandbox."""
        found = default_client().get(path("v1", "sandboxes", self.object_id))["tunnels"]
        return {int(port): Tunnel(t["host"], t["port"], t["host"], t["port"]) for port, t in found.items()}

    @twin
    def reload_volumes(self, *, timeout: int = 55) -> None:
        """Volumes are one shared directory here: a sandbox sees others' writes at once."""

    def get_dashboard_url(self) -> str:
        base = os.environ.get("SAMPAN_SERVER_URL") or ""
        return f"{base}/dashboard/containers/{self.object_id}" if base else ""

    @twin
    def snapshot_filesystem(self, timeout: int = 55, *, ttl: int | None = 2592000) -> Image:
        """An Image of the sandbox's files as they are now (its Volumes and /tmp left out), usable as
        `image=` of another Sandbox or a Function. Kept on the server for `ttl` seconds (None: until
        removed by hand); expired snapshots go when the workspace takes its next one."""
        if ttl is not None and ttl <= 0:
            raise InvalidError("ttl must be positive, or None to disable expiry")
        answer = self._call("snapshot", {"timeout": timeout, "ttl": ttl}, timeout + 120)
        return Image(tuple(Step(step["op"], tuple(sorted(step["args"].items()))) for step in answer["image"]))

    # -- the entrypoint's streams, and exec -----------------------------------------------------------
    @property
    def stdout(self) -> StreamReader[str]:
        return self._main.stdout

    @property
    def stderr(self) -> StreamReader[str]:
        return self._main.stderr

    @property
    def stdin(self) -> StreamWriter:
        return self._main.stdin

    @twin
    def exec(self, *args: str, stdout: StreamType = StreamType.PIPE, stderr: StreamType = StreamType.PIPE,
             timeout: int | None = None, workdir: str | None = None, env: dict[str, str | None] | None = None,
             secrets: Sequence[Any] | None = None, text: bool = True, bufsize: int = -1, pty: bool = False,
             _pty_info: Any = None, pty_info: Any = None) -> ContainerProcess[Any]:
        """Run a command in the sandbox; its process (stdin, stdout, stderr, wait, poll)."""
        if not all(isinstance(a, str) for a in args) or not args:
            raise InvalidError("All arguments to exec must be strings")
        if workdir is not None and not workdir.startswith("/"):
            raise InvalidError(f"workdir must be an absolute path, got: {workdir}")
        if bufsize == 1 and not text:
            raise ValueError("line-buffering is only supported when text=True")
        answer = self._call("exec", {"argv": list(args), "workdir": workdir, "env": _check_env(env),
                                     "secrets": list(secret_refs(list(secrets or []), None)),
                                     "pty": bool(pty or _pty_info or pty_info), "timeout": timeout})
        return ContainerProcess(self.object_id, answer["process"], text, bufsize == 1, stdout, stderr)

    # -- files: Modal 1.5's handle API, kept for older scripts --------------------------------------
    def _fs(self, op: str, **fields: Any) -> Any:
        answer = self._call("fs", {"op": op, **fields}, float(fields.get("timeout") or 0) + 120)
        if "error" in answer:
            raise fs_error(answer)
        return answer

    def open(self, path: str, mode: str = "r") -> FileIO:
        return FileIO(self, path, mode)

    def ls(self, path: str) -> list[str]:
        return [e["name"] for e in self._fs("list", path=path)["entries"]]

    def mkdir(self, path: str, parents: bool = False) -> None:
        self._fs("mkdir", path=path, parents=parents)

    def rm(self, path: str, recursive: bool = False) -> None:
        self._fs("remove", path=path, recursive=recursive)

    def watch(self, path: str, filter: list[FileWatchEventType] | None = None,  # noqa: A002 - Modal's name
              recursive: bool | None = None, timeout: int | None = None) -> Iterator[FileWatchEvent]:
        return self.filesystem.watch(path, filter=filter, recursive=bool(recursive), timeout=timeout)


def _app_ref(app: Any) -> dict[str, Any]:
    """What names the sandbox's app: an App (by name), or, inside a container, its own app."""
    if app is not None:
        name = getattr(app, "name", None) or (app if isinstance(app, str) else None)
        if not name:
            raise InvalidError("The App given to Sandbox.create has no name: give it one, or use "
                               "`modal.App.lookup('name', create_if_missing=True)`.")
        return {"app": name}
    if os.environ.get("SAMPAN_APP_KEY"):
        return {"app_key": os.environ["SAMPAN_APP_KEY"]}
    return {}
