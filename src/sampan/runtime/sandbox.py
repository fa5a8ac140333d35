"""The container sandbox: Linux namespaces and a root filesystem of the container's own.

Made with the kernel's own calls (unshare, mount, pivot_root, open_tree/move_mount, through ctypes,
since Python 3.11 has no `os.unshare`), not with bubblewrap or crun: those exec a new program,
and a container here is a `fork()` of a warm template (template.py). Forking first and isolating
after keeps cold starts at a fork plus a few dozen mount calls.

Two steps, both inside the process that becomes the container:

`enter_base(base)` (a template at start, or a spawned container): a user namespace in which
container root is an unprivileged host uid (never host root: a root server first drops to
`base["uid"]`), a mount namespace, and a fresh tmpfs root holding the image's base — the host's
`/usr` and `/etc` and the interpreter, read-only — plus `/dev`, `/proc`, `/sys`. Nothing else of the
host is there: not `$SAMPAN_HOME`, not other containers, not the server's sockets.

`enter_container(plan, fds)` (each container): new mount, PID, IPC, UTS and (for `web_server`
functions) network namespaces, then one more fork so the container is PID 1 of its own PID
namespace; killing it ends every process it started. The parent stays as a small supervisor that
exits with the container's status. The container's root is a fresh tmpfs (its writable layer,
discarded when it stops): the base bound again, `/root` an overlay of the code bundle and the
image's files, each of the image's top-level directories an overlay over the base, Volumes bound
at their mount paths, private `/tmp`, `/dev/shm`, `/run`, and its own `/proc`.

Paths the server owns (the bundle, a Volume, the socket directory) arrive as descriptors: a root
server clones each as a detached mount (`open_tree`), which the container attaches with
`move_mount`, since the unprivileged container uid cannot even walk `$SAMPAN_HOME` (mode 0700). A
server that is not root cannot clone mounts; its containers' user namespace maps the server's own
uid, so they reach those paths through the host tree, kept at `HOST` in the template only.

Longer than 400 lines because the sandbox is one ordered sequence of kernel calls (namespaces, mounts,
pivot_root, privileges) whose order is its safety; split, it could not be checked in one reading.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import struct
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
SYS_PIVOT_ROOT, SYS_OPEN_TREE, SYS_MOVE_MOUNT = 155, 428, 429
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, AT_RECURSIVE = 1, 0o2000000, 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 4
AT_FDCWD = -100
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NAME = 1, 4, 15

OUTBOUND_WAIT_S = 3.0  # at most, for the server to attach a web_server container's outbound network
NEW_ROOT = "/.sampan-new"  # where a container's root is assembled inside the template's root
HOST = "/.sampan-host"  # the host's tree, in a non-root server's template only
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
SOCKET_DIR = "/run/sampan"  # the container's view of its socket directory (web and control sockets)
# Top-level directories a container gets fresh (empty or tmpfs) rather than from the base.
FRESH = ("root", "tmp", "run", "var", "home", "mnt", "srv", "opt", "media", "proc", "dev", "sys")
IMAGE_FRESH = ("tmp", "run", "proc", "dev", "sys")  # the same, for a container of a real image

_libc: Any = None


class SandboxError(Exception):
    """The kernel refused a step of the sandbox; the container does not start."""


def _c() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(err)}")
    return result


def unshare(flags: int) -> None:
    _check(_c().unshare(flags), "unshare")


def mount(source: str, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None) -> None:
    _check(_c().mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                      data.encode() if data is not None else None), f"mount {fstype or 'bind'} {source} on {target}")


def umount(target: str) -> None:
    _check(_c().umount2(target.encode(), MNT_DETACH), f"umount {target}")


def open_tree(path: str) -> int:
    """A detached clone of the mount tree at `path` (needs CAP_SYS_ADMIN: a root server)."""
    return _check(_c().syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC
                               | AT_RECURSIVE), f"open_tree {path}")


def move_mount(fd: int, target: str) -> None:
    _check(_c().syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH),
           f"move_mount on {target}")


def pivot_root(new: str, old: str) -> None:
    _check(_c().syscall(SYS_PIVOT_ROOT, new.encode(), old.encode()), "pivot_root")


def _prctl(option: int, value: int) -> None:
    _c().prctl(option, value, 0, 0, 0)


def _bind(source: str, target: str, readonly: bool) -> None:
    mount(source, target, None, MS_BIND | MS_REC)
    if readonly:
        # A remount must repeat the flags the kernel locked on a mount from a more privileged namespace.
        st = os.statvfs(target)
        keep = 0
        for st_flag, ms_flag in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                                 (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
                                 (os.ST_RELATIME, MS_RELATIME)):
            if st.f_flag & st_flag:
                keep |= ms_flag
        mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)


def _mkdirs(path: str, mode: int = 0o755) -> None:
    os.makedirs(path, mode=mode, exist_ok=True)


def _touch(path: str) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _own_namespaces(uid: int, count: int = 1) -> None:
    """A user namespace whose root is `uid` on the host, and a private mount namespace.

    Host root maps `count` ids from `uid` (container uid N is host uid `uid + N`, so an image's files
    keep their owners: `_apt` is 42 inside, `uid + 42` outside). Only a process privileged in the
    parent namespace may write such a map, so a helper forked before the unshare writes it, and this
    process then becomes the namespace's root, which is host `uid`, never host root. Anyone else maps
    their own uid, alone."""
    if host_root() and uid != 0:
        ready_r, ready_w = os.pipe()
        done_r, done_w = os.pipe()
        target = os.getpid()
        helper = os.fork()
        if helper == 0:
            code = 1
            try:
                os.close(ready_w)
                os.close(done_r)
                if os.read(ready_r, 1) == b"u":
                    for name in ("uid_map", "gid_map"):
                        _write(f"/proc/{target}/{name}", f"0 {uid} {count}")
                    code = 0
            except OSError:
                pass
            with contextlib.suppress(OSError):
                os.write(done_w, b"ok" if code == 0 else b"no")
            os._exit(code)
        os.close(ready_r)
        os.close(done_w)
        try:
            unshare(CLONE_NEWUSER | CLONE_NEWNS)
            os.write(ready_w, b"u")
            answer = os.read(done_r, 2)
        finally:
            os.close(ready_w)
            os.close(done_r)
            os.waitpid(helper, 0)
        if answer != b"ok":
            raise SandboxError(f"could not map uids {uid}..{uid + count - 1} into the container's user namespace")
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)  # the namespace's root: host `uid`, with no capability outside it
        os.setgroups([])
        _prctl(PR_SET_DUMPABLE, 1)
    else:
        outer_uid, outer_gid = os.getuid(), os.getgid()  # before unshare: afterwards they read as unmapped
        unshare(CLONE_NEWUSER | CLONE_NEWNS)
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {outer_uid} 1")
        _write("/proc/self/gid_map", f"0 {outer_gid} 1")
    mount("none", "/", None, MS_REC | MS_PRIVATE)


# -- the base (template) --------------------------------------------------------------------------
def enter_base(base: dict[str, Any], fds: dict[str, int]) -> None:
    """Enter a new user and mount namespace whose root holds the base of the image (module docstring).

    `base`: {"uid": host uid of container root, "binds": [{"dst", "src"|"fd", "rw"?}], "links": [[path, target]],
    "keep_host": bool}. `fds`: descriptor numbers of the "fd" sources, by name."""
    _own_namespaces(int(base["uid"]), int(base.get("count") or 1))
    if base.get("image"):
        _enter_image(base, fds)
        return
    sources = [b["src"] for b in base["binds"] if "src" in b]
    stage = next(d for d in ("/mnt", "/media", "/srv", "/opt", "/home", "/boot")
                 if os.path.isdir(d) and not any(s == d or s.startswith(d + "/") for s in sources))
    mount("sampan-root", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for path, target in base.get("links") or []:
        os.symlink(target, stage + path)
    for name in ("proc", "sys", "dev", "tmp", "root", "run", NEW_ROOT[1:]):
        _mkdirs(f"{stage}/{name}")
    _bind("/proc", f"{stage}/proc", readonly=False)  # lets containers mount their own /proc (mount_too_revealing)
    with contextlib.suppress(SandboxError):
        _bind("/sys", f"{stage}/sys", readonly=True)
    _make_dev(f"{stage}/dev", "/dev")
    mount("tmpfs", f"{stage}/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for bind in sorted(base["binds"], key=lambda b: b["dst"].count("/")):
        target = stage + bind["dst"]
        if "fd" in bind:
            _mkdirs(target)
            move_mount(fds[bind["fd"]], target)
            if not bind.get("rw"):
                mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        else:
            source = bind["src"]
            if os.path.isdir(source):
                _mkdirs(target)
            elif os.path.exists(source):
                _mkdirs(os.path.dirname(target))
                _touch(target)
            else:
                continue
            _bind(source, target, readonly=not bind.get("rw"))
    os.chdir(stage)
    if base.get("keep_host"):
        _mkdirs(stage + HOST)
        pivot_root(".", "." + HOST)
        os.chdir("/")
        mount("none", HOST, None, MS_REC | MS_PRIVATE)
    else:
        pivot_into(stage)
    close_all(fds)


def pivot_into(root: str) -> None:
    """Make `root` (a mount point) the root of this mount namespace, and drop the old root entirely."""
    os.chdir(root)
    _mkdirs(".sampan-old")
    pivot_root(".", ".sampan-old")
    os.chdir("/")
    umount("/.sampan-old")
    os.rmdir("/.sampan-old")


def close_all(fds: dict[str, int]) -> None:
    """The handed-over descriptors, once their mounts are attached."""
    for fd in fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)


def _enter_image(base: dict[str, Any], fds: dict[str, int]) -> None:
    """The template's root is its image: an overlay of the image's layers (`base["image"]`, top first)
    with a private tmpfs on top, so the template can make its mount points and nothing of it reaches a
    layer. Sampan's runtime (`base["binds"]`, under /__sampan) is bound read-only."""
    stage = next(d for d in ("/mnt", "/media", "/srv", "/opt", "/home", "/boot") if os.path.isdir(d))
    mount("sampan-stage", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")
    lowers = []
    for i, layer in enumerate(base["image"]):
        where = f"{stage}/l{i}"
        _source(layer, fds, where)
        lowers.append(where)
    for name in ("u", "w", "m"):
        _mkdirs(f"{stage}/{name}")
    root = f"{stage}/m"
    mount("sampan-image", root, "overlay", MS_NOSUID,
          f"lowerdir={':'.join(lowers)},upperdir={stage}/u,workdir={stage}/w,userxattr")
    for name in ("proc", "sys", "dev", "tmp", "root", "run", NEW_ROOT[1:]):
        if not os.path.isdir(f"{root}/{name}"):
            if os.path.lexists(f"{root}/{name}"):
                os.unlink(f"{root}/{name}")
            _mkdirs(f"{root}/{name}")
    _bind("/proc", f"{root}/proc", readonly=False)
    with contextlib.suppress(SandboxError):
        _bind("/sys", f"{root}/sys", readonly=True)
    _make_dev(f"{root}/dev", "/dev")
    mount("tmpfs", f"{root}/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for bind in base.get("binds") or []:
        target = root + bind["dst"]
        _source(bind, fds, target)
        mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    pivot_into(root)
    close_all(fds)


IMAGE_PATH = ("/__sampan/pkg", "/__sampan/deps")  # appended to sys.path: the image's packages win


def exec_in_image(python: str, module: str, env: dict[str, str] | None = None) -> None:
    """Replace this (host) interpreter with the image's, running `module.main()` with Sampan's runtime
    at the end of `sys.path`, as Modal's `/__modal/deps` is. Never returns."""
    boot = (f"import sys; sys.path.extend({list(IMAGE_PATH)!r}); sys.argv = [{module!r}]; "
            f"import {module} as m; m.main()")
    os.execve(python, [python, "-c", boot], dict(os.environ) if env is None else env)


def _make_dev(target: str, source: str) -> None:
    """A minimal /dev: the harmless device nodes bound from `source`, shm, pts, the usual links."""
    mount("sampan-dev", target, "tmpfs", MS_NOSUID, "mode=0755")
    for name in DEVICES:
        if os.path.exists(f"{source}/{name}"):
            _touch(f"{target}/{name}")
            with contextlib.suppress(SandboxError):
                mount(f"{source}/{name}", f"{target}/{name}", None, MS_BIND)
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                       ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")):
        os.symlink(link, f"{target}/{name}")
    _mkdirs(f"{target}/shm")
    _mkdirs(f"{target}/pts")
    mount("shm", f"{target}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    with contextlib.suppress(SandboxError):
        mount("devpts", f"{target}/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")


# -- one container --------------------------------------------------------------------------------
def enter_container(plan: dict[str, Any], fds: dict[str, int]) -> None:
    """Isolate this process as one container (module docstring). Returns in the container, as PID 1 of
    its PID namespace with its root pivoted and its working directory set; the calling process stays
    behind as the supervisor and never returns from here.

    With `plan["net"]` the container gets a network namespace of its own, and the supervisor, which
    stays in the host's, becomes its bridge to the platform's loopback ports (`plan["bridge_ports"]`:
    the control API and the gateway), which the container listens on at 127.0.0.1 (`_serve_bridge`)."""
    unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS)
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    bridge = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) if plan.get("net") else None
    pid = os.fork()
    if pid:
        if bridge is not None:
            bridge[1].close()
        _supervise(pid, bridge[0] if bridge is not None else None, set(plan.get("bridge_ports") or []))
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if bridge is not None:
        bridge[0].close()
        unshare(CLONE_NEWNET)
    _build_root(plan, fds)
    if bridge is not None:
        _serve_bridge(bridge[1], sorted(set(plan.get("bridge_ports") or [])))
        if plan.get("outbound"):
            _wait_for_route(OUTBOUND_WAIT_S)


def _supervise(pid: int, bridge: socket.socket | None, ports: set[int]) -> None:
    """The container's parent outside its PID namespace: holds nothing, exits with the container, and
    ends it (SIGTERM, as a stop would) if the server dies. For a container with its own network
    namespace it also answers bridge requests: a port number in, a connected loopback socket of the
    host's namespace out (only `ports`: the platform's own)."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the server signals the process group; the container has it
    keep = {0, bridge.fileno()} if bridge is not None else {0}
    for fd in _open_fds():
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    server = []
    with contextlib.suppress(OSError, ValueError):
        server.append(os.pidfd_open(int(os.environ.get("SAMPAN_SERVER_PID") or 0)))
    child = os.pidfd_open(pid)
    import select

    while True:
        ready, _, _ = select.select([child, *server, *([bridge] if bridge is not None else [])], [], [])
        if child in ready:
            break
        if bridge is not None and bridge in ready:
            _answer_bridge(bridge, ports)
        if server and server[0] in ready:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            server = []
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(1)
        os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def _answer_bridge(bridge: socket.socket, ports: set[int]) -> None:
    try:
        request = bridge.recv(64)
    except OSError:
        return
    if not request:
        return
    try:
        port = int(request)
        if port not in ports:
            raise PermissionError(f"port {port} is not one of the platform's")
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    except (OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            bridge.send(f"error {exc}".encode())
        return
    with conn, contextlib.suppress(OSError):
        socket.send_fds(bridge, [b"ok"], [conn.fileno()])


def bridge_connect(bridge: socket.socket, port: int) -> socket.socket:
    """Inside the container: a loopback connection of the host's network namespace, from the supervisor."""
    bridge.send(str(port).encode())
    data, fds, _, _ = socket.recv_fds(bridge, 256, 1)
    if not fds:
        raise ConnectionRefusedError(data.decode(errors="replace"))
    conn = socket.socket(fileno=fds[0])
    conn.setblocking(True)  # the supervisor connected with a timeout, which left the descriptor non-blocking
    return conn


def _serve_bridge(bridge: socket.socket, ports: list[int]) -> None:
    """Listen on 127.0.0.1:PORT in the container's network namespace for each of the platform's ports,
    and carry each connection over a host-side socket from the supervisor. Plain threads, not the
    event loop: user code calls the platform at import time, before any loop runs."""
    import threading

    lock = threading.Lock()

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def carry(client: socket.socket, port: int) -> None:
        try:
            with lock:
                upstream = bridge_connect(bridge, port)
        except OSError:
            client.close()
            return
        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def accept(listener: socket.socket, port: int) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=carry, args=(client, port), daemon=True, name="sampan-bridge").start()

    for port in ports:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
        except OSError:
            listener.close()
            continue
        listener.listen(128)
        threading.Thread(target=accept, args=(listener, port), daemon=True, name="sampan-bridge").start()


def _wait_for_route(timeout: float) -> bool:
    """Wait (briefly) until the server has given this network namespace its way out (a default route
    over slirp4netns), so that user code that connects out at import time finds it."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), open("/proc/net/route") as fh:
            if any(line.split()[1:2] == ["00000000"] for line in fh.readlines()[1:]):
                return True
        time.sleep(0.002)
    return False


def _open_fds() -> list[int]:
    try:
        return [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(3, 256))


def _source(spec: dict[str, Any], fds: dict[str, int], target: str) -> None:
    """Attach a server-side path at `target`: a cloned mount (root server) or the host tree."""
    _mkdirs(target)
    if "fd" in spec:
        move_mount(fds[spec["fd"]], target)
    else:
        mount(HOST + spec["src"] if os.path.isdir(HOST) else spec["src"], target, None, MS_BIND | MS_REC)


def _build_root(plan: dict[str, Any], fds: dict[str, int]) -> None:
    new = NEW_ROOT
    mount("sampan-container", new, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    stage = f"{new}/.sampan"
    _mkdirs(stage)
    mount("sampan-stage", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")
    # 1. The base, as the template has it: links, bound directories (read-only), fresh ones.
    layer_dirs: dict[str, list[str]] = {}
    layers = []
    for i, layer in enumerate(plan.get("layers") or []):
        where = f"{stage}/l{i}"
        _source(layer, fds, where)
        layers.append(where)
        for name in sorted(os.listdir(where)):
            if os.path.isdir(f"{where}/{name}") and not os.path.islink(f"{where}/{name}"):
                layer_dirs.setdefault(name, []).append(f"{where}/{name}")
    code = f"{stage}/code"
    _source(plan["code"], fds, code)
    layer_dirs.setdefault("root", []).insert(0, code)
    skip = {NEW_ROOT[1:], HOST[1:]}
    image = bool(plan.get("image"))  # the base is a real image: every directory of it is a writable copy
    fresh = IMAGE_FRESH if image else FRESH
    for name in sorted(os.listdir("/")):
        if name in skip:
            continue
        path, target = f"/{name}", f"{new}/{name}"
        if os.path.islink(path):
            os.symlink(os.readlink(path), target)
        elif image and os.path.isfile(path):  # a file at the image's top (`RUN echo x > /built`)
            _top_file(path, target)
        elif name in fresh or not os.path.isdir(path):
            _mkdirs(target)
        elif name in layer_dirs or (image and name != "__sampan"):
            _overlay(layer_dirs.pop(name, []) + [path], target, stage, name)
        else:
            _mkdirs(target)
            _bind(path, target, readonly=True)
    for name, lowers in layer_dirs.items():  # directories only the image has (/assets)
        _overlay(lowers, f"{new}/{name}", stage, name)
    # 2. Per-container filesystems.
    mount("tmpfs", f"{new}/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    mount("tmpfs", f"{new}/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    _mkdirs(f"{new}/var/tmp", 0o1777)
    os.chmod(f"{new}/var/tmp", 0o1777)
    _make_dev(f"{new}/dev", "/dev")
    mount("proc", f"{new}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    with contextlib.suppress(SandboxError):
        _bind("/sys", f"{new}/sys", readonly=True)
    # 3. What the base had below fresh directories (an interpreter under /root/.pyenv, Sampan's source).
    for dst in sorted(plan.get("nested") or [], key=lambda d: d.count("/")):
        top = dst.strip("/").split("/")[0]
        if top in FRESH and os.path.exists(dst):
            _mkdirs(new + dst) if os.path.isdir(dst) else _touch(new + dst)
            _bind(dst, new + dst, readonly=True)
    # 4. Volumes and the socket directory.
    for volume in sorted(plan.get("volumes") or [], key=lambda v: v["dst"].count("/")):
        try:
            _source(volume, fds, new + volume["dst"])
        except OSError as exc:
            raise SandboxError(f"cannot mount the Volume at {volume['dst']}: {exc}") from None
    if plan.get("sockets"):
        _source(plan["sockets"], fds, new + SOCKET_DIR)
    # 5. The staged sources stay referenced by the overlays; nothing of them is visible afterwards.
    for where in [code, *layers]:
        umount(where)
    umount(stage)
    os.rmdir(stage)
    if plan.get("hostname"):
        with contextlib.suppress(OSError):
            socket.sethostname(plan["hostname"][:63])
    for path, text in (plan.get("files") or {}).items():  # /etc/resolv.conf, /etc/hosts: into the copy
        if image and os.path.isdir(os.path.dirname(new + path)):
            with contextlib.suppress(OSError):
                if os.path.islink(new + path):
                    os.unlink(new + path)
                _write(new + path, text)
    if plan.get("net"):
        _loopback_up()  # the container's own lo; its ports are the container's alone
    pivot_into(new)
    workdir = plan.get("workdir") or "/root"
    _mkdirs(workdir)
    os.chdir(workdir)
    close_all(fds)


def _top_file(path: str, target: str, copy_max: int = 1 << 20) -> None:
    """A file at the root of an image: copied into the container's root (its own to change) when small,
    else bound read-only."""
    if os.path.getsize(path) <= copy_max:
        with open(path, "rb") as src, open(target, "wb") as dst:
            dst.write(src.read())
        os.chmod(target, os.stat(path).st_mode & 0o7777)
    else:
        _touch(target)
        _bind(path, target, readonly=True)


def _overlay(lowers: list[str], target: str, stage: str, name: str) -> None:
    """A writable view of `lowers` (first wins) whose writes go to the container's tmpfs."""
    upper, work = f"{stage}/u/{name}", f"{stage}/w/{name}"
    _mkdirs(upper)
    _mkdirs(work)
    _mkdirs(target)
    mount("overlay", target, "overlay", MS_NOSUID,
          f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}")


def _loopback_up() -> None:
    """Bring `lo` up in a new network namespace (SIOCGIFFLAGS/SIOCSIFFLAGS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, ifreq)[:18])[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))


# -- detection ------------------------------------------------------------------------------------
def host_root() -> bool:
    """Root of the machine (the initial user namespace, every uid mapped), not root of a user namespace
    someone made (`unshare -r`): only the former can hand other uids to containers."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as fh:
            return fh.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return False


def probe() -> str | None:
    """Why this machine cannot sandbox containers, or None when it can. Forks a child that tries the
    namespaces, a tmpfs, an overlay and /proc; the parent is untouched."""
    if not sys.platform.startswith("linux"):
        return f"containers need Linux namespaces (this is {sys.platform})"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        message = "ok"
        try:
            _own_namespaces(65534)
            mount("probe", "/tmp", "tmpfs", 0, "mode=0755")
            for d in ("l", "u", "w", "m"):
                os.mkdir(f"/tmp/{d}")
            mount("overlay", "/tmp/m", "overlay", 0, "lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w")
            unshare(CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS)
        except (OSError, SandboxError) as exc:
            message = str(exc)
        os.write(w, message.encode()[:500])
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        message = fh.read().decode(errors="replace")
    os.waitpid(pid, 0)
    return None if message == "ok" else (message or "the sandbox probe failed")
