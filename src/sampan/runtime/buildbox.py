"""One image build step, in a sandbox: `python -m sampan.runtime.buildbox`, started by the image builder
(server/images/rootfs.py) with its job in `SAMPAN_BUILDBOX`.

A build step runs as root of the image, as in a Dockerfile `RUN`, but root of a user namespace: host
uids `uid .. uid+count-1` (never host root), so `apt-get` can hand files to `_apt` and the layer keeps
those owners. Its root is an overlay of the layers below (read-only) whose writes land in the new
layer's directory: the layer is exactly what the step changed, whiteouts included. PID, IPC, UTS and
(with `net`) network namespaces of its own; the builder gives that network a way out with slirp4netns,
with the host's loopback closed, so a step reaches package indexes but not the server.

With `chroot: false` the step runs the host's own tools (tar, umoci) on the new layer's directory, as
the namespace's root: that is how a base root filesystem or a registry image is unpacked with its
owners shifted into the container range.

Job: {"uid", "count", "layers": source of the layer store, "lowers": [dirs, top first, relative to it],
"upper": dir, "work": dir, "binds": [{"dst", "src"|"fd", "rw"?}], "argv", "env", "cwd", "net",
"chroot", "resolv": text}; `fds`: descriptor numbers by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from typing import Any

from . import sandbox

STAGE = "/mnt"  # where the build's mounts are assembled, in its own mount namespace


def _enter(job: dict[str, Any], fds: dict[str, int]) -> str:
    """Mount the build's root; returns its path (before any pivot)."""
    sandbox.mount("sampan-build", STAGE, "tmpfs", sandbox.MS_NOSUID | sandbox.MS_NODEV, "mode=0700")
    layers = f"{STAGE}/layers"
    sandbox._source(job["layers"], fds, layers)
    for name, source in (job.get("stage") or {}).items():  # inputs of host tools (an OCI layout)
        sandbox._source(source, fds, f"{STAGE}/{name}")
    root = f"{STAGE}/root"
    sandbox._mkdirs(root)
    upper, work = f"{layers}/{job['upper']}", f"{layers}/{job['work']}"
    if job.get("lowers"):
        lowers = ":".join(f"{layers}/{d}" for d in job["lowers"])
        sandbox.mount("sampan-build", root, "overlay", 0,
                      f"lowerdir={lowers},upperdir={upper},workdir={work},userxattr")
    else:
        sandbox.mount(upper, root, None, sandbox.MS_BIND | sandbox.MS_REC)
    return root


def _furnish(job: dict[str, Any], fds: dict[str, int], root: str) -> None:
    """What a step sees besides the image: its own /proc, /dev, /tmp, /run; the binds (caches, the
    build context, uv) under the fresh /run; DNS through slirp4netns."""
    for name in ("proc", "dev", "tmp", "run"):
        path = f"{root}/{name}"
        if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
            continue
        sandbox._mkdirs(path)
    sandbox.mount("proc", f"{root}/proc", "proc", sandbox.MS_NOSUID | sandbox.MS_NODEV | sandbox.MS_NOEXEC)
    sandbox._make_dev(f"{root}/dev", "/dev")
    sandbox.mount("tmpfs", f"{root}/tmp", "tmpfs", sandbox.MS_NOSUID | sandbox.MS_NODEV, "mode=1777")
    sandbox.mount("tmpfs", f"{root}/run", "tmpfs", sandbox.MS_NOSUID | sandbox.MS_NODEV, "mode=0755")
    for bind in job.get("binds") or []:
        target = root + bind["dst"]
        if "fd" in bind:
            sandbox._mkdirs(os.path.dirname(target))
            if not os.path.exists(target):
                sandbox._touch(target) if bind.get("file") else sandbox._mkdirs(target)
            sandbox.move_mount(fds[bind["fd"]], target)
        else:
            sandbox._mkdirs(target)
            sandbox.mount(bind["src"], target, None, sandbox.MS_BIND | sandbox.MS_REC)
    resolv = f"{root}/etc/resolv.conf"
    if job.get("resolv") is not None and os.path.isdir(f"{root}/etc"):
        staged = f"{root}/run/.resolv.conf"
        with open(staged, "w") as fh:
            fh.write(job["resolv"])
        if os.path.islink(resolv) or not os.path.exists(resolv):
            return  # a link (systemd-resolved) or nothing: leave the image as it is
        sandbox.mount(staged, resolv, None, sandbox.MS_BIND)


def main() -> None:
    job = json.loads(os.environ.pop("SAMPAN_BUILDBOX"))
    fds = {k: int(v) for k, v in (job.get("fds") or {}).items()}
    sandbox._own_namespaces(int(job["uid"]), int(job.get("count") or 65536))
    flags = sandbox.CLONE_NEWPID | sandbox.CLONE_NEWIPC | sandbox.CLONE_NEWUTS
    if job.get("net"):
        flags |= sandbox.CLONE_NEWNET
    sandbox.unshare(flags)
    pid = os.fork()
    if pid:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: os.kill(pid, signal.SIGKILL))
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    sandbox._prctl(sandbox.PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        root = _enter(job, fds)
        if job.get("chroot", True):
            _furnish(job, fds, root)
            with contextlib.suppress(OSError):
                socket.sethostname("modal")
            sandbox.pivot_into(root)
            cwd = job.get("cwd") or "/"
            sandbox._mkdirs(cwd)
            os.chdir(cwd)
        else:
            os.chdir(root)
        if job.get("net"):
            sandbox._loopback_up()
            if job.get("outbound"):
                sandbox._wait_for_route(10.0)
    except (OSError, sandbox.SandboxError) as exc:
        print(f"sampan: the build sandbox failed: {exc}", file=sys.stderr, flush=True)
        os._exit(125)
    sandbox.close_all(fds)
    env = job.get("env") or {}
    argv = job["argv"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(f"sampan: cannot run {argv[0]!r} in the image: {exc}", file=sys.stderr, flush=True)
        os._exit(127)


if __name__ == "__main__":
    main()
