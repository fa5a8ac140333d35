"""A container's named TCP port is believed only if its own process group listens there
(backends/addresses.py): the kernel's table parsed, and real listeners in real process groups."""

from __future__ import annotations

import socket
import subprocess
import sys

from sampan.backends.addresses import listening_inodes, owns_listener

TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0
   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0 100 0 0 10 0
   2: 0100007F:1F90 0100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0 20 4 30 10 -1
   3: 0200007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1 0 100 0 0 10 0
"""


def test_listeners_on_the_address_or_the_wildcard_count_and_connections_do_not() -> None:
    if sys.byteorder != "little":  # the table above is a little-endian machine's
        return
    assert listening_inodes(TABLE, "127.0.0.1", 8080) == {111}
    assert listening_inodes(TABLE, "127.0.0.1", 8081) == {222}  # 0.0.0.0:8081 takes 127.0.0.1 too
    assert listening_inodes(TABLE, "127.0.0.2", 8080) == {444}
    assert listening_inodes(TABLE, "127.0.0.1", 9999) == set()


LISTENER = """
import os, socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""


def test_a_port_is_owned_only_by_the_process_group_that_listens_on_it() -> None:
    with subprocess.Popen([sys.executable, "-c", LISTENER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, start_new_session=True) as child:
        ours = socket.socket()
        try:
            assert child.stdout is not None
            port = int(child.stdout.readline())
            ours.bind(("127.0.0.1", 0))
            ours.listen()
            assert owns_listener(child.pid, "127.0.0.1", port)
            assert not owns_listener(child.pid, "127.0.0.1", ours.getsockname()[1]), "another group's port"
            assert not owns_listener(child.pid, "127.0.0.2", port), "no listener on that address"
        finally:
            ours.close()
            child.kill()
