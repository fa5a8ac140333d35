"""Addresses of a container that the server can believe, though user code runs in the container.

A Unix socket: the container makes it in its socket directory, and may later swap its name for a link
to a socket of the host's (a Docker socket, the server's own), which `connect()` would follow. The
server pins the socket instead (`pin_socket`: an `O_PATH` descriptor, taken with `O_NOFOLLOW`) and
connects to `/proc/self/fd/<it>`, which reaches that very socket whatever the name leads to later;
a socket made later (a sandbox's tunnel relay) is pinned the same way just before each connection
(`connect_unix`).

A TCP port: on a Ray node a container serves TCP on the node's address, in the node's network namespace, and says
which port when it is ready. User code runs in that container and can say it first, naming another
container's port, or a service of the node's (Ray's dashboard, its job API): the gateway would then
send the function's requests there, as the server. So the port is believed only when the socket
listening on it is held by a process of the container's own process group (the group the backend
signals to stop it). `listening_inodes` reads the kernel's table (pure); `owns_listener` looks at
/proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import stat
import sys

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column


class NotASocket(OSError):
    """Nothing at the path, a link, or something other than a Unix socket."""


def pin_socket(path: str) -> int:
    """An `O_PATH` descriptor of the Unix socket at `path`; `/proc/self/fd/<it>` connects to it."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise NotASocket(exc.errno, f"the container's socket is not there ({exc.strerror})", path) from None
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotASocket(0, "the container's socket is not a socket", path)
    return fd


async def connect_unix(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """`asyncio.open_unix_connection` to the socket at `path` now, never through a link."""
    fd = pin_socket(path)
    try:
        return await asyncio.open_unix_connection(f"/proc/self/fd/{fd}")
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _hex_address(host: str) -> tuple[str, str]:
    """`host` as /proc/net/tcp{,6} prints local addresses (each 32-bit word in the machine's byte order),
    and the table it is in."""
    packed = ipaddress.ip_address(host).packed
    words = [packed[i:i + 4] for i in range(0, len(packed), 4)]
    text = "".join(format(int.from_bytes(w, sys.byteorder), "08X") for w in words)
    return text, ("tcp" if len(packed) == 4 else "tcp6")


def listening_inodes(table: str, host: str, port: int) -> set[int]:
    """Inodes of the sockets in a /proc/net/tcp{,6} `table` listening on `host:port`, or on the
    wildcard address and `port` (which accepts connections to `host` too)."""
    address, _ = _hex_address(host)
    wildcard = "0" * len(address)
    found = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != LISTEN:
            continue
        local, _, local_port = fields[1].partition(":")
        if int(local_port, 16) == port and local in (address, wildcard):
            found.add(int(fields[9]))
    return found


def group_socket_inodes(pgid: int) -> set[int]:
    """Inodes of every socket the processes of process group `pgid` hold open."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                if int(fh.read().rsplit(")", 1)[1].split()[2]) != pgid:
                    continue
            for fd in os.listdir(f"/proc/{entry}/fd"):
                link = os.readlink(f"/proc/{entry}/fd/{fd}")
                if link.startswith("socket:["):
                    found.add(int(link[8:-1]))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
    return found


def owns_listener(pgid: int, host: str, port: int) -> bool:
    """Whether `host:port` is listened on, and only by sockets of process group `pgid`."""
    _, table = _hex_address(host)
    try:
        with open(f"/proc/net/{table}") as fh:
            inodes = listening_inodes(fh.read(), host, port)
    except OSError:
        return False
    return bool(inodes) and inodes <= group_socket_inodes(pgid)
