"""`modal.forward(port)` and `modal.Tunnel`: a port of a container, reachable from this machine.

Modal relays the port through its tunnel servers to a public URL; a self-hosted container's port is
already on this machine. Inside a container that shares the host's network, the tunnel is the port
itself on 127.0.0.1; a `web_server` container (its own network namespace) is reached through its URL."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .exception import InvalidError

_forwarded: set[int] = set()


@dataclass(frozen=True)
class Tunnel:
    host: str
    port: int
    unencrypted_host: str
    unencrypted_port: int

    @property
    def url(self) -> str:
        # No TLS terminates here: the URL is plain HTTP on this machine (Modal's would be https://).
        return f"http://{self.host}" + (f":{self.port}" if self.port != 80 else "")

    @property
    def tls_socket(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def tcp_socket(self) -> tuple[str, int]:
        if not self.unencrypted_host:
            raise InvalidError("This tunnel is not configured for unencrypted TCP. Please use "
                               "`forward(..., unencrypted=True)`.")
        return (self.unencrypted_host, self.unencrypted_port)


@contextlib.contextmanager
def forward(port: int, *, unencrypted: bool = False, h2_enabled: bool = False, client: Any = None
            ) -> Iterator[Tunnel]:
    if not isinstance(port, int):
        raise InvalidError(f"The port argument should be an int, not {port!r}")
    if not 1 <= port <= 65535:
        raise InvalidError(f"Invalid port number {port}")
    if h2_enabled and unencrypted:
        raise InvalidError("H2 can only be used with encrypted ports")
    if os.environ.get("MODAL_IS_REMOTE") != "1":
        raise InvalidError("Forwarding ports only works inside a Modal container")
    if port in _forwarded:
        raise InvalidError(f"Port {port} is already forwarded")
    if h2_enabled:
        warnings.warn("h2_enabled has no effect here: the port is reached directly", stacklevel=3)
    _forwarded.add(port)
    try:
        yield Tunnel("127.0.0.1", port, "127.0.0.1" if unencrypted else "", port if unencrypted else 0)
    finally:
        _forwarded.discard(port)


__all__ = ["Tunnel", "forward"]
