"""Sticky sessions of `@modal.sessioned()` servers: a session binds its token to one container until it
has been idle `idle_timeout` seconds or is terminated; a container holding a live session is never
scaled down. Pure: a table and a clock, no I/O (the pool and the gateway use it)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

MAX_SESSIONS = 10_000  # per pool: a client may not mint them without bound
MAX_IDLE_TIMEOUT = 24 * 3600


@dataclass
class Session:
    id: str
    token: str
    container: str
    idle_timeout: float
    last_used: float


class SessionTable:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.by_token: dict[str, Session] = {}

    def start(self, container: str, idle_timeout: float) -> Session:
        self.expire()
        if len(self.by_token) >= MAX_SESSIONS:
            raise OverflowError(f"this server has {MAX_SESSIONS} live sessions")
        session = Session("se-" + secrets.token_hex(8), secrets.token_urlsafe(24), container,
                          float(min(idle_timeout, MAX_IDLE_TIMEOUT)), self.clock())
        self.by_token[session.token] = session
        return session

    def use(self, token: str) -> Session | None:
        """The live session of `token` (its idle time starts again), or None."""
        session = self.by_token.get(token)
        if session is None or self.clock() - session.last_used > session.idle_timeout:
            self.by_token.pop(token, None)
            return None
        session.last_used = self.clock()
        return session

    def terminate(self, token: str) -> bool:
        return self.by_token.pop(token, None) is not None

    def expire(self) -> None:
        now = self.clock()
        for token, s in list(self.by_token.items()):
            if now - s.last_used > s.idle_timeout:
                del self.by_token[token]

    def pinned(self) -> set[str]:
        """Containers that hold a live session (never scaled down)."""
        self.expire()
        return {s.container for s in self.by_token.values()}

    def drop_container(self, container: str) -> None:
        for token, s in list(self.by_token.items()):
            if s.container == container:
                del self.by_token[token]
