"""The one place a Sampan server is put together (the composition root).

`sampan server start` (daemon.py), `sampan serve` (cli/serve.py) and the tests all build their
server here, from a `Settings`: the backend the settings name, the store, the app server with its
gateway, and the control API, each given its collaborators in its constructor. The wiring between
the app server and the control API is one object, `Credentials`: the control API signs container
tokens with it and fills in its address when it listens; the app server reads both when it gives a
container its variables.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import config, registry
from ..backends.base import Backend, get_backend
from ..config import Settings
from ..exception import InvalidError
from .apps import AppServer, ErrorFn, LogFn
from .control import ControlServer, Credentials
from .images.builder import build_on_node
from .store import Store
from .telemetry import Telemetry


def _discard(*_: object) -> None:
    return None


@dataclass
class Sinks:
    """Where the server's output goes: container log lines, start failures, warnings for a person."""

    log: LogFn = _discard
    start_error: ErrorFn = _discard
    warn: Callable[[str], None] | None = None


def make_backend(settings: Settings) -> Backend:
    """The backend `settings.backend` names (`--backend`, SAMPAN_BACKEND), with what it needs."""
    if settings.backend == "ray":
        return get_backend("ray", home=settings.home, address=settings.ray_address, build_image=build_on_node)
    return get_backend(settings.backend, home=settings.home)


def runtime_description(backend: Backend) -> str:
    """What a backend says of how its containers run (the local backend: sandbox or process)."""
    return str(getattr(backend, "runtime_description", backend.name))


def process_runtime_warning(backend: Backend) -> str | None:
    """The loud notice for a server whose containers are not isolated (or lack a tool), or None."""
    isolation = getattr(backend, "isolation", None)
    if getattr(backend, "sandboxed", True):
        if isolation is not None and isolation.slirp is None:
            return ("slirp4netns is not installed (Debian package `slirp4netns`): `web_server` containers "
                    "reach the platform but have no outbound network.")
        return None
    return (f"Containers run on the process runtime: {runtime_description(backend)}. They share this "
            "machine's filesystem, processes and ports, and can read the server's state. "
            "Do not serve untrusted code (docs/security.md).")


@dataclass
class Assembly:
    """A server, built and not yet started: `await start()`, `register()` it, `await close()` it."""

    settings: Settings
    backend: Backend
    store: Store | None
    server: AppServer
    control: ControlServer
    registration: Path | None = field(default=None)

    async def start(self, control_port_fallback: bool = True) -> None:
        """Start the gateway and the control API. The control API takes any free port when its
        requested one is taken (clients find it in the registry)."""
        await self.server.start()
        try:
            await self.control.start()
        except OSError:
            if not control_port_fallback or self.control.requested_port == 0:
                raise
            self.control.requested_port = 0
            await self.control.start()

    def register(self, kind: str) -> Path:
        """Publish this server's discovery file (registry.py): clients find it from now on."""
        self.registration = registry.write(self.settings.home, registry.ServerInfo(
            server_id=self.settings.server_id, pid=os.getpid(), control_url=self.control.url,
            token=self.control.token, kind=kind, started_at=time.time(),
            runtime=runtime_description(self.backend)))
        return self.registration

    def unregister(self) -> None:
        if self.registration is not None:
            self.registration.unlink(missing_ok=True)
            self.registration = None

    async def close(self) -> None:
        """Containers stop first: their lifespan shutdown and @exit hooks may still call the platform
        (a Dict, a Volume), so the control API closes only after them."""
        self.unregister()
        await self.server.close()
        await self.control.close()


def make_telemetry(warn: Callable[[str], None] | None) -> Telemetry | None:
    """OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set (and the `sampan[otel]` extra installed)."""
    if not config.otel_endpoint():
        return None
    try:
        return Telemetry.otlp()
    except ImportError:
        if warn is not None:
            warn('OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: '
                 'pip install "sampan[otel]" to export request spans and container logs.')
        return None


def assemble(settings: Settings, *, backend: Backend | None = None, store: Store | None = None,
             sinks: Sinks | None = None, stop_grace: float = 30.0, control_port: int = 0,
             telemetry: Telemetry | None = None) -> Assembly:
    """Build a server from its settings. `store=None` is a server without accounts (tests, `serve`
    without a home store); `backend=None` makes the one the settings name; `telemetry=None` exports
    over OTLP where the environment says so."""
    sinks = sinks or Sinks()
    backend = backend if backend is not None else make_backend(settings)
    credentials = Credentials(ca_pem=settings.tls_cert.read_text() if settings.tls_cert is not None else "")
    server = AppServer(settings, backend, sinks.log, sinks.start_error, warn=sinks.warn, stop_grace=stop_grace,
                       store=store, call_env=credentials.call_env,
                       telemetry=telemetry if telemetry is not None else make_telemetry(sinks.warn))
    control = ControlServer(server, credentials, host=settings.control_host, port=control_port,
                            tls=tls_context(settings), advertise=settings.control_url)
    return Assembly(settings, backend, store, server, control)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The control API's TLS (SAMPAN_TLS_CERT and SAMPAN_TLS_KEY, PEM files), or None for plain HTTP."""
    if settings.tls_cert is None and settings.tls_key is None:
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise InvalidError("TLS needs both SAMPAN_TLS_CERT and SAMPAN_TLS_KEY.")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context
