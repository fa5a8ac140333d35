"""`sampan app list|stop|logs|history|rollback|requests|stats`: apps on the Sampan server."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import click
from rich.table import Table

from ..api import path
from ..config import Settings
from . import output
from .client import Client, server_errors


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
@click.option("--function", "function", default=None, help="Only this function's containers (its name).")
@click.option("--function-call", "function_call", default=None,
              help="Only the lines printed while running this function call (fc-...).")
def logs(name: str, follow: bool, tail: int | None, since: str | None, until: str | None, search: str | None,
         source: str | None, function: str | None, function_call: str | None) -> None:
    """Print the output of an app's containers."""
    params = [f"{key}={quote(value, safe='')}" for key, value in (("function", function),
                                                                  ("function_call", function_call)) if value]
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


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"


@app.command("requests")
@click.argument("app_name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing requests as they come.")
@click.option("--status", default=None, help="Only these statuses: 5xx, 404, 4xx,5xx.")
@click.option("--since", default=None, help="Only requests since: 10m, 2h, 1d, or an ISO time.")
@click.option("-n", "--tail", "tail", type=int, default=100, show_default=True, help="At most the last N.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per request.")
def requests_(app_name: str, follow: bool, status: str | None, since: str | None, tail: int, as_json: bool) -> None:
    """Requests through the gateway to an app: time, function, method, path, status, duration, queue wait,
    cold start, container."""
    query: dict[str, str] = {"n": str(max(tail, 0))}
    if status:
        query["status"] = status
    if since:
        query["since"] = str(point_in_time(since, time.time()))
    if follow:
        query["follow"] = "1"
    client = Client.connect(Settings.from_env())
    with server_errors():
        for r in client.api.stream_json("GET", path("v1", "apps", app_name, "requests", query=query)):
            if as_json:
                click.echo(json.dumps(r))
                continue
            cold = " cold" if r["cold"] else ""
            line = (f"{_when(r['time'])} {r['function']:<20} {r['method']:<6} {r['status']} "
                    f"{_ms(r['duration_ms']):>9} queue {_ms(r['queue_ms'])}{cold} {r['container'] or '-'} "
                    f"{r['path']}")
            output.console.print(line, markup=False, highlight=False, soft_wrap=True,
                                 style="red" if r["status"] >= 500 else None)


@app.command("stats")
@click.argument("app_name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(app_name: str, as_json: bool) -> None:
    """Per function of an app: requests, 5xx errors, latency p50/p95/p99, queue wait p95, cold starts."""
    found = Client.connect(Settings.from_env()).get(path("v1", "apps", app_name, "stats"))
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table(title=f"App {app_name}: requests since the server started")
    for column in ("Function", "Requests", "5xx", "p50", "p95", "p99", "Queue p95", "Cold starts"):
        table.add_column(column)

    def bound(seconds: float | None) -> str:
        return "-" if seconds is None else ("> 150 s" if seconds == float("inf") else f"≤ {_ms(seconds * 1000)}")

    for name, s in found["functions"].items():
        table.add_row(name, str(s["requests"]), str(s["errors_5xx"]), bound(s["latency_p50_s"]),
                      bound(s["latency_p95_s"]), bound(s["latency_p99_s"]), bound(s["queue_p95_s"]),
                      str(s["cold_starts"]))
    output.print_table(table)
