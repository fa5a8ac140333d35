"""`sampan secret create|list|delete`: named secrets, encrypted at rest on the server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import click
from rich.table import Table

from ..config import Settings
from ..sdk.secret import _parse_dotenv
from . import output
from .client import Client


@click.group()
def secret() -> None:
    """Manage secrets (environment variables for containers)."""


@secret.command("create")
@click.argument("name")
@click.argument("pairs", nargs=-1)
@click.option("--from-dotenv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Read KEY=VALUE lines from a .env file.")
@click.option("--from-json", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Read a JSON object of strings.")
@click.option("--force", is_flag=True, help="Overwrite an existing secret.")
def create(name: str, pairs: tuple[str, ...], from_dotenv: Path | None, from_json: Path | None, force: bool) -> None:
    """Create a secret: sampan secret create NAME KEY=VALUE [KEY=VALUE...]"""
    values: dict[str, str] = {}
    if from_dotenv is not None:
        values.update(_parse_dotenv(from_dotenv))
    if from_json is not None:
        data = json.loads(from_json.read_text())
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise click.BadParameter("the JSON file must hold an object of strings", param_hint="--from-json")
        values.update(data)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"Each item must be of the form <KEY>=VALUE; got {pair!r}.")
        values[key] = value
    if not values:
        raise click.UsageError("No secret values: give KEY=VALUE pairs, --from-dotenv or --from-json.")
    client = Client.connect(Settings.from_env(), start=True)
    client.post("/v1/secrets", {"name": name, "values": values, "force": force})
    output.console.print(f"[green]✓[/green] Created secret '{name}' with keys {', '.join(sorted(values))}.")
    output.console.print(f"Use it in your app with modal.Secret.from_name({name!r}).")


@secret.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_secrets(as_json: bool) -> None:
    """List secrets: names and dates, never values."""
    items = Client.connect(Settings.from_env(), start=True).get("/v1/secrets")
    if as_json:
        click.echo(json.dumps([{k: v for k, v in s.items() if k != "keys"} for s in items], indent=2))
        return
    table = Table(title="Secrets")
    for column in ("Name", "Created at", "Updated at"):
        table.add_column(column)
    for s in items:
        table.add_row(s["name"], time.strftime("%Y-%m-%d %H:%M", time.localtime(s["created_at"])),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(s["updated_at"])))
    output.print_table(table)


@secret.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-missing", is_flag=True, help="Succeed when the secret does not exist.")
def delete(name: str, yes: bool, allow_missing: bool) -> None:
    """Delete a secret."""
    if not yes:
        click.confirm(f"Delete secret '{name}'?", abort=True)
    try:
        Client.connect(Settings.from_env(), start=True).delete(f"/v1/secrets/{quote(name)}")
    except click.ClickException:
        if not allow_missing:
            raise
    output.console.print(f"[green]✓[/green] Deleted secret '{name}'.")
