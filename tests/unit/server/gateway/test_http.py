"""The gateway's HTTP head parsing and header rules, without sockets."""

from __future__ import annotations

import pytest

from sampan.server.gateway import http
from sampan.server.gateway.errors import MALFORMED_RESPONSE, GatewayError


def parse(raw: bytes) -> http.RequestHead:
    return http.parse_request_head(raw)


def test_simple_get() -> None:
    head = parse(b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (head.method, head.path, head.query, head.host) == (b"GET", b"/a", b"x=1", "h")
    assert head.framing == http.NO_BODY and head.keep_alive


def test_content_length_and_chunked() -> None:
    assert parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n").framing == http.LENGTH
    assert parse(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n").framing == http.CHUNKED


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ],
    ids=["te-and-cl", "two-cl", "negative-cl", "gzip-te", "folding", "space-in-name", "no-version",
         "http2", "no-host", "two-hosts"],
)
def test_malformed_requests_are_rejected(raw: bytes, status: int) -> None:
    with pytest.raises(GatewayError) as info:
        parse(raw)
    assert info.value.status == status


def test_http10_closes_by_default() -> None:
    assert not parse(b"GET / HTTP/1.0\r\n\r\n").keep_alive
    assert parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive
    assert not parse(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive


def test_websocket_upgrade_detected() -> None:
    head = parse(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert head.websocket


def test_upstream_request_replaces_forwarding_headers_and_hop_by_hop() -> None:
    head = parse(
        b"POST /p HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n"
        b"Connection: close, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: 5\r\nContent-Length: 2\r\n"
        b"Modal-Key: wk-1\r\nModal-Secret: ws-1\r\nX-Kept: yes\r\n\r\n"
    )
    out = http.upstream_request(head, "10.1.2.3", "http", "fc-abc")
    text = out.decode()
    assert text.startswith("POST /p HTTP/1.1\r\n")
    assert "host: app.example\r\n" in text
    assert "x-forwarded-for: 10.1.2.3\r\n" in text
    assert "6.6.6.6" not in text and "x-secret-hop" not in text and "keep-alive" not in text
    assert "wk-1" not in text and "ws-1" not in text  # proxy credentials stay at the edge
    assert "modal-function-call-id: fc-abc\r\n" in text
    assert "content-length: 2\r\n" in text and "x-kept: yes" in text
    assert text.endswith("\r\n\r\n")


def test_response_framing() -> None:
    r = http.parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", b"GET")
    assert (r.framing, r.length, r.keep_alive) == (http.LENGTH, 3, True)
    r = http.parse_response_head(b"HTTP/1.1 200 OK\r\n\r\n", b"GET")
    assert r.framing == http.UNTIL_CLOSE and not r.keep_alive
    r = http.parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", b"HEAD")
    assert r.framing == http.NO_BODY
    r = http.parse_response_head(b"HTTP/1.1 304 Not Modified\r\n\r\n", b"GET")
    assert r.framing == http.NO_BODY and r.keep_alive


def test_a_101_is_an_answer_only_to_a_request_that_asked_for_an_upgrade() -> None:
    switch = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
    assert http.parse_response_head(switch, b"GET", upgrade=True).status == 101
    with pytest.raises(GatewayError) as caught:
        http.parse_response_head(switch, b"GET")
    assert (caught.value.status, caught.value.body) == (502, MALFORMED_RESPONSE)


def test_client_response_adds_call_id_and_close() -> None:
    r = http.parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n", b"GET")
    text = http.client_response(r, False, "fc-1").decode()
    assert "modal-function-call-id: fc-1\r\n" in text
    assert "connection: close\r\n" in text
    assert "keep-alive" not in text


@pytest.mark.parametrize("name", [b"Modal-Function-Call-Id", b"modal-retry-count", b"Modal-Proxy-Authorization"])
def test_platform_modal_headers_are_prohibited(name: bytes) -> None:
    with pytest.raises(GatewayError) as info:
        parse(b"GET / HTTP/1.1\r\nHost: h\r\n" + name + b": x\r\n\r\n")
    assert (info.value.status, info.value.body) == (400, f"prohibited modal header: {name.decode().lower()}")


def test_modal_key_and_secret_are_allowed() -> None:
    head = parse(b"GET / HTTP/1.1\r\nHost: h\r\nModal-Key: wk-1\r\nModal-Secret: ws-1\r\n\r\n")
    assert (b"modal-key", b"wk-1") in head.headers


def test_too_many_headers() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n"
    with pytest.raises(GatewayError) as info:
        parse(raw)
    assert info.value.status == 431


def test_websocket_extensions_are_not_forwarded() -> None:
    head = parse(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 b"Sec-WebSocket-Key: k\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    text = http.upstream_request(head, "1.2.3.4", "http", "fc-1").decode()
    assert "permessage-deflate" not in text and "sec-websocket-key: k" in text


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\nInjected: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
    b"GET /a\x00b HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n",
], ids=["bare-lf", "bare-cr", "nul-in-target", "tab-in-target"])
def test_control_characters_are_rejected(raw: bytes) -> None:
    with pytest.raises(GatewayError) as info:
        parse(raw)
    assert info.value.status == 400
