"""Proxy auth (fact sheet §4): which credentials a request carries. Pure.

An endpoint with `requires_proxy_auth=True` accepts `Modal-Key: wk-…` with `Modal-Secret: ws-…`,
or `Authorization: Bearer wk-….ws-…` (token id and secret joined by a period). Verification against
the store happens in the gateway, before any container is touched; the comparison there is in
constant time.
"""

from __future__ import annotations

from .errors import INVALID_PROXY_CREDENTIALS, MISSING_PROXY_CREDENTIALS
from .http import Headers

MISSING = MISSING_PROXY_CREDENTIALS
INVALID = INVALID_PROXY_CREDENTIALS


def proxy_credentials(headers: Headers) -> tuple[str, str] | None:
    """(token id, token secret) from a request's headers, or None when it carries none."""
    values = dict(headers)
    key, secret = values.get(b"modal-key"), values.get(b"modal-secret")
    if key is not None or secret is not None:
        return (key or b"").decode("latin-1"), (secret or b"").decode("latin-1")
    auth = values.get(b"authorization", b"")
    if auth[:7].lower() == b"bearer ":
        token = auth[7:].strip().decode("latin-1")
        if token.startswith("wk-") and "." in token:
            token_id, _, token_secret = token.partition(".")
            return token_id, token_secret
    return None
