"""A dashboard answer as bytes: a page, an htmx fragment, JSON or a redirect, always with the headers that
keep a page from running injected script or being framed by another site."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SECURITY_HEADERS = [
    ("content-security-policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
]
REASONS = {200: "OK", 303: "See Other", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large"}


@dataclass
class Page:
    """A whole answer: HTML (a page or an htmx fragment), JSON, or a redirect."""

    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def encode(self, close: bool = False) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Error')}", f"content-type: {self.content_type}",
                 f"content-length: {len(self.body)}", "cache-control: no-store",
                 *(f"{k}: {v}" for k, v in (*SECURITY_HEADERS, *self.headers))]
        if close:
            lines.append("connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def redirect(location: str, headers: list[tuple[str, str]] | None = None) -> Page:
    return Page(303, b"", headers=[("location", location), *(headers or [])])


def json_page(payload: Any) -> Page:
    return Page(200, json.dumps(payload).encode(), "application/json")


