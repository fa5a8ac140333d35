"""The CLI's side of the control API: find the running server, send JSON, read JSON or streams."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..api import ControlClient, Unreachable
from ..config import Settings, active_profile, private_home, read_token
from ..exception import Error
from ..registry import ServerInfo, running_servers


class ServerError(click.ClickException):
    """The server answered with an error; the message is the server's."""


@contextmanager
def server_errors() -> Iterator[None]:
    """A control API error (sampan/api.py) as the CLI shows it: `Error: <the server's message>`."""
    try:
        yield
    except Unreachable as exc:
        raise click.ClickException(str(exc)) from None
    except Error as exc:
        raise ServerError(str(exc)) from None


class Client:
    """The control API client (sampan/api.py) of one server, with its errors as click's."""

    def __init__(self, server: ServerInfo, token: str) -> None:
        self.server = server
        self.token = token
        self.api = ControlClient(server.control_url, token)

    @classmethod
    def connect(cls, settings: Settings, start: bool = False, serve_ok: bool = True) -> Client:
        """The running persistent server of this SAMPAN_HOME (started first with `start=True`). Where none
        runs but a `sampan serve` session does, its server answers (`serve_ok`: volumes, secrets, tokens
        of the local workspace), with the session's own token: starting a daemon beside it could not
        get its ports."""
        profile = active_profile(settings)
        if profile.get("server_url") and not os.environ.get("SAMPAN_TOKEN_ID"):  # a profile for another server
            token = read_token(settings)
            if token is None:
                raise click.ClickException(f"The active profile names server {profile['server_url']} but no token.")
            remote = ServerInfo("profile", 0, str(profile["server_url"]).rstrip("/"), "", "server", 0.0)
            return cls(remote, f"{token[0]}:{token[1]}")
        running = running_servers(settings.home)
        found = [s for s in running if s.kind == "server"]
        serving = [s for s in running if s.kind == "serve" and s.token]
        if not found and serving and serve_ok:
            return cls(serving[0], serving[0].token)
        if not found and serving and start:
            raise click.ClickException(
                "Only a `sampan serve` session runs for this SAMPAN_HOME, and this needs the persistent server: "
                "stop the session or run `sampan server start` first.")
        if not found and start:
            start_daemon(settings)
            found = [s for s in running_servers(settings.home) if s.kind == "server"]
        if not found:
            raise click.ClickException("No Sampan server is running. Start one with `sampan server start`.")
        token = read_token(settings)
        if token is None:
            raise click.ClickException(
                f"No API token: set SAMPAN_TOKEN_ID and SAMPAN_TOKEN_SECRET, or run `sampan server start` once to "
                f"create {settings.home / 'config.toml'}."
            )
        return cls(found[0], f"{token[0]}:{token[1]}")

    def get(self, path: str, timeout: float | None = 30.0) -> Any:
        with server_errors():
            return self.api.get(path, timeout)

    def post(self, path: str, body: Any = None, timeout: float | None = 30.0) -> Any:
        with server_errors():
            return self.api.post(path, body, timeout)

    def delete(self, path: str) -> Any:
        with server_errors():
            return self.api.delete(path)

    def stream_json(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        with server_errors():
            yield from self.api.stream_json("POST", path, body)

    def stream_text(self, path: str) -> Iterator[str]:
        with server_errors():
            yield from self.api.stream_text(path)


def start_daemon(settings: Settings, args: list[str] | None = None, wait: float = 60.0) -> ServerInfo:
    """Start `sampan server start --foreground [args]` detached, logging to $SAMPAN_HOME/server.log."""
    private_home(settings.home)
    fd = os.open(settings.home / "server.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)  # containers' output of every workspace
    log = os.fdopen(fd, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sampan", "server", "start", "--foreground", *(args or [])],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log.close()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for server in running_servers(settings.home):
            if server.kind == "server" and server.pid == proc.pid:
                if _healthy(server):
                    return server
        if proc.poll() is not None:
            tail = (settings.home / "server.log").read_text(errors="replace").splitlines()[-10:]
            raise click.ClickException("The Sampan server did not start:\n" + "\n".join(tail))
        time.sleep(0.1)
    raise click.ClickException(f"The Sampan server did not become ready within {wait:.0f} s; see "
                               f"{settings.home / 'server.log'}")


def _healthy(server: ServerInfo) -> bool:
    # Readiness is the registry file plus "ready" in the log; health needs no valid token for this check.
    try:
        ControlClient(server.control_url, "").get("/v1/health", timeout=2)
    except Unreachable:
        return False
    except Error:
        return True  # it answers (401): up
    return True
