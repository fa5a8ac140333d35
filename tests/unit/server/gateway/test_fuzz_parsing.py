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


chunk = st.builds(
    lambda size_text, ext, data: size_text + ext + b"\r\n" + data + b"\r\n",
    st.one_of(st.sampled_from([b"5", b"05", b"A", b"0", b"ffffffffffffffffff", b"-1", b"5 "]),
              st.binary(min_size=1, max_size=4)),
    st.one_of(st.just(b""), st.sampled_from([b";a=b", b";x\nGET / HTTP/1.1", b";\r", b"; q"]), st.binary(max_size=12)),
    st.binary(max_size=12),
)
trailer = st.one_of(st.sampled_from([b"X: y", b" folded", b"Bad Name: v", b"X: a\rb", b"no-colon", b"T:"]),
                    st.binary(max_size=20))
chunked_body = st.builds(
    lambda chunks, trailers, rest: (b"".join(chunks) + b"0\r\n" + b"".join(t + b"\r\n" for t in trailers)
                                    + b"\r\n" + rest),
    st.lists(chunk, max_size=4), st.lists(trailer, max_size=3), st.binary(max_size=20),
)


def _strictly_framed(data: bytes) -> bool:
    """What a container receives: hex sizes only, each chunk exactly that long, then strict trailers."""
    import re

    pos = 0
    while True:
        end = data.index(b"\r\n", pos)
        size_line = data[pos:end]
        if not re.fullmatch(rb"[0-9a-f]+", size_line):
            return False
        size = int(size_line, 16)
        pos = end + 2
        if size == 0:
            break
        if data[pos + size:pos + size + 2] != b"\r\n":
            return False
        pos += size + 2
    for line in data[pos:].split(b"\r\n")[:-2]:
        if http.TRAILER.match(line + b"\r\n") is None:
            return False
    return data.endswith(b"\r\n\r\n") or data[pos:] == b"\r\n"


@settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=list(HealthCheck))
@given(chunked_body)
def test_chunked_bodies_are_refused_or_forwarded_strictly_framed(raw: bytes) -> None:
    """Extensions and trailers are where smuggling hides: the container only ever sees a strict stream."""
    import asyncio

    from sampan.server.gateway.bodies import copy_chunked

    class Sink:
        data = b""

        def write(self, data: bytes) -> None:
            self.data += data

        async def drain(self) -> None:
            return None

    async def main() -> bytes | None:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        sink = Sink()
        try:
            await copy_chunked(reader, sink)
        except GatewayError as exc:
            assert exc.status in (400, 408, 413)
            return None
        except asyncio.IncompleteReadError:
            return None  # the client stopped sending: nothing complete was forwarded as a request
        return sink.data

    sent = asyncio.run(main())
    if sent is not None:
        assert _strictly_framed(sent), sent
