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


def point_in_time(text: str, now: float) -> float:
    """`--since`/`--until`: an ISO date or time (local time unless it says otherwise), or a while ago:
    `90` or `90s`, `15m`, `2h`, `1d`, `1w`. Raises click.BadParameter."""
    import datetime as dt

    value = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        if value and value[-1].lower() in units and value[:-1].replace(".", "", 1).isdigit():
            return now - float(value[:-1]) * units[value[-1].lower()]
        if value.replace(".", "", 1).isdigit():
            return now - float(value)
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected an ISO time such as 2026-12-01T09:00, or 30s, 15m, 2h, 1d"
                                 ) from None
    return parsed.timestamp()


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
@click.option("--since", default=None, help="Only lines since: an ISO time, or 30s/15m/2h/1d ago (or seconds).")
@click.option("--until", default=None, help="Only lines until: an ISO time, or 30s/15m/2h/1d ago.")
@click.option("--search", default=None, help="Only lines containing this text.")
@click.option("-s", "--source", type=click.Choice(["stdout", "stderr"]), default=None, help="Only this stream.")
def logs(name: str, follow: bool, tail: int | None, since: str | None, until: str | None, search: str | None,
         source: str | None) -> None:
    """Print the output of an app's containers."""
    params = []
    if follow:
        params.append("follow=1")
    if tail:
        params.append(f"n={tail}")
    now = time.time()
    if since is not None:
        params.append(f"since={point_in_time(since, now)}")
    if until is not None:
        params.append(f"until={point_in_time(until, now)}")
    if search:
        params.append("search=" + quote(search, safe=""))
    if source:
        params.append(f"source={source}")
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
