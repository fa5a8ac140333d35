"""The one client of the control API (server/control/), for the CLI, the SDK and containers.

A `ControlClient` sends JSON and reads JSON, NDJSON or text back; every error the server answers
becomes one of Modal's exceptions through one map (`error_for`), so `.remote()`, `Dict.from_name`
and `sampan app stop` say the same thing about the same answer. Where the server is:

- inside a container or `sampan run`: SAMPAN_SERVER_URL with SAMPAN_SERVER_TOKEN (the container's
  token of its workspace);
- else a server of $SAMPAN_HOME found by its discovery file (registry.py), with the API token of
  SAMPAN_TOKEN_ID/SAMPAN_TOKEN_SECRET or config.toml, or a `sampan serve` session's own token.

Requests go over httpclient.py's connections (socket and ssl imported on first use: `import sampan`
stays free of them).
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import httpclient
from .config import Settings, read_token
from .exception import (
    AlreadyExistsError,
    AuthError,
    Error,
    ExecutionError,
    InvalidError,
    NotFoundError,
    ResourceExhaustedError,
)
from .registry import running_servers

STATUS_ERRORS: dict[int, type[Error]] = {400: InvalidError, 401: AuthError, 404: NotFoundError,
                                         409: AlreadyExistsError, 429: ResourceExhaustedError}


def error_for(status: int, message: str) -> Error:
    """The exception for a control API answer: 400 invalid, 401 auth, 404 not found, 409 exists already,
    429 no room, else execution."""
    return STATUS_ERRORS.get(status, ExecutionError)(message)


class Unreachable(ExecutionError):
    """No server answered at the address (it stopped, or the address is wrong)."""


def _tls_context() -> Any:
    """The system's trust store (and SSL_CERT_FILE), plus the server's own certificate where it is known: a
    container's SAMPAN_SERVER_CA_PEM (a self-signed control API is trusted by its containers), or the
    server's SAMPAN_TLS_CERT on its own machine."""
    import ssl

    context = ssl.create_default_context()
    pem = os.environ.get("SAMPAN_SERVER_CA_PEM")
    if pem:
        context.load_verify_locations(cadata=pem)
    if os.environ.get("SAMPAN_TLS_CERT"):  # the server's own certificate, on its machine
        context.load_verify_locations(cafile=os.environ["SAMPAN_TLS_CERT"])
    return context


class ControlClient:
    """Requests to one server with one bearer token, over a kept-alive connection per thread (a
    `.map()` runs its calls in threads; a call then costs no new TCP connection). A request on a
    reused connection that the server had closed meanwhile (its idle timeout) is sent again on a new
    one: nothing of it reached the server."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token
        scheme, _, rest = self.url.partition("://")
        self._https = scheme == "https"
        self._hostport, slash, prefix = rest.partition("/")
        self._prefix = slash + prefix
        self._local = threading.local()
        self._kept: weakref.WeakSet[Any] = weakref.WeakSet()  # every kept connection, for close()

    def __repr__(self) -> str:
        return f"ControlClient({self.url!r})"

    def _send(self, method: str, target: str, data: bytes | None, headers: dict[str, str],
              timeout: float | None) -> tuple[Any, Any]:
        """(connection, response): on this thread's kept connection, else a new one."""
        kept = getattr(self._local, "conn", None)
        self._local.conn = None
        if kept is not None:
            try:
                kept.settimeout(timeout)
                return kept, kept.request(method, target, data, headers)
            except (httpclient.Closed, ConnectionResetError, BrokenPipeError):
                kept.close()  # closed by the server while idle: the request never reached it
        try:
            conn = httpclient.Connection(self._hostport, timeout, _tls_context() if self._https else None)
        except OSError as exc:
            raise Unreachable(f"Could not reach the Sampan server at {self.url}: {exc.strerror or exc}") from None
        try:
            return conn, conn.request(method, target, data, headers)
        except OSError as exc:
            conn.close()
            raise Unreachable(f"Could not reach the Sampan server at {self.url}: {exc.strerror or exc}") from None

    @contextmanager
    def request(self, method: str, path: str, body: Any = None, timeout: float | None = 30.0) -> Iterator[Any]:
        """The response (file-like: httpclient.Response) of a 2xx answer; raise `error_for` else."""
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn, resp = self._send(method, self._prefix + path, data, headers, timeout)
        reusable = False
        try:
            if resp.status >= 300:
                raw = resp.read()
                try:
                    message = json.loads(raw)["error"]
                except (ValueError, KeyError, TypeError):
                    message = f"the Sampan server answered {resp.status}"
                reusable = not resp.will_close
                raise error_for(resp.status, message)
            yield resp
            reusable = resp.isclosed() and not resp.will_close  # read to its end, and kept by the server
        finally:
            if reusable:
                self._local.conn = conn
                self._kept.add(conn)
            else:
                conn.close()

    def close(self) -> None:
        """Close the connections this client keeps (each thread's)."""
        for conn in list(self._kept):
            conn.close()
        self._local = threading.local()

    def call(self, method: str, path: str, body: Any = None, timeout: float | None = 30.0) -> Any:
        """One request, its JSON answer."""
        with self.request(method, path, body, timeout) as resp:
            return json.load(resp)

    def get(self, path: str, timeout: float | None = 30.0) -> Any:
        return self.call("GET", path, None, timeout)

    def post(self, path: str, body: Any = None, timeout: float | None = 30.0) -> Any:
        return self.call("POST", path, body if body is not None else {}, timeout)

    def delete(self, path: str, timeout: float | None = 30.0) -> Any:
        return self.call("DELETE", path, None, timeout)

    def stream_json(self, method: str, path: str, body: Any = None,
                    timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """An NDJSON answer, one event at a time as the server sends it (`timeout`: the longest silence,
        after which reading raises TimeoutError)."""
        with self.request(method, path, body, timeout=timeout) as resp:
            for line in resp:
                if line.strip():
                    yield json.loads(line)

    def stream_text(self, path: str) -> Iterator[str]:
        with self.request("GET", path, timeout=None) as resp:
            for line in resp:
                yield line.decode(errors="replace")


_CLIENTS: dict[tuple[str, str], ControlClient] = {}  # one per server and token: its kept connections


def client_for(url: str, token: str) -> ControlClient:
    """The process's client of this server and token (made once, so its connections are reused)."""
    found = _CLIENTS.get((url, token))
    if found is None:
        found = _CLIENTS[(url, token)] = ControlClient(url, token)
    return found


def default_client() -> ControlClient:
    """The server this process talks to: its container's, else one found in $SAMPAN_HOME."""
    url, token = os.environ.get("SAMPAN_SERVER_URL"), os.environ.get("SAMPAN_SERVER_TOKEN")
    if url and token:
        return client_for(url, token)
    settings = Settings.from_env()
    api_token = read_token(settings)
    if url is not None:
        if api_token is None:
            raise ExecutionError("No Sampan API token: set SAMPAN_TOKEN_ID and SAMPAN_TOKEN_SECRET.")
        return client_for(url, f"{api_token[0]}:{api_token[1]}")
    servers = running_servers(settings.home)
    persistent = [s for s in servers if s.kind == "server"]
    if persistent and api_token is not None:
        return client_for(persistent[0].control_url, f"{api_token[0]}:{api_token[1]}")
    if servers and servers[0].token:
        return client_for(servers[0].control_url, servers[0].token)
    if persistent:
        raise ExecutionError("No Sampan API token: set SAMPAN_TOKEN_ID and SAMPAN_TOKEN_SECRET.")
    raise ExecutionError("No Sampan server is running: start one with `sampan server start`.")


def path(*segments: str, query: dict[str, Any] | None = None) -> str:
    """`/seg/seg?k=v` with every segment and value quoted (names come from users)."""
    from urllib.parse import quote, urlencode

    out = "".join("/" + quote(str(s), safe="") for s in segments)
    return out + ("?" + urlencode(query) if query else "")
