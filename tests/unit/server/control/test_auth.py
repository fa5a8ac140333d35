"""Who a bearer token speaks for (server/control/auth.py): container tokens are checked every time, also
after the server has remembered a workspace's token (a forged or borrowed one is no token)."""

from __future__ import annotations

from pathlib import Path

from sampan.server.control.auth import Credentials, authenticate
from sampan.server.store import Store


def bearer(token: str) -> bytes:
    return b"Bearer " + token.encode()


def test_a_container_token_speaks_for_its_workspace_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    credentials = Credentials()
    alice = credentials.container_token("alice")
    for _ in range(2):  # the second time from what the server remembers
        assert authenticate(bearer(alice), credentials, store, "local").name == "alice"
    mac = alice.rpartition(".")[2]
    assert authenticate(bearer(f"ct-bob.{mac}"), credentials, store, "local") is None, "alice's mac for bob"
    assert authenticate(bearer(alice[:-1] + ("0" if alice[-1] != "0" else "1")), credentials, store,
                        "local") is None, "one character changed"
    assert authenticate(bearer(Credentials().container_token("alice")), credentials, store, "local") is None, \
        "signed by another server's secret"
    assert authenticate(bearer("ct-.abc"), credentials, store, "local") is None
    assert authenticate("Bearer ct-älice.x".encode(), credentials, store, "local") is None
    assert authenticate(b"", credentials, store, "local") is None


def test_what_the_server_remembers_is_bounded(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    credentials = Credentials()
    for i in range(10_050):
        credentials.container_token(f"ws{i}")
    assert len(credentials._signed) <= 10_000
    assert authenticate(bearer(credentials.container_token("ws1")), credentials, store, "local").name == "ws1"
    assert store.workspace("ws1") is store.workspace("ws1"), "a workspace's row is read once"
