"""The configuration groups of Modal's CLI, for Sampan: `config`, `profile`, `environment`, `setup`,
`launch`, `nfs` and `curl` (modal-surface.md §9)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from .. import profiles
from ..api import default_client
from ..config import Settings, config_path
from ..exception import Error
from ..network_file_system import PREFIX
from . import output, volume
from .client import Client


def _read_profiles(settings: Settings) -> dict[str, dict[str, Any]]:
    try:
        return profiles.parse(config_path(settings).read_text())
    except OSError:
        return {}


def _write_profiles(settings: Settings, data: dict[str, dict[str, Any]]) -> None:
    path = config_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(profiles.render(data))
    os.replace(tmp, path)


def _chosen() -> str | None:
    return os.environ.get("SAMPAN_PROFILE") or os.environ.get("MODAL_PROFILE") or None


# -- sampan config ---------------------------------------------------------------------------------
@click.group()
def config() -> None:
    """Show and change Sampan's settings."""


@config.command("show")
@click.option("--redact/--no-redact", default=True, show_default=True, help="Hide token secrets.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (always JSON; accepted for Modal compatibility).")
def config_show(redact: bool, as_json: bool) -> None:
    """Print every setting, as the server and CLI read them (environment variables, then config.toml)."""
    settings = Settings.from_env()
    data: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        data[f.name] = str(value) if isinstance(value, Path) else (
            dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value)
    try:
        name = profiles.active(_read_profiles(settings), _chosen())
    except Error as exc:
        raise click.ClickException(str(exc)) from None
    data["profile"] = name
    profile = dict(_read_profiles(settings).get(name or "", {}))
    if redact and profile.get("token_secret"):
        profile["token_secret"] = "***"
    data["profile_settings"] = profile
    click.echo(json.dumps(data, indent=2, default=str))


@config.command("set-environment")
@click.argument("environment_name")
def config_set_environment(environment_name: str) -> None:
    """Store a default environment in the active profile (Sampan has one environment per server)."""
    _set_key("environment", environment_name)
    output.console.print("Note: a Sampan server has one environment; workspaces separate tenants.")


@config.command("set")
@click.argument("key")
@click.argument("value")
def config_set(key: str, value: str) -> None:
    """Set KEY of the active profile (workspace, token_id, token_secret, server_url, environment)."""
    if key not in profiles.KEYS or key == "active":
        raise click.BadParameter(f"unknown key {key!r}; one of {', '.join(k for k in profiles.KEYS if k != 'active')}")
    _set_key(key, value)


def _set_key(key: str, value: str) -> None:
    settings = Settings.from_env()
    data = _read_profiles(settings)
    try:
        name = profiles.active(data, _chosen()) or "default"
    except Error as exc:
        raise click.ClickException(str(exc)) from None
    data.setdefault(name, {})[key] = value
    try:
        _write_profiles(settings, data)
    except Error as exc:
        raise click.ClickException(str(exc)) from None
    shown = "***" if key == "token_secret" else value
    output.console.print(f"New {key.replace('_', ' ')} for profile {name}: {shown}")


# -- sampan profile --------------------------------------------------------------------------------
@click.group()
def profile() -> None:
    """Switch between tokens (and servers): the tables of config.toml."""


@profile.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def profile_list(as_json: bool) -> None:
    """List profiles; the active one is marked."""
    settings = Settings.from_env()
    data = _read_profiles(settings)
    try:
        current = profiles.active(data, _chosen())
    except Error:
        current = None
    rows = [{"name": name, "workspace": values.get("workspace", ""), "active": name == current,
             "server_url": values.get("server_url", "")} for name, values in data.items()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    table.add_column("  Profile", overflow="fold")
    table.add_column("Workspace", overflow="fold")
    table.add_column("Server", overflow="fold")
    for row in rows:
        table.add_row(("• " if row["active"] else "  ") + row["name"], str(row["workspace"]),
                      str(row["server_url"]) or "(this machine)")
    output.print_table(table)


@profile.command("activate")
@click.argument("name")
def profile_activate(name: str) -> None:
    """Make NAME the active profile."""
    settings = Settings.from_env()
    try:
        _write_profiles(settings, profiles.activate(_read_profiles(settings), name))
    except Error as exc:
        raise click.ClickException(str(exc)) from None
    output.console.print(f"[green]✓[/green] Profile {name} is active.")


@profile.command("current")
def profile_current() -> None:
    """Print the active profile's name."""
    try:
        name = profiles.active(_read_profiles(Settings.from_env()), _chosen())
    except Error as exc:
        raise click.ClickException(str(exc)) from None
    if name is None:
        raise click.ClickException("No profile is configured yet: run `sampan setup`.")
    click.echo(name)


# -- sampan environment ----------------------------------------------------------------------------
@click.group()
def environment() -> None:
    """Environments: a Sampan server has one (`main`); workspaces are what separate tenants."""


@environment.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def environment_list(as_json: bool) -> None:
    """List environments (there is one)."""
    settings = Settings.from_env()
    rows = [{"name": "main", "web_suffix": "", "image_builder_version": "sampan", "active": True}]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    output.console.print(f"main (active). Sampan separates tenants by workspace; yours is {settings.workspace!r}. "
                         "`-e/--env` is accepted by every command and ignored.")


for _name in ("create", "delete", "update"):
    @environment.command(_name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1)
    def _refused(args: tuple[str, ...], _n: str = _name) -> None:
        raise click.ClickException(f"`sampan environment {_n}` is not offered: a Sampan server has one environment; "
                                   "use workspaces (`sampan token new --workspace NAME`) to separate tenants.")


# -- sampan setup, launch --------------------------------------------------------------------------
@click.command()
def setup() -> None:
    """First run: start the server, make sure this user has a token, say what to do next."""
    settings = Settings.from_env()
    client = Client.connect(settings, start=True)
    output.console.print(f"[green]✓[/green] Sampan server running at {client.server.control_url} "
                         f"(workspace {settings.workspace}).")
    output.console.print(f"[green]✓[/green] Token in {config_path(settings)}.")
    output.console.print("Next: `sampan serve examples/hello.py` (live reload) or `sampan deploy app.py`.")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1)
def launch(args: tuple[str, ...]) -> None:
    """`modal launch jupyter|vscode` (removed from Modal in 1.6) is not offered."""
    raise click.ClickException("`sampan launch` is not offered (Modal removed `modal launch` in 1.6): serve a "
                               "`@modal.web_server` function running Jupyter or code-server instead.")


# -- sampan nfs (deprecated: Volumes named nfs-<name>) ----------------------------------------------
@click.group()
def nfs() -> None:
    """Network file systems (deprecated by Modal): Volumes kept as `nfs-<name>`."""


@nfs.command("create")
@click.argument("name")
@click.pass_context
def nfs_create(ctx: click.Context, name: str) -> None:
    """Create a network file system."""
    ctx.invoke(volume.create, name=PREFIX + name)


@nfs.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def nfs_list(as_json: bool) -> None:
    """List network file systems."""
    rows = [r for r in volume._call(lambda: default_client().get("/v1/volumes"))
            if str(r["name"]).startswith(PREFIX)]
    rows = [{**r, "name": r["name"][len(PREFIX):]} for r in rows]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Shared Volumes")
    table.add_column("Name", overflow="fold")
    for r in rows:
        table.add_row(r["name"])
    output.print_table(table)


def _nfs_forward(command: click.Command) -> click.Command:
    @click.pass_context
    def forward(ctx: click.Context, name: str, **kwargs: Any) -> None:
        ctx.invoke(command, name=PREFIX + name, **kwargs)

    return click.Command(command.name, callback=forward, params=command.params, help=command.help)


for _command in (volume.ls, volume.put, volume.get, volume.rm, volume.delete):
    nfs.add_command(_nfs_forward(_command))


# -- sampan curl -----------------------------------------------------------------------------------
@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("curl_args", nargs=-1, type=click.UNPROCESSED)
def curl(curl_args: tuple[str, ...]) -> None:
    """Run curl with this workspace's proxy auth token added (for `requires_proxy_auth=True` endpoints)."""
    if shutil.which("curl") is None:
        raise click.ClickException("curl is not installed (Debian package `curl`).")
    settings = Settings.from_env()
    cache = settings.home / "curl-proxy-token.json"
    try:
        token = json.loads(cache.read_text())
    except (OSError, ValueError):
        token = Client.connect(settings, start=True).post("/v1/proxy-tokens", {"name": "sampan curl"})
        fd = os.open(cache, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"token_id": token["token_id"], "token_secret": token["token_secret"]}, fh)
    argv = ["curl", "-H", f"Modal-Key: {token['token_id']}", "-H", f"Modal-Secret: {token['token_secret']}",
            *curl_args]
    sys.exit(subprocess.run(argv).returncode)
