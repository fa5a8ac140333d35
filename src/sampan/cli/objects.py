"""`sampan dict create|list|clear|delete|get|items` and `sampan queue create|list|clear|delete|peek|len`:
the workspace's named Dicts and Queues on the server, as Modal's `modal dict` and `modal queue`."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.table import Table

from ..api import default_client
from ..sdk.objects import Dict, Queue
from . import output
from .volume import _call


def _names(kind: str) -> list[dict[str, Any]]:
    return _call(lambda: default_client().get(f"/v1/objects/{kind}"))


def _list(kind: str, title: str, as_json: bool) -> None:
    rows = _names(kind)
    rows = [r if isinstance(r, dict) else {"name": r} for r in rows]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=title)
    table.add_column("Name", overflow="fold")
    table.add_column("Created at")
    for row in rows:
        created = row.get("created_at")
        table.add_row(row["name"], time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if created else "-")
    output.print_table(table)


def _create(kind: type[Any], name: str) -> None:
    _call(kind(name, create_if_missing=True).len)
    output.console.print(f"[green]✓[/green] Created {kind.__name__} '{name}'.")


def _delete(kind: type[Any], name: str, yes: bool, allow_missing: bool) -> None:
    if not yes:
        click.confirm(f"Are you sure you want to irrevocably delete the modal.{kind.__name__} '{name}'?", abort=True)
    try:
        _call(kind.delete, name)
    except click.ClickException:
        if not allow_missing:
            raise
    output.console.print(f"[green]✓[/green] Deleted {kind.__name__} '{name}'.")


def _show(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


@click.group("dict")
def dict_group() -> None:
    """Manage Dicts (key-value stores shared by containers)."""


@dict_group.command("create")
@click.argument("name")
def dict_create(name: str) -> None:
    """Create a named Dict."""
    _create(Dict, name)


@dict_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dict_list(as_json: bool) -> None:
    """List the workspace's Dicts."""
    _list("dict", "Dicts", as_json)


@dict_group.command("clear")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def dict_clear(name: str, yes: bool) -> None:
    """Remove every item of a Dict."""
    if not yes:
        click.confirm(f"Are you sure you want to irrevocably delete the contents of modal.Dict '{name}'?", abort=True)
    _call(Dict(name).clear)
    output.console.print(f"[green]✓[/green] Cleared Dict '{name}'.")


@dict_group.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-missing", is_flag=True, help="Succeed when the Dict does not exist.")
def dict_delete(name: str, yes: bool, allow_missing: bool) -> None:
    """Delete a Dict and its contents."""
    _delete(Dict, name, yes, allow_missing)


@dict_group.command("get")
@click.argument("name")
@click.argument("key")
def dict_get(name: str, key: str) -> None:
    """Print the value of KEY (a string key) in a Dict."""
    value = _call(Dict(name).get, key, _MISSING)
    if value is _MISSING:
        raise click.ClickException(f"Key {key!r} not found in Dict '{name}'.")
    click.echo(_show(value))


_MISSING = object()


@dict_group.command("items")
@click.argument("name")
@click.argument("n", type=int, default=20)
@click.option("-a", "--all", "show_all", is_flag=True, help="Show every item.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (values as text).")
def dict_items(name: str, n: int, show_all: bool, as_json: bool) -> None:
    """Show the first N items of a Dict."""
    items = list(_call(Dict(name).items))
    items = items if show_all else items[:n]
    if as_json:
        click.echo(json.dumps([{"key": _show(k), "value": _show(v)} for k, v in items], indent=2))
        return
    table = Table(title=f"Dict '{name}'")
    table.add_column("Key", overflow="fold")
    table.add_column("Value", overflow="fold")
    for key, value in items:
        table.add_row(_show(key), _show(value))
    output.print_table(table)


@click.group("queue")
def queue_group() -> None:
    """Manage Queues (FIFO queues shared by containers)."""


@queue_group.command("create")
@click.argument("name")
def queue_create(name: str) -> None:
    """Create a named Queue."""
    _create(Queue, name)


@queue_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def queue_list(as_json: bool) -> None:
    """List the workspace's Queues."""
    _list("queue", "Queues", as_json)


@queue_group.command("clear")
@click.argument("name")
@click.option("-p", "--partition", default=None, help="Only this partition.")
@click.option("-a", "--all", "all_partitions", is_flag=True, help="Every partition.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def queue_clear(name: str, partition: str | None, all_partitions: bool, yes: bool) -> None:
    """Remove the items of a Queue (its default partition, one, or all)."""
    if not yes:
        click.confirm(f"Are you sure you want to irrevocably delete the contents of modal.Queue '{name}'?",
                      abort=True)
    _call(Queue(name).clear, partition=partition, all=all_partitions)
    output.console.print(f"[green]✓[/green] Cleared Queue '{name}'.")


@queue_group.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-missing", is_flag=True, help="Succeed when the Queue does not exist.")
def queue_delete(name: str, yes: bool, allow_missing: bool) -> None:
    """Delete a Queue and its contents."""
    _delete(Queue, name, yes, allow_missing)


@queue_group.command("peek")
@click.argument("name")
@click.argument("n", type=int, default=1)
@click.option("-p", "--partition", default=None, help="The partition to look at.")
def queue_peek(name: str, n: int, partition: str | None) -> None:
    """Print the next N items of a Queue without taking them."""
    for value in _call(Queue(name).peek, n, partition=partition):
        click.echo(_show(value))


@queue_group.command("len")
@click.argument("name")
@click.option("-p", "--partition", default=None, help="Count this partition.")
@click.option("-t", "--total", is_flag=True, help="Count every partition.")
def queue_len(name: str, partition: str | None, total: bool) -> None:
    """Print the number of items in a Queue."""
    click.echo(str(_call(Queue(name).len, partition=partition, total=total)))
