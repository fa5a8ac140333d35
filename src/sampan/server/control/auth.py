"""Who is calling: the bearer token of a request, checked once, names the caller's workspace.

Three kinds of token, tried in this order:
- `ct-<workspace>.<mac>`: a container's token, signed with this server's secret, so a container
  speaks for its own workspace only;
- the server's own random token (in its discovery file, mode 0600): the local user's workspace;
- `<token id>:<token secret>`: an API token from the store.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from ..store import Store, Workspace


class Credentials:
    """The server's secret and what it signs. Shared by the control API (which checks tokens and owns
    the address) and the app server (which gives each container its variables)."""

    def __init__(self, token: str | None = None, ca_pem: str = "") -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.url = ""  # the control API's address, once it listens
        self.ca_pem = ca_pem  # the control API's TLS certificate, which containers are told to trust
        self._signed: dict[str, str] = {}

    def container_token(self, workspace: str) -> str:
        """What a container of `workspace` uses to call functions and look them up: its workspace,
        signed with this server's secret, so that it cannot speak for another workspace."""
        signed = self._signed.get(workspace)
        if signed is None:  # the secret never changes: each workspace's token is computed once
            mac = hmac.new(self.token.encode(), workspace.encode(), "sha256").hexdigest()[:32]
            signed = f"ct-{workspace}.{mac}"
            if len(self._signed) >= 10_000:  # bounded: names come from requests
                self._signed.clear()
            self._signed[workspace] = signed
        return signed

    def call_env(self, workspace: str) -> dict[str, str]:
        """The variables that let a container of `workspace` reach this server (none before it listens)."""
        if not self.url:
            return {}
        env = {"SAMPAN_SERVER_URL": self.url, "SAMPAN_SERVER_TOKEN": self.container_token(workspace)}
        if self.ca_pem:
            env["SAMPAN_SERVER_CA_PEM"] = self.ca_pem
        return env


def authenticate(authorization: bytes, credentials: Credentials, store: Store | None,
                 local_workspace: str) -> Workspace | None:
    """The workspace an `Authorization` header speaks for, or None (a 401)."""
    if not authorization.startswith(b"Bearer "):
        return None
    try:
        token = authorization[7:].decode("ascii")  # compare_digest refuses other text; such a token is no token
    except UnicodeDecodeError:
        return None
    if token.startswith("ct-"):  # a container's token: the workspace of its app
        name, _, _mac = token[3:].rpartition(".")
        if not name or not hmac.compare_digest(token, credentials.container_token(name)):
            return None
        return workspace_named(store, name)
    if hmac.compare_digest(token, credentials.token):  # the registry file's token: the local user's workspace
        return workspace_named(store, local_workspace)
    if store is None:
        return None
    token_id, _, token_secret = token.partition(":")
    return store.authenticate(token_id, token_secret)


def workspace_named(store: Store | None, name: str) -> Any:
    """The workspace of that name (an embedded server's one workspace has no store row)."""
    return Workspace("embedded", name) if store is None else store.workspace(name)
