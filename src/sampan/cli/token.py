"""`sampan token new|info`: API tokens for the control API, one workspace each."""

from __future__ import annotations

import json
import os

import click

from ..config import Settings, config_path, read_token
from ..naming import slugify
from ..server.store import Store
from . import output
from .client import Client


@click.group()
def token() -> None:
    """Manage API tokens."""


@token.command("new")
@click.option("--activate/--no-activate", default=None,
              help="Write it to $SAMPAN_HOME/config.toml (the default, except with --workspace: a token made "
                   "for another workspace never replaces your own unless you ask).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the secret is shown once).")
@click.option("--workspace", "workspace_name", default=None,
              help="Create the token for this workspace (created if new). Needs direct access to the server's "
                   "$SAMPAN_HOME: this is the administrator's way to hand out workspaces.")
def new(activate: bool | None, as_json: bool, workspace_name: str | None) -> None:
    """Create a new token for the current token's workspace (or, as the administrator, for another)."""
    settings = Settings.from_env()
    if activate is None:
        activate = workspace_name is None
    if workspace_name is not None:
        store = Store(settings.home)
        ws = store.workspace(slugify(workspace_name))
        token_id, secret = store.create_token(ws)
        store.close()
        data = {"token_id": token_id, "token_secret": secret, "workspace": ws.name}
    else:
        data = Client.connect(settings).post("/v1/tokens")
    if activate:
        path = config_path(settings)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f'[default]\nworkspace = "{data["workspace"]}"\ntoken_id = "{data["token_id"]}"\n'
                     f'token_secret = "{data["token_secret"]}"\n')
    if as_json:
        click.echo(json.dumps(data))
        return
    output.console.print(f"[green]✓[/green] Token {data['token_id']} for workspace {data['workspace']}.")
    output.console.print(f"  Secret (shown once): {data['token_secret']}")
    if activate:
        output.console.print(f"  Saved to {config_path(settings)}.")


@token.command("info")
def info() -> None:
    """Show which token and workspace the CLI uses."""
    settings = Settings.from_env()
    current = read_token(settings)
    if current is None:
        raise click.ClickException("No token configured.")
    health = Client.connect(settings).get("/v1/health")
    output.console.print(f"Token {current[0]} → workspace {health['workspace']}")
