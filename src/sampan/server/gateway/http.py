"""HTTP/1.1 message heads: parsing, framing decisions and header rewriting. No I/O here.

The gateway parses each request head once, decides how the body is framed and which headers
cross to the container, then only copies bytes. The rules, with their reasons:

- A request with both Transfer-Encoding and Content-Length is rejected (RFC 9112 §6.1: a
  proxy that forwards both invites request smuggling). So are several differing Content-Lengths,
  a Transfer-Encoding other than `chunked`, and header lines folded over several lines.
- Hop-by-hop headers (RFC 9110 §7.6.1) and every header the Connection header names stay on
  their hop. The gateway sets the framing of the hop to the container itself.
- Forwarding headers from the client (X-Forwarded-*, Forwarded, X-Real-IP) are dropped and
  replaced by the gateway's own, so the app's `request.client.host` is the real peer and cannot
  be spoofed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import (
    BOTH_FRAMINGS,
    CONFLICTING_LENGTHS,
    HEADER_FOLDING,
    HEADERS_TOO_LARGE,
    INVALID_HEADER_VALUE,
    INVALID_LENGTH,
    INVALID_TARGET,
    MALFORMED_HEADER,
    MALFORMED_METHOD,
    MALFORMED_REQUEST_LINE,
    MALFORMED_RESPONSE,
    ONE_HOST,
    UNSUPPORTED_TRANSFER_ENCODING,
    UNSUPPORTED_VERSION,
    GatewayError,
)

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
    }
)
CLIENT_FORWARDING = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded",
                               b"x-real-ip"})
MAX_HEADERS = 100
_FORBIDDEN_IN_VALUES = frozenset(b"\r\n\x00")
_FORBIDDEN_IN_TARGET = frozenset(bytes(range(0x21)) + b"\x7f")
# Sent by clients, read at the edge, never forwarded: proxy-auth tokens, a sessioned server's session token.
ALLOWED_MODAL_HEADERS = frozenset({b"modal-key", b"modal-secret", b"modal-authorization"})
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+\Z")  # RFC 9110 token: one C-level match per name
# A trailer field as forwarded: a token name, a colon, a value of visible characters, spaces and tabs.
TRAILER = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+:[\t \x21-\x7e\x80-\xff]*\r\n\Z")

Headers = list[tuple[bytes, bytes]]

# Body framing
NO_BODY = "none"
LENGTH = "length"
CHUNKED = "chunked"
UNTIL_CLOSE = "close"


@dataclass
class RequestHead:
    method: bytes
    target: bytes
    version: bytes
    headers: Headers
    framing: str
    length: int
    keep_alive: bool
    host: str
    websocket: bool
    expect_continue: bool

    @property
    def path(self) -> bytes:
        return self.target.split(b"?", 1)[0]

    @property
    def query(self) -> bytes:
        parts = self.target.split(b"?", 1)
        return parts[1] if len(parts) == 2 else b""


@dataclass
class ResponseHead:
    status: int
    reason: bytes
    headers: Headers
    framing: str
    length: int
    keep_alive: bool


def _parse_header_lines(lines: list[bytes]) -> Headers:
    if len(lines) > MAX_HEADERS:
        raise GatewayError(431, HEADERS_TOO_LARGE)
    headers: Headers = []
    for line in lines:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise GatewayError(400, HEADER_FOLDING)
        name, sep, value = line.partition(b":")
        if not sep or _TOKEN.match(name) is None:
            raise GatewayError(400, MALFORMED_HEADER)
        value = value.strip(b" \t")
        if _FORBIDDEN_IN_VALUES.intersection(value):  # a bare CR or LF would split the header downstream
            raise GatewayError(400, INVALID_HEADER_VALUE)
        headers.append((name.lower(), value))
    return headers


def _connection_tokens(headers: Headers) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return tokens


def _framing(headers: Headers, *, is_request: bool) -> tuple[str, int]:
    te = [v for n, v in headers if n == b"transfer-encoding"]
    cl = [v for n, v in headers if n == b"content-length"]
    return _framing_of(te, cl, is_request=is_request)


def _framing_of(te: list[bytes], cl: list[bytes], *, is_request: bool) -> tuple[str, int]:
    """The body's framing from the Transfer-Encoding and Content-Length values a head carries."""
    if te:
        if cl:
            raise GatewayError(400, BOTH_FRAMINGS)
        codings = [c.strip().lower() for v in te for c in v.split(b",") if c.strip()]
        if not codings or codings[-1] != b"chunked" or (is_request and codings != [b"chunked"]):
            raise GatewayError(501 if is_request else 502, UNSUPPORTED_TRANSFER_ENCODING)
        return CHUNKED, -1
    if cl:
        values = {v.strip() for value in cl for v in value.split(b",")}
        if len(values) != 1:
            raise GatewayError(400, CONFLICTING_LENGTHS)
        raw = values.pop()
        if not raw.isdigit() or len(raw) > 19:
            raise GatewayError(400, INVALID_LENGTH)
        length = int(raw)
        return (LENGTH, length) if length else (NO_BODY, 0)
    return (NO_BODY, 0) if is_request else (UNTIL_CLOSE, -1)


def parse_request_head(data: bytes) -> RequestHead:
    """Parse `data` (the head, ending in CRLF CRLF) into a RequestHead or raise GatewayError(400)."""
    lines = data.rstrip(b"\r\n").split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise GatewayError(400, MALFORMED_REQUEST_LINE)
    method, target, version = parts
    if _FORBIDDEN_IN_TARGET.intersection(target):
        raise GatewayError(400, INVALID_TARGET)
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise GatewayError(505 if version.startswith(b"HTTP/") else 400, UNSUPPORTED_VERSION)
    if _TOKEN.match(method) is None:
        raise GatewayError(400, MALFORMED_METHOD)
    headers = _parse_header_lines(lines[1:])
    # One pass over the headers for everything the head's meaning depends on (on every request's path).
    te: list[bytes] = []
    cl: list[bytes] = []
    hosts: list[bytes] = []
    upgrade: list[bytes] = []
    tokens: set[bytes] = set()
    expect = False
    for name, value in headers:
        if name == b"host":
            hosts.append(value)
        elif name == b"content-length":
            cl.append(value)
        elif name == b"transfer-encoding":
            te.append(value)
        elif name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
        elif name == b"upgrade":
            upgrade.append(value.lower())
        elif name == b"expect":
            expect = expect or value.lower() == b"100-continue"
        elif name.startswith(b"modal-") and name not in ALLOWED_MODAL_HEADERS:
            # Only the platform sets these (a forwarded call id would confuse the app).
            raise GatewayError(400, f"prohibited modal header: {name.decode('latin-1')}")
    framing, length = _framing_of(te, cl, is_request=True)
    if version == b"HTTP/1.1":
        keep_alive = b"close" not in tokens
    else:
        keep_alive = b"keep-alive" in tokens
    if len(hosts) > 1 or (version == b"HTTP/1.1" and not hosts):
        raise GatewayError(400, ONE_HOST)
    websocket = method == b"GET" and b"upgrade" in tokens and any(b"websocket" in u for u in upgrade)
    return RequestHead(
        method=method,
        target=target,
        version=version,
        headers=headers,
        framing=framing,
        length=length,
        keep_alive=keep_alive,
        host=hosts[0].decode("latin-1") if hosts else "",
        websocket=websocket,
        expect_continue=expect,
    )


def parse_response_head(data: bytes, request_method: bytes, upgrade: bool = False) -> ResponseHead:
    """A container's response head to a request of `request_method`. A 101 answers only a request that
    asked for an upgrade (`upgrade`: a WebSocket); to any other it is a broken response (RFC 9110 §15.2.2:
    a server must not switch to a protocol the client did not offer), and the connection that carried it
    speaks something else from then on: 502, never reused."""
    lines = data.rstrip(b"\r\n").split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise GatewayError(502, MALFORMED_RESPONSE)
    status = int(parts[1])
    if status == 101 and not upgrade:
        raise GatewayError(502, MALFORMED_RESPONSE)
    reason = parts[2] if len(parts) == 3 else b""
    headers = _parse_header_lines(lines[1:])
    tokens = _connection_tokens(headers)
    if request_method == b"HEAD" or status in (204, 304) or 100 <= status < 200:
        framing, length = NO_BODY, 0
    else:
        framing, length = _framing(headers, is_request=False)
    keep_alive = parts[0] == b"HTTP/1.1" and b"close" not in tokens and framing != UNTIL_CLOSE
    return ResponseHead(status, reason, headers, framing, length, keep_alive)


def _strip(headers: Headers) -> Headers:
    named = _connection_tokens(headers)
    return [(n, v) for n, v in headers if n not in HOP_BY_HOP and n not in named]


def upstream_request(head: RequestHead, client_ip: str, scheme: str, call_id: str) -> bytes:
    """The request head sent to the container."""
    out = [head.method + b" " + head.target + b" HTTP/1.1\r\n"]
    for name, value in _strip(head.headers):
        if name in CLIENT_FORWARDING or name == b"content-length" or name in ALLOWED_MODAL_HEADERS:
            continue
        if head.websocket and name == b"sec-websocket-extensions":
            continue  # no permessage-deflate (RFC 7692), as on Modal
        out.append(name + b": " + value + b"\r\n")
    out.append(b"x-forwarded-for: " + client_ip.encode() + b"\r\n")
    out.append(b"x-forwarded-proto: " + scheme.encode() + b"\r\n")
    out.append(b"modal-function-call-id: " + call_id.encode() + b"\r\n")
    if head.websocket:
        out.append(b"connection: Upgrade\r\nupgrade: websocket\r\n")
    if head.framing == LENGTH:
        out.append(b"content-length: " + str(head.length).encode() + b"\r\n")
    elif head.framing == CHUNKED:
        out.append(b"transfer-encoding: chunked\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def client_response(head: ResponseHead, keep_alive: bool, call_id: str, upgrade: bool = False) -> bytes:
    """The response head sent back to the client."""
    reason = head.reason or b"-"
    out = [b"HTTP/1.1 " + str(head.status).encode() + b" " + reason + b"\r\n"]
    for name, value in _strip(head.headers):
        if name == b"content-length" and head.framing != LENGTH:
            # Keep a HEAD response's Content-Length; drop it where the body framing says otherwise.
            if head.framing != NO_BODY:
                continue
        out.append(name + b": " + value + b"\r\n")
    out.append(b"modal-function-call-id: " + call_id.encode() + b"\r\n")
    if upgrade:
        out.append(b"connection: Upgrade\r\nupgrade: websocket\r\n")
    elif head.framing == CHUNKED:
        out.append(b"transfer-encoding: chunked\r\n")
    if not upgrade and not keep_alive:
        out.append(b"connection: close\r\n")
    out.append(b"\r\n")
    return b"".join(out)
