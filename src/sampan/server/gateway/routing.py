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


def normal_domain(domain: str) -> str:
    return domain.strip().lower().rstrip(".")


class RouteTable:
    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.endpoints: dict[str, Endpoint] = {}
        self.stopped: set[str] = set()
        self.custom: dict[str, str] = {}  # custom domain -> subdomain (`custom_domains=`)
        self.custom_owner: dict[str, str] = {}  # custom domain -> the workspace that claimed it first

    def domain_conflicts(self, workspace: str, domains: list[str]) -> list[str]:
        """The domains of `domains` that another workspace holds (a domain belongs to its first claimer)."""
        return [d for d in map(normal_domain, domains) if self.custom_owner.get(d, workspace) != workspace]

    def claim_domain(self, workspace: str, domain: str, subdomain: str) -> None:
        domain = normal_domain(domain)
        self.custom[domain] = subdomain
        self.custom_owner[domain] = workspace

    def release_domain(self, domain: str, subdomain: str) -> None:
        """Let go of `domain` if it still routes to `subdomain` (a newer version may have taken it over)."""
        domain = normal_domain(domain)
        if self.custom.get(domain) == subdomain:
            del self.custom[domain]
            self.custom_owner.pop(domain, None)

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
