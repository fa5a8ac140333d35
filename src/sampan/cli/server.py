"""`sampan server start|stop|status`: the persistent server that `sampan deploy` publishes to."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time

import click

from ..config import Settings
from ..registry import running_servers
from ..server import daemon
from . import output
from .client import start_daemon


@click.group()
def server() -> None:
    """Run the persistent Sampan server (deployed apps live there)."""


@server.command("start")
@click.option("--foreground", is_flag=True, help="Run in this process (for systemd, containers, debugging).")
@click.option("--control-port", type=int, default=None, help="Port of the control API (default 8486, else any).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default=None,
              help="Where containers run: local processes (default) or a Ray cluster (also SAMPAN_BACKEND).")
@click.option("--ray-address", default=None, help="The Ray cluster to join, as `ray start` prints it "
              "(also SAMPAN_RAY_ADDRESS; default: auto).")
@click.option("--ray-placement", type=click.Choice(["spread", "pack"]), default=None,
              help="Ray backend: spread a function's containers over the nodes (default) or pack them "
                   "(also SAMPAN_RAY_PLACEMENT).")
@click.option("--ray-volumes", type=click.Choice(["sync", "shared"]), default=None,
              help="Ray backend: Volumes reach nodes through this server, synced on commit()/reload() "
                   "(default), or 'shared': a filesystem every node mounts at this server's path "
                   "(also SAMPAN_RAY_VOLUMES).")
@click.option("--control-host", default=None,
              help="Address the control API (and dashboard) listens on (default 127.0.0.1; also SAMPAN_CONTROL_HOST). "
                   "Beyond loopback, give it TLS (SAMPAN_TLS_CERT, SAMPAN_TLS_KEY) and the URL others reach it at "
                   "(SAMPAN_CONTROL_URL).")
def start(foreground: bool, control_port: int | None, backend: str | None, ray_address: str | None,
          ray_placement: str | None, ray_volumes: str | None, control_host: str | None) -> None:
    """Start the server: as a daemon that returns once ready, logging to $SAMPAN_HOME/server.log."""
    # The daemon reads these from its environment.
    for variable, value in (("SAMPAN_CONTROL_HOST", control_host), ("SAMPAN_RAY_PLACEMENT", ray_placement),
                            ("SAMPAN_RAY_VOLUMES", ray_volumes)):
        if value:
            os.environ[variable] = value
    settings = Settings.from_env()
    settings = dataclasses.replace(settings, backend=backend or settings.backend,
                                   ray_address=ray_address or settings.ray_address)
    existing = [s for s in running_servers(settings.home) if s.kind == "server"]
    if existing:
        output.console.print(f"[green]✓[/green] A Sampan server is already running (pid {existing[0].pid}).")
        return
    if foreground:
        sys.exit(daemon.main(settings, control_port if control_port is not None else daemon.DEFAULT_CONTROL_PORT))
    args = [*(["--backend", backend] if backend else []), *(["--ray-address", ray_address] if ray_address else []),
            *(["--control-port", str(control_port)] if control_port is not None else [])]
    info = start_daemon(settings, args)
    output.console.print(f"[green]✓[/green] Sampan server started (pid {info.pid}), control API {info.control_url}.")
    if info.runtime.startswith("process"):
        output.err_console.print(f"⚠ Containers run on the process runtime ({info.runtime}): they are not "
                                 "isolated from this machine or each other (docs/security.md).",
                                 style="yellow", markup=False)
    elif info.runtime:
        output.console.print(f"  Containers: {info.runtime}", markup=False)
    output.console.print(f"  Logs: {settings.home / 'server.log'}")
    output.console.print(f"  Dashboard: {info.control_url}/dashboard/ (sampan dashboard logs in)")
    if settings.control_host not in ("127.0.0.1", "localhost", "::1") and settings.tls_cert is None:
        output.err_console.print(f"⚠ The control API listens on {settings.control_host} without TLS: tokens cross "
                                 "the network in clear text (set SAMPAN_TLS_CERT and SAMPAN_TLS_KEY).",
                                 style="yellow", markup=False)


@server.command("stop")
@click.option("--timeout", type=float, default=60.0, help="Seconds to wait for containers to finish.")
def stop(timeout: float) -> None:
    """Stop the server; deployed apps come back on the next start."""
    settings = Settings.from_env()
    servers = [s for s in running_servers(settings.home) if s.kind == "server"]
    if not servers:
        output.console.print("No Sampan server is running.")
        return
    pid = servers[0].pid
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            output.console.print(f"[green]✓[/green] Sampan server stopped (pid {pid}).")
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    output.console.print(f"[yellow]⚠[/yellow] The server did not stop in {timeout:.0f} s; killed pid {pid}.")


@server.command("status")
def status() -> None:
    """Show whether a server runs, and where."""
    settings = Settings.from_env()
    servers = running_servers(settings.home)
    if not servers:
        output.console.print("No Sampan server is running.")
        sys.exit(1)
    for s in servers:
        kind = "persistent server" if s.kind == "server" else "embedded (sampan serve)"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.started_at))
        output.console.print(f"● {kind}: pid {s.pid}, control API {s.control_url}, since {since}")
        if s.runtime:
            style = "yellow" if s.runtime.startswith("process") else "dim"
            output.console.print(f"  containers: {s.runtime}", style=style, markup=False)
