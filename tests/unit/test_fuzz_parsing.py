"""Fuzzing the gateway's request parsing: whatever bytes arrive, the parser either returns a head or
raises GatewayError with a 4xx/5xx status; nothing else escapes. Bounded for CI (see docs/errors.md
for the longer run)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sampan.server.gateway import http
from sampan.server.gateway.errors import GatewayError

EXAMPLES = int(os.environ.get("SAMPAN_FUZZ_EXAMPLES", "3000"))

header_line = st.builds(
    lambda name, value: name + b": " + value,
    st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Upgrade", b"Expect",
                     b"X-Forwarded-For", b"Modal-Key", b"modal-function-call-id", b"Bad Name", b""]),
    st.one_of(st.binary(max_size=40), st.sampled_from([b"chunked", b"5", b"x\ny", b"a\rb", b"close, upgrade"])),
)
request = st.builds(
    lambda line, headers: line + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n",
    st.one_of(st.binary(max_size=60), st.sampled_from([b"GET / HTTP/1.1", b"POST /x?y=1 HTTP/1.0"])),
    st.lists(header_line, max_size=12),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(request, st.binary(max_size=300)))
def test_parser_never_raises_anything_but_gateway_errors(data: bytes) -> None:
    try:
        head = http.parse_request_head(data)
    except GatewayError as exc:
        assert 400 <= exc.status < 600
        return
    # A parsed head is internally consistent and can be forwarded.
    assert head.framing in (http.NO_BODY, http.LENGTH, http.CHUNKED)
    assert not (head.framing == http.LENGTH and head.length <= 0)
    out = http.upstream_request(head, "127.0.0.1", "http", "fc-x")
    assert out.endswith(b"\r\n\r\n") and b"\r\n\r\n" not in out[:-4]
    # no bare CR or LF, so the container's parser sees exactly the lines the gateway checked
    assert b"\n" not in out.replace(b"\r\n", b"") and b"\r" not in out.replace(b"\r\n", b"")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300))
def test_response_parser_never_raises_anything_but_gateway_errors(data: bytes) -> None:
    try:
        http.parse_response_head(data, b"GET")
    except GatewayError as exc:
        assert exc.status in (400, 501, 502)
