"""Every answer the gateway gives on its own, with Modal's status codes and texts (fact sheet §7).

Errors carry their status, so what a client sees is decided here and nowhere else.
"""

from __future__ import annotations

from http import HTTPStatus

INVALID_FUNCTION_CALL = "modal-http: invalid function call"
APP_STOPPED = "modal-http: app for invoked web endpoint is stopped"
TERMINATED = "modal-http: internal error: function was terminated by signal"
INIT_FAILURE = "modal-http: internal error: status InitFailure: {reason}"
TIMED_OUT = "modal-http: internal error: function execution timed out"
BAD_REDIRECT_METHOD = "modal-http: bad redirect method"
TOO_MANY_POOLS = ("modal-http: Function {tag} reached its limit of {cap} live class parameter combinations "
                  "for workspace {workspace}")
TOO_MANY_CONNECTIONS = "modal-http: too many open connections, try again"
RATE_LIMITED = "modal-http: rate limit exceeded for workspace {workspace} ({rate:g} requests per second)"
QUEUE_FULL = "modal-http: Function {tag} reached pending input queue limit ({limit}) for workspace {workspace}"


class GatewayError(Exception):
    """An error the gateway answers itself. `body` is what the client reads."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


def render(status: int, body: str, *, close: bool = False, extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
    """A complete plain-text HTTP/1.1 response."""
    payload = body.encode()
    reason = HTTPStatus(status).phrase.encode() if status in HTTPStatus._value2member_map_ else b"-"
    lines = [
        b"HTTP/1.1 " + str(status).encode() + b" " + reason,
        b"content-type: text/plain; charset=utf-8",
        b"content-length: " + str(len(payload)).encode(),
    ]
    for name, value in extra or ():
        lines.append(name + b": " + value)
    if close:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def init_failure(reason: str) -> GatewayError:
    first = next((line for line in reversed(reason.strip().splitlines()) if line.strip()), "container failed to start")
    return GatewayError(500, INIT_FAILURE.format(reason=first.strip()))
