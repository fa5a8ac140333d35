"""`sampan container list|logs`: what the running servers' containers are doing."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

import click
from rich.table import Table

from ..config import Settings, read_token
from ..server.control import ServerInfo, running_servers
from . import output


def _bearer(server: ServerInfo) -> str:
    """The caller's API token (SAMPAN_TOKEN_ID/SECRET or config.toml) where it has one, so it sees
    its own workspace; else the server's own token from the registry file (the local user's)."""
    token = read_token(Settings.from_env()) if server.kind == "server" else None
    return f"{token[0]}:{token[1]}" if token else server.token


def _get(server: ServerInfo, path: str, timeout: float | None = 10.0) -> Any:
    request = urllib.request.Request(server.control_url + path, headers={"Authorization": f"Bearer {_bearer(server)}"})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - loopback control API


def _all_containers(settings: Settings) -> list[tuple[ServerInfo, dict[str, Any]]]:
    rows = []
    for server in running_servers(settings.home):
        try:
            with _get(server, "/v1/containers") as resp:
                rows.extend((server, c) for c in json.load(resp))
        except OSError:
            continue
    return rows


@click.group()
def container() -> None:
    """Inspect the containers of running Sampan servers."""


@container.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_containers(as_json: bool) -> None:
    """List active containers: id, app, function, pool, state, in-flight requests, age."""
    rows = _all_containers(Settings.from_env())
    if as_json:
        click.echo(json.dumps([c for _, c in rows], indent=2))
        return
    table = Table(title="Active containers")
    for name in ("Container ID", "App", "Function", "Pool", "State", "In flight", "Age"):
        table.add_column(name)
    for _, c in rows:
        table.add_row(c["id"], str(c["app"] or "-"), c["function"], c["pool"], c["state"], str(c["in_flight"]),
                      f"{c['age_s']:.0f} s")
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
            resp = _get(server, f"/v1/containers/{container_id}/logs{query}", timeout=None if follow else 10.0)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                continue
            raise click.ClickException(f"the server answered {exc.code}") from None
        except OSError:
            continue
        with resp:
            for line in resp:
                sys.stdout.write(line.decode(errors="replace"))
                sys.stdout.flush()
        return
    raise click.ClickException(f"No container {container_id} on any running Sampan server.")

