"""`sampan app list|stop|logs|history|rollback`: deployed apps on the persistent server."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import click
from rich.table import Table

from ..config import Settings
from . import output
from .client import Client


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


@click.group()
def app() -> None:
    """Manage deployed apps."""


@app.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_apps(as_json: bool) -> None:
    """List apps: name, id, state, version, containers, created."""
    apps = Client.connect(Settings.from_env()).get("/v1/apps")
    if as_json:
        click.echo(json.dumps(apps, indent=2))
        return
    table = Table(title="Apps")
    for column in ("App ID", "Name", "State", "Version", "Containers", "Created at", "Stopped at"):
        table.add_column(column)
    for a in apps:
        table.add_row(a["id"], a["name"] or "-", a["state"], str(a["version"] or "-"), str(a["containers"]),
                      _when(a["created_at"]), _when(a["stopped_at"]))
    output.print_table(table)
    for a in apps:
        for sched in a.get("schedules") or []:
            output.console.print(f"  {a['name']}.{sched['function']}: {sched['schedule']}; next run "
                                 f"{_when(sched['next_run'])}", markup=False)


@app.command("stop")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def stop(name: str, yes: bool) -> None:
    """Stop a deployed app: its URLs answer 404 'app for invoked web endpoint is stopped'."""
    client = Client.connect(Settings.from_env())
    if not yes:
        apps = {a["name"]: a for a in client.get("/v1/apps")}
        running = apps.get(name, {}).get("containers", 0)
        click.confirm(f"Are you sure you want to stop App '{name}'? This will immediately terminate {running} "
                      "running containers.", abort=True)
    client.post(f"/v1/apps/{quote(name)}/stop")
    output.console.print(f"[green]✓[/green] App {name} stopped.")


@app.command("logs")
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new lines.")
@click.option("-n", "--tail", type=int, default=None, help="Only the last N lines.")
@click.option("--since", type=float, default=None, help="Only lines from the last N seconds.")
def logs(name: str, follow: bool, tail: int | None, since: float | None) -> None:
    """Print the output of an app's containers."""
    params = []
    if follow:
        params.append("follow=1")
    if tail:
        params.append(f"n={tail}")
    if since is not None:
        params.append(f"since={time.time() - since}")
    query = "?" + "&".join(params) if params else ""
    for line in Client.connect(Settings.from_env()).stream_text(f"/v1/apps/{quote(name)}/logs{query}"):
        click.echo(line, nl=False)


@app.command("history")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def history(name: str, as_json: bool) -> None:
    """List an app's versions and what happened to it."""
    data = Client.connect(Settings.from_env()).get(f"/v1/apps/{quote(name)}/history")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"History of {data['app']}")
    for column in ("Version", "Tag", "Deployed at", "Bundle", ""):
        table.add_column(column)
    for v in data["versions"]:
        table.add_row(str(v["version"]), v["tag"] or "-", _when(v["created_at"]), v["bundle"],
                      "← current" if v["version"] == data["current"] else "")
    output.print_table(table)


@app.command("rollback")
@click.argument("name")
@click.argument("version", type=int, required=False)
def rollback(name: str, version: int | None) -> None:
    """Serve an earlier version again (the previous one by default)."""
    body = {"version": version} if version is not None else {}
    result = Client.connect(Settings.from_env()).post(f"/v1/apps/{quote(name)}/rollback", body)
    output.print_created_dicts(result["endpoints"], [])
    output.console.print(f"[green]✓[/green] App {name} rolled back to version {result['version']}.")
