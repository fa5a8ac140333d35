"""`sampan deploy FILE`: build, upload and publish an app to the persistent server."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time
from pathlib import Path

import click

from ..config import Settings
from . import output
from .client import Client
from .serve import LoadFailed, load_app


def deploy_app(ref: str, module_mode: bool, name: str | None, strategy: str, tag: str,
               settings: Settings) -> dict:
    """Load the script, send it to the server, show the build; returns the server's result."""
    started = time.perf_counter()
    try:
        loaded = asyncio.run(load_app(ref, module_mode))
    except LoadFailed as exc:
        output.err_console.print(str(exc), markup=False)
        raise click.ClickException(f"Could not load {ref}.") from None
    app_name = name or loaded.manifest.app_name
    if not app_name:
        raise click.ClickException(
            "You need to either supply an explicit deployment name on the command line (--name) or have a name "
            "set on the App (modal.App(\"name\"))."
        )
    output.print_notes(loaded.manifest.notes)
    client = Client.connect(settings, start=True, serve_ok=False)
    body = {
        "name": app_name,
        "manifest": loaded.manifest.to_json(),
        "files": {rel: base64.b64encode(data).decode() for rel, data in loaded.bundle_files(uploads=True).items()},
        "strategy": strategy,
        "tag": tag,
    }
    with output.BuildDisplay() as display:
        result = display.follow(client.stream_json("/v1/deploy", body))
    if result is None:
        raise click.ClickException(
            "The server closed the connection before the deploy finished (see $SAMPAN_HOME/server.log); "
            "the previous version, if any, keeps serving."
        )
    output.print_created_dicts(result["endpoints"], loaded.manifest.other_functions)
    elapsed = time.perf_counter() - started
    if result["skipped"]:
        output.console.print("[green]✓[/green] Deployment skipped: no changes detected! ⏭️")
    else:
        output.console.print(f"[green]✓[/green] App deployed in {elapsed:.3f}s! 🎉 (version {result['version']})")
    return result


@click.command()
@click.argument("app_ref")
@click.option("-m", "module_mode", is_flag=True, help="Interpret APP_REF as a Python module path.")
@click.option("--name", default=None, help="Deployment name (default: the App's name).")
@click.option("--strategy", type=click.Choice(["rolling", "recreate"]), default="rolling",
              help="rolling: new containers warm up before old ones stop; recreate: old ones stop first.")
@click.option("--tag", default="", help="A tag for this version (shown in `sampan app history`).")
@click.option("-e", "--env", "environment", default=None, help="Accepted for Modal compatibility; no effect.")
@click.option("--stream-logs", is_flag=True, help="Follow the app's logs after deploying.")
@click.option("--result-fd", type=int, default=None, hidden=True)  # `App.deploy()` (sdk/app.py) reads it
def deploy(app_ref: str, module_mode: bool, name: str | None, strategy: str, tag: str, environment: str | None,
           stream_logs: bool, result_fd: int | None) -> None:
    """Deploy an app to the Sampan server (started if none runs), keeping it at the same URLs."""

    if tag and not re.fullmatch(r"[a-zA-Z0-9._-]{1,50}", tag):
        raise click.BadParameter("tags may contain letters, digits, '.', '_' and '-' (at most 50)", param_hint="--tag")
    settings = Settings.from_env()
    result = deploy_app(app_ref, module_mode, name, strategy, tag, settings)
    if result_fd is not None:
        with os.fdopen(result_fd, "w") as pipe:
            pipe.write(json.dumps(result) + "\n")
    if stream_logs:
        client = Client.connect(settings)
        app = name or result.get("app_id")
        for line in client.stream_text(f"/v1/apps/{app}/logs?follow=1"):
            click.echo(line, nl=False)


__all__ = ["Path", "deploy", "deploy_app"]
