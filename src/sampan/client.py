"""`modal.Client`: the connection to the platform. Sampan's SDK finds its server by itself (in
containers from their environment, elsewhere from `$SAMPAN_HOME`), so a Client is only a value that
every `client=` keyword accepts."""

from __future__ import annotations

from typing import Any


class Client:
    def __init__(self, server_url: str | None = None, client_type: Any = None, credentials: Any = None,
                 *args: Any, **kwargs: Any) -> None:
        self.server_url = server_url
        self.credentials = credentials
        self._closed = False

    @classmethod
    def from_env(cls, *args: Any, **kwargs: Any) -> Client:
        return cls()

    @classmethod
    def from_credentials(cls, token_id: str, token_secret: str) -> Client:
        return cls(credentials=(token_id, token_secret))

    def close(self) -> None:
        self._closed = True

    def is_closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Client"]
