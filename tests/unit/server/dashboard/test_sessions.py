"""Dashboard sessions and login codes, on a fake clock."""

from __future__ import annotations

from sampan.server.dashboard import sessions
from sampan.server.dashboard.sessions import Sessions, csrf_ok, parse_cookies, session_cookie


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_names_its_workspace_until_it_expires() -> None:
    clock = Clock()
    book = Sessions(clock, ttl=60)
    session = book.open("alice")
    assert book.get(session.id) is session and session.workspace == "alice"
    clock.now += 59
    assert book.get(session.id) is session
    clock.now += 2
    assert book.get(session.id) is None and book.get(session.id) is None
    assert book.get("") is None and book.get(None) is None and book.get("forged") is None


def test_closing_a_session_logs_it_out() -> None:
    clock = Clock()
    book = Sessions(clock, ttl=60)
    assert not book.active()
    session = book.open("alice")
    assert book.active()
    book.close(session.id)
    assert book.get(session.id) is None and not book.active()
    book.open("bob")
    clock.now += 61
    assert not book.active()  # an expired session watches nothing


def test_a_login_code_works_once_and_only_within_its_minute() -> None:
    clock = Clock()
    book = Sessions(clock)
    code = book.login_code("alice")
    assert book.redeem(code) == "alice"
    assert book.redeem(code) is None
    late = book.login_code("bob")
    clock.now += sessions.CODE_TTL_S + 1
    assert book.redeem(late) is None
    assert book.redeem("made-up") is None


def test_the_tables_are_bounded(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(sessions, "MAX_SESSIONS", 3)
    monkeypatch.setattr(sessions, "MAX_CODES", 2)
    book = Sessions(Clock())
    opened = [book.open("alice") for _ in range(5)]
    assert [book.get(s.id) is not None for s in opened] == [False, False, True, True, True]
    codes = [book.login_code("alice") for _ in range(3)]
    assert book.redeem(codes[0]) is None and book.redeem(codes[2]) == "alice"


def test_csrf_tokens_are_compared_whole() -> None:
    session = Sessions(Clock()).open("alice")
    assert csrf_ok(session, session.csrf)
    assert not csrf_ok(session, None) and not csrf_ok(session, "") and not csrf_ok(session, session.csrf[:-1])


def test_cookies_are_parsed_and_set_strictly() -> None:
    assert parse_cookies('a=1; sampan_session="xyz"; a=2; junk') == {"a": "1", "sampan_session": "xyz"}
    cookie = session_cookie("abc", 60)
    assert cookie.startswith("sampan_session=abc;") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/dashboard" in cookie
