"""Who is looking at the dashboard: cookie sessions opened with a workspace token, and the one-time
login codes that `sampan dashboard` opens the browser with. Pure bookkeeping over a clock.

A session id is the cookie (HttpOnly, SameSite=Strict); each session also has a CSRF token that every
form and htmx request sends back, so a page of another site cannot act for a logged-in user. Both
tables are bounded: the oldest session or code goes first.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

SESSION_TTL_S = 12 * 3600.0
CODE_TTL_S = 60.0
MAX_SESSIONS = 10_000
MAX_CODES = 1_000
COOKIE = "sampan_session"


@dataclass
class Session:
    id: str
    workspace: str
    csrf: str
    expires: float


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.time, ttl: float = SESSION_TTL_S) -> None:
        self.clock = clock
        self.ttl = ttl
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._codes: OrderedDict[str, tuple[str, float]] = OrderedDict()  # code -> (workspace, expires)

    def open(self, workspace: str) -> Session:
        session = Session(secrets.token_urlsafe(32), workspace, secrets.token_urlsafe(24), self.clock() + self.ttl)
        self._sessions[session.id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this cookie, or None (unknown or expired: a login again)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires <= self.clock():
            del self._sessions[session_id]
            return None
        return session

    def active(self) -> bool:
        """Whether any session has not expired (someone may be looking)."""
        now = self.clock()
        return any(s.expires > now for s in self._sessions.values())

    def close(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def login_code(self, workspace: str) -> str:
        """A code that opens one session of `workspace`, once, within a minute (`sampan dashboard`)."""
        code = secrets.token_urlsafe(24)
        self._codes[code] = (workspace, self.clock() + CODE_TTL_S)
        while len(self._codes) > MAX_CODES:
            self._codes.popitem(last=False)
        return code

    def redeem(self, code: str) -> str | None:
        """The workspace of a login code, which is used up; None for an unknown, used or stale one."""
        found = self._codes.pop(code, None)
        if found is None or found[1] <= self.clock():
            return None
        return found[0]


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf.encode(), (sent or "").encode())


def parse_cookies(header: str) -> dict[str, str]:
    """`a=1; b=2` -> {"a": "1", "b": "2"} (the first of a repeated name wins, as browsers send the most
    specific first)."""
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in out:
            out[name] = value.strip().strip('"')
    return out


def session_cookie(session_id: str, max_age: int) -> str:
    return f"{COOKIE}={session_id}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={max_age}"
