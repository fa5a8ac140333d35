"""`sampan workspace proxy-tokens create|list|delete`: tokens for `requires_proxy_auth` endpoints."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import click
from rich.table import Table

from ..config import Settings
from . import output
from .client import Client


@click.group()
def workspace() -> None:
    """Workspace settings."""


@workspace.group("proxy-tokens")
def proxy_tokens() -> None:
    """Proxy auth tokens: send them as Modal-Key/Modal-Secret, or Authorization: Bearer <id>.<secret>."""


@proxy_tokens.command("create")
@click.option("--name", default="", help="A name to recognise the token by.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (token_id, token_secret).")
def create(name: str, as_json: bool) -> None:
    """Create a proxy auth token; its secret is shown once."""
    data = Client.connect(Settings.from_env(), start=True).post("/v1/proxy-tokens", {"name": name})
    if as_json:
        click.echo(json.dumps(data))
        return
    output.console.print(f"[green]✓[/green] Created proxy auth token {data['token_id']}.")
    output.console.print(f"  Modal-Key: {data['token_id']}\n  Modal-Secret: {data['token_secret']} (shown once)")
    output.console.print(f"  or Authorization: Bearer {data['token_id']}.{data['token_secret']}")


@proxy_tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_tokens(as_json: bool) -> None:
    """List proxy auth tokens (never their secrets)."""
    items = Client.connect(Settings.from_env(), start=True).get("/v1/proxy-tokens")
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    table = Table(title="Proxy auth tokens")
    for column in ("Token ID", "Name", "Created at"):
        table.add_column(column)
    for t in items:
        table.add_row(t["token_id"], t["name"] or "-", time.strftime("%Y-%m-%d %H:%M", time.localtime(t["created_at"])))
    output.print_table(table)


@proxy_tokens.command("delete")
@click.argument("token_id")
def delete(token_id: str) -> None:
    """Delete a proxy auth token: requests using it get 401 at once."""
    Client.connect(Settings.from_env(), start=True).delete(f"/v1/proxy-tokens/{quote(token_id)}")
    output.console.print(f"[green]✓[/green] Deleted proxy auth token {token_id}.")
