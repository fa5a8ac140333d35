"""`sampan dashboard`: open the server's web dashboard in a browser, already logged in.

The control API hands out a one-time login link for the caller's workspace (it works once, within a
minute); the browser that opens it gets a cookie session. Where no browser can be opened (a server
over SSH), the link is printed to paste instead.
"""

from __future__ import annotations

import json
import webbrowser

import click

from ..config import Settings
from . import output
from .client import Client


@click.command("dashboard")
@click.option("--no-browser", is_flag=True, help="Print the login link instead of opening a browser.")
@click.option("--json", "as_json", is_flag=True, help="Print the link as JSON.")
def dashboard(no_browser: bool, as_json: bool) -> None:
    """Open the web dashboard of the running server (or `sampan serve` session), logged in."""
    client = Client.connect(Settings.from_env())
    found = client.post("/v1/dashboard/login")
    if as_json:
        click.echo(json.dumps(found))
        return
    opened = False
    if not no_browser:
        try:
            opened = webbrowser.open(found["url"])
        except webbrowser.Error:
            opened = False
    if opened:
        output.console.print(f"[green]✓[/green] Opened the dashboard: {found['dashboard']}")
    else:
        output.console.print("Open this link to log in to the dashboard (it works once, within a minute):")
        output.console.print(found["url"], markup=False, soft_wrap=True)
