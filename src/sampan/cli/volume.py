"""`sampan volume create|list|ls|put|get|rm|delete`: volumes kept by the Sampan server."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from ..api import default_client
from ..config import Settings
from ..exception import Error
from ..sdk.volume import Volume, _Batch, upload_size
from . import output
from .client import Client


def _connect() -> None:
    """Make sure a server runs (starting one, as `sampan secret` does) and the SDK can reach it."""
    client = Client.connect(Settings.from_env(), start=True)
    os.environ.setdefault("SAMPAN_SERVER_URL", client.server.control_url)
    os.environ.setdefault("SAMPAN_SERVER_TOKEN", client.token)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    _connect()
    try:
        return fn(*args, **kwargs)
    except Error as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def volume() -> None:
    """Manage volumes (directories shared by containers)."""


@volume.command("create")
@click.argument("name")
def create(name: str) -> None:
    """Create a volume."""
    _call(Volume(name, create_if_missing=True).listdir, "/")
    output.console.print(f"[green]✓[/green] Created volume '{name}'.")


@volume.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_volumes(as_json: bool) -> None:
    """List the workspace's volumes."""
    rows = _call(lambda: default_client().get("/v1/volumes"))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Volumes")
    table.add_column("Name")
    table.add_column("Created at")
    for row in rows:
        table.add_row(row["name"], time.strftime("%Y-%m-%d %H:%M", time.localtime(row["created_at"])))
    output.print_table(table)


@volume.command("ls")
@click.argument("name")
@click.argument("path", default="/")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def ls(name: str, path: str, as_json: bool) -> None:
    """List files in a volume."""
    entries = _call(Volume(name).listdir, path)
    if as_json:
        click.echo(json.dumps([e.__dict__ for e in entries], indent=2))
        return
    table = Table(title=f"{name}:{path}")
    for column in ("Path", "Type", "Size"):
        table.add_column(column)
    for e in entries:
        table.add_row(e.path, e.type, str(e.size) if e.type == "file" else "")
    output.print_table(table)


@volume.command("put")
@click.argument("name")
@click.argument("local_path", type=click.Path(exists=True, path_type=Path))
@click.argument("remote_path", default="/")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing files.")
def put(name: str, local_path: Path, remote_path: str, force: bool) -> None:
    """Upload a file or a directory into a volume."""
    vol = Volume(name)
    batch = _Batch()
    if local_path.is_dir():
        batch.put_directory(local_path, remote_path)
    else:
        batch.put_file(local_path, remote_path.rstrip("/") + "/" + local_path.name if remote_path.endswith("/")
                       else remote_path)
    with output.transfer(f"Uploading {local_path.name}", upload_size(batch.files)) as advance:
        _call(vol._upload, batch.files, force, advance)
    output.console.print(f"[green]✓[/green] Uploaded {local_path} to {name}:{remote_path}")


@volume.command("get")
@click.argument("name")
@click.argument("remote_path")
@click.argument("local_path", default="-")
def get(name: str, remote_path: str, local_path: str) -> None:
    """Download a file from a volume (to stdout with -)."""
    vol = Volume(name)
    found = _call(vol.listdir, remote_path)
    size = found[0].size if len(found) == 1 and found[0].type == "file" else None
    if local_path == "-":
        with output.transfer(f"Downloading {Path(remote_path).name}", size) as step:
            _call(vol.read_file_into_fileobj, remote_path, click.get_binary_stream("stdout"),
                  lambda advance: step(advance))
        return
    target = Path(local_path)
    if target.is_dir():
        target = target / Path(remote_path).name
    partial = target.with_name(f".{target.name}.sampan-partial")
    try:
        with partial.open("wb") as fh, output.transfer(f"Downloading {target.name}", size) as step:
            _call(vol.read_file_into_fileobj, remote_path, fh, lambda advance: step(advance))
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


@volume.command("rm")
@click.argument("name")
@click.argument("remote_path")
@click.option("-r", "--recursive", is_flag=True, help="Remove a directory and what it holds.")
def rm(name: str, remote_path: str, recursive: bool) -> None:
    """Remove a file or directory from a volume."""
    _call(Volume(name).remove_file, remote_path, recursive=recursive)
    output.console.print(f"[green]✓[/green] Removed {name}:{remote_path}")


@volume.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(name: str, yes: bool) -> None:
    """Delete a volume and everything in it."""
    if not yes and not click.confirm(f"Delete volume '{name}' and all its files?"):
        raise click.Abort()
    _call(Volume.delete, name)
    output.console.print(f"[green]✓[/green] Deleted volume '{name}'.")
