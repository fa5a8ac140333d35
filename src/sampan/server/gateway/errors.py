"""Every answer the gateway gives on its own, with Modal's status codes and texts (fact sheet §7).

Errors carry their status, so what a client sees is decided here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from ... import callwire

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
SESSION_REQUIRED = ("modal-http: this server is sessioned: send `Modal-Authorization: Bearer <token>` of a "
                    "session (server.sessions.start())")
SESSION_GONE = "modal-http: no live session has this token (it expired, was terminated, or its container stopped)"
AT_CAPACITY = "modal-http: Server {tag} is at its max_concurrency ({limit}) on every container, try again"

# The edge's own refusals: malformed HTTP, limits, timeouts (status in the GatewayError that carries one).
RESPONSE_HEAD_TOO_LARGE = "modal-http: response head too large"
INCOMPLETE_HEAD = "modal-http: incomplete request head"
HEADERS_TOO_LARGE = "modal-http: request header fields too large"
HEAD_TIMEOUT = "modal-http: request head not received in time"
BODY_TOO_LARGE = "modal-http: request body is larger than the limit of {limit} bytes"
ENDPOINT_REPLACED = "modal-http: endpoint is being replaced, try again"
BODY_TIMEOUT = "modal-http: timed out reading the request body"
MISSING_PROXY_CREDENTIALS = "modal-http: missing credentials for proxy authorization"
INVALID_PROXY_CREDENTIALS = "modal-http: invalid credentials for proxy authorization"
HEADER_FOLDING = "modal-http: obsolete header line folding is not allowed"
MALFORMED_HEADER = "modal-http: malformed header line"
INVALID_HEADER_VALUE = "modal-http: invalid character in header value"
BOTH_FRAMINGS = "modal-http: both Transfer-Encoding and Content-Length"
UNSUPPORTED_TRANSFER_ENCODING = "modal-http: unsupported Transfer-Encoding"
CONFLICTING_LENGTHS = "modal-http: conflicting Content-Length values"
INVALID_LENGTH = "modal-http: invalid Content-Length"
MALFORMED_REQUEST_LINE = "modal-http: malformed request line"
INVALID_TARGET = "modal-http: invalid character in request target"
UNSUPPORTED_VERSION = "modal-http: unsupported HTTP version"
MALFORMED_METHOD = "modal-http: malformed method"
ONE_HOST = "modal-http: a request must carry exactly one Host header"
MALFORMED_RESPONSE = "modal-http: malformed response from the container"
INVALID_CHUNKED_BODY = "modal-http: invalid chunked body"
INVALID_CHUNK_SIZE = "modal-http: invalid chunk size"
INVALID_CHUNK_FRAMING = "modal-http: invalid chunk framing"
INVALID_CLASS_PARAMETERS = "modal-http: invalid class parameters: {reason}"


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


@dataclass(frozen=True)
class Failure:
    """The platform failed a request or a call (not the function): one fact with two renderings, the
    text a web client reads (`gateway_error()`) and the outcome `.remote()` turns into its exception
    (`outcome()`, an `X` outcome of sampan/callwire.py)."""

    kind: str  # a key of callwire.SERVER_KINDS
    status: int
    http_text: str
    call_text: str

    def gateway_error(self) -> GatewayError:
        return GatewayError(self.status, self.http_text)

    def outcome(self) -> bytes:
        return callwire.server_failure(self.kind, self.call_text)


def container_failed(reason: str) -> Failure:
    """The function's container could not start (its import failed, an @enter hook raised, ...)."""
    first = next((line for line in reversed(reason.strip().splitlines()) if line.strip()), "container failed to start")
    return Failure("init", 500, INIT_FAILURE.format(reason=first.strip()),
                   f"the function's container failed to start: {reason}")


def timed_out(timeout: float) -> Failure:
    return Failure("timeout", 500, TIMED_OUT, f"the call ran past the function's timeout of {timeout:g} s")


def terminated(detail: str = "the function's container was terminated during the call") -> Failure:
    return Failure("terminated", 500, TERMINATED, detail)


def queue_full(tag: str, limit: int, workspace: str) -> Failure:
    return Failure("queue", 429, QUEUE_FULL.format(tag=tag, limit=limit, workspace=workspace),
                   f"the function has {limit} inputs waiting already")


CANCELLED = Failure("cancelled", 500, TERMINATED, "the call was cancelled")
