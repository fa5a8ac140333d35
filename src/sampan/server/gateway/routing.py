"""Which endpoint a request is for: by the port it arrived on, or by its Host header.

Lookups are plain dictionary reads; the control plane swaps whole entries when an app is
published or stopped, so the request path never takes a lock.
"""

from __future__ import annotations

from typing import Protocol

from ...naming import parse_host
from .errors import APP_STOPPED, INVALID_FUNCTION_CALL, GatewayError


class Endpoint(Protocol):
    subdomain: str
    tag: str
    requires_proxy_auth: bool

    def pool_for(self, query: bytes):  # -> Pool; raises GatewayError for bad class parameters
        ...


class RouteTable:
    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.endpoints: dict[str, Endpoint] = {}
        self.stopped: set[str] = set()
        self.custom: dict[str, str] = {}  # custom domain -> subdomain (`custom_domains=`)

    def set(self, subdomain: str, endpoint: Endpoint) -> None:
        self.endpoints[subdomain] = endpoint
        self.stopped.discard(subdomain)

    def remove(self, subdomain: str, *, stopped: bool) -> None:
        self.endpoints.pop(subdomain, None)
        if stopped:
            self.stopped.add(subdomain)
        else:
            self.stopped.discard(subdomain)

    def resolve(self, subdomain: str | None) -> Endpoint:
        if subdomain is not None:
            endpoint = self.endpoints.get(subdomain)
            if endpoint is not None:
                return endpoint
            if subdomain in self.stopped:
                raise GatewayError(404, APP_STOPPED)
        raise GatewayError(404, INVALID_FUNCTION_CALL)

    def subdomain_for_host(self, host: str) -> str | None:
        name = host.strip().lower().rsplit(":", 1)[0].rstrip(".") if not host.startswith("[") else host
        if name in self.custom:
            return self.custom[name]
        return parse_host(host, self.domain)
