"""`sampan container list|logs|exec|stop` and `sampan shell`: what the running servers' containers are
doing, and a way in."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import sys
from typing import Any

import click
from rich.table import Table

from ..api import ControlClient, Unreachable
from ..config import Settings, read_token
from ..exception import Error, NotFoundError
from ..registry import ServerInfo, running_servers
from ..sdk.sandbox import Sandbox
from . import output
from .client import Client, server_errors
from .shellrun import SHELL_PROMPT, ShellSession, container_environ


def _bearer(server: ServerInfo) -> str:
    """The caller's API token (SAMPAN_TOKEN_ID/SECRET or config.toml) where it has one, so it sees
    its own workspace; else the server's own token from the registry file (the local user's)."""
    token = read_token(Settings.from_env()) if server.kind == "server" else None
    return f"{token[0]}:{token[1]}" if token else server.token


def _api(server: ServerInfo) -> ControlClient:
    return ControlClient(server.control_url, _bearer(server))


def _all_containers(settings: Settings) -> list[tuple[ServerInfo, dict[str, Any]]]:
    rows = []
    for server in running_servers(settings.home):
        try:
            rows.extend((server, c) for c in _api(server).get("/v1/containers", timeout=10.0))
        except Error:
            continue
    return rows


@click.group()
def container() -> None:
    """Inspect the containers of running Sampan servers."""


@container.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_containers(as_json: bool) -> None:
    """List active containers: id, app, function, pool, state, in-flight requests, age (and node, on Ray)."""
    rows = _all_containers(Settings.from_env())
    if as_json:
        click.echo(json.dumps([c for _, c in rows], indent=2))
        return
    table = Table(title="Active containers")
    nodes = any(c.get("node") for _, c in rows)  # the Ray backend: which node each container runs on
    for name in ("Container ID", "App", "Function", "Pool", "State", "In flight", "Age", *(("Node",) if nodes else ())):
        table.add_column(name, no_wrap=name in ("Container ID", "Node"))
    for _, c in rows:
        table.add_row(c["id"], str(c["app"] or "-"), c["function"], c["pool"], c["state"], str(c["in_flight"]),
                      f"{c['age_s']:.0f} s", *((c.get("node") or "-",) if nodes else ()))
    output.print_table(table)


@container.command("logs")
@click.argument("container_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the container exits.")
@click.option("-n", "--tail", "tail", type=int, default=None, help="Only the last N lines.")
def container_logs(container_id: str, follow: bool, tail: int | None) -> None:
    """Print a container's output (stdout and stderr, in order)."""
    settings = Settings.from_env()
    query = "?" + "&".join(p for p in (f"n={tail}" if tail else "", "follow=1" if follow else "") if p)
    for server in running_servers(settings.home):
        try:
            lines = _api(server).stream_text(f"/v1/containers/{container_id}/logs{query}")
            first = next(lines, None)
        except (NotFoundError, Unreachable):
            continue
        except Error as exc:
            raise click.ClickException(str(exc)) from None
        for line in itertools.chain([first] if first is not None else [], lines):
            sys.stdout.write(line)
            sys.stdout.flush()
        return
    raise click.ClickException(f"No container {container_id} on any running Sampan server.")



def _owner(container_id: str) -> tuple[ServerInfo, dict[str, Any]]:
    for server, row in _all_containers(Settings.from_env()):
        if row["id"] == container_id:
            return server, row
    raise click.ClickException(f"No running container {container_id} (see `sampan container list`).")


@container.command("stop")
@click.argument("container_id")
@click.option("--graceful", is_flag=True, help="Let it finish the requests it holds first.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def container_stop(container_id: str, graceful: bool, yes: bool) -> None:
    """Stop a container (its pool starts another if it needs one)."""
    server, _ = _owner(container_id)
    if not yes:
        click.confirm(f"Stop container {container_id}?", abort=True)
    try:
        _api(server).post(f"/v1/containers/{container_id}/stop", {"graceful": graceful})
    except Error as exc:
        raise click.ClickException(str(exc)) from None
    output.console.print(f"[green]✓[/green] Stopped container {container_id}.")


@container.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("container_id")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--pty/--no-pty", default=None, help="Accepted for Modal compatibility (output is not a terminal).")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds before the command is ended.")
def container_exec(container_id: str, command: tuple[str, ...], pty: bool | None, timeout: float) -> None:
    """Run a command in a running container, as its root, in its filesystem; exits with its status."""
    server, _ = _owner(container_id)
    argv = list(command[1:] if command and command[0] == "--" else command)
    try:
        result = _api(server).post(f"/v1/containers/{container_id}/exec", {"argv": argv, "timeout": timeout},
                                   timeout=timeout + 30)
    except Error as exc:
        raise click.ClickException(str(exc)) from None
    sys.stdout.buffer.write(base64.b64decode(result["stdout"]))
    sys.stdout.flush()
    sys.stderr.buffer.write(base64.b64decode(result["stderr"]))
    sys.exit(int(result["code"] or 0))


@click.command()
@click.argument("target")
@click.option("-c", "--cmd", default="/bin/sh", show_default=True, help="The command to run (a shell).")
def shell(target: str, cmd: str) -> None:
    """An interactive shell in a container: a running one (`ta-...`, or a Sandbox's `sb-...`), or a new
    container of a function (`app.py::fn`, in its image, with its secrets and Volumes; the app stops when
    the shell exits).

    A Sandbox's shell, on a terminal, is a process of its own with a PTY (`Sandbox.exec(..., pty=True)`
    and `attach()`, through the control API, from anywhere); otherwise the shell enters the container's
    namespaces, so it runs on the server's machine as root (the container's root is still an unprivileged
    host uid)."""
    if not target.startswith(("ta-", "sb-")):
        ref, _, function = target.partition("::")
        session = ShellSession(ref, function or None, cmd, Settings.from_env())
        sys.exit(asyncio.run(session.run()))
    if target.startswith("sb-") and sys.stdin.isatty():
        client = Client.connect(Settings.from_env())
        os.environ.setdefault("SAMPAN_SERVER_URL", client.server.control_url)
        os.environ.setdefault("SAMPAN_SERVER_TOKEN", client.token)
        with server_errors():
            process = Sandbox.from_id(target).exec("/bin/sh", "-c", SHELL_PROMPT.format(cmd=cmd), pty=True)
            process.attach()
        sys.exit(process.returncode)
    _, row = _owner(target)
    if row.get("pid") is None:
        raise click.ClickException("`sampan shell` needs a sandboxed container (see `sampan server status`).")
    if os.geteuid() != 0:
        raise click.ClickException("`sampan shell` enters the container's namespaces and must run as root on the "
                                   "server's machine; use `sampan container exec ID -- CMD` elsewhere.")
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        raise click.ClickException("nsenter is not installed (Debian package util-linux).")
    os.execve(nsenter, [nsenter, "--target", str(row["pid"]), "--all", "--root", "--wd", "/bin/sh", "-c",
                        SHELL_PROMPT.format(cmd=cmd)], container_environ(int(row["pid"])))
