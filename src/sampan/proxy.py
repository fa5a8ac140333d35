"""`modal.Proxy`: a static outbound IP for containers. There is none to give on a self-hosted server:
containers connect out from this machine's own address. `Proxy.from_name` is accepted, and `proxy=`
is reported once as not honoured."""

from __future__ import annotations

from typing import Any


class Proxy:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Proxy.from_name({self.name!r})"

    @staticmethod
    def from_name(name: str, *, environment_name: str | None = None, client: Any = None) -> Proxy:
        return Proxy(name)


__all__ = ["Proxy"]
