"""`sampan run FILE[::name]`: an ephemeral app, live for as long as a local entrypoint runs.

It publishes the app exactly as `serve` does (through a running server, else an embedded one),
then runs the entrypoint in its own process (cli/runner.py) with the app's server, key and URLs
in its environment, and stops the app when it returns. The exit status is the entrypoint's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import click

from ..config import Settings
from . import output
from .serve import ServeSession


class RunSession(ServeSession):
    """A serve session whose "serving" is running one entrypoint to its end."""

    def __init__(self, ref: str, name: str | None, args: list[str], module_mode: bool, settings: Settings,
                 app_name: str | None, timestamps: bool, detach: bool) -> None:
        super().__init__(ref, module_mode, settings, None, app_name, timestamps)
        self.entry_name = name
        self.args = args
        self.detach = detach
        self.exit_code = 0
        self.child: asyncio.subprocess.Process | None = None

    def _call_env(self) -> dict[str, str]:
        """Where the entrypoint's `.remote()` calls go: the embedded server or the running one."""
        urls = {i.tag: i.url for i in self.version.infos} if self.version else {}
        env = {"SAMPAN_WEB_URLS": json.dumps(urls)}
        if self.control is not None:  # embedded
            env.update({**self.control.credentials.call_env(self.settings.workspace), "SAMPAN_APP_KEY": self.app_key})
        elif self.remote is not None:  # the server finds the app by name in the token's workspace
            env.update({"SAMPAN_SERVER_URL": self.remote.server.control_url, "SAMPAN_SERVER_TOKEN": self.remote.token})
        return env

    async def _serve_until_stopped(self, banner: str) -> None:
        if self.detach:
            output.console.print("[yellow]⚠[/yellow] `--detach` is accepted but has no effect yet: the app stops "
                                 "when this command ends.")
        args = [sys.executable, "-m", "sampan.cli.runner", *(["-m"] if self.module_mode else []), self.ref,
                self.entry_name or "", "--", *self.args]
        self.child = await asyncio.create_subprocess_exec(*args, env={**os.environ, **self._call_env()})
        waiter = asyncio.create_task(self.child.wait())
        stopper = asyncio.create_task(self.stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():  # Ctrl-C: the entrypoint gets it too, then a moment to finish
            self.child.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(waiter, 10)
            except asyncio.TimeoutError:
                self.child.kill()
                await waiter
        stopper.cancel()
        self.exit_code = self.child.returncode or 0
        if self.exit_code == 0:
            output.console.print("[green]✓[/green] App completed.")
        else:
            output.err_console.print(f"[red]✗ The entrypoint failed (exit status {self.exit_code}).[/red]")
        output.console.print("Stopping app - containers finish their requests and stop...")

    async def run(self) -> int:
        code = await super().run()
        return code or self.exit_code


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "allow_interspersed_args": False})  # after FUNC_REF: the entrypoint's
@click.argument("func_ref")
@click.option("-m", "module_mode", is_flag=True, help="Interpret FUNC_REF as a Python module path (package.module).")
@click.option("-d", "--detach", is_flag=True, help="Accepted for Modal compatibility; no effect yet.")
@click.option("-n", "--name", default=None, help="A name for this run of the app.")
@click.option("-q", "--quiet", is_flag=True, help="Accepted for Modal compatibility.")
@click.option("-e", "--env", "environment", default=None,
              help="Environment (accepted for Modal compatibility; Sampan has one environment per server).")
@click.option("--timestamps", is_flag=True, help="Prefix container log lines with the time.")
@click.pass_context
def run(ctx: click.Context, func_ref: str, module_mode: bool, detach: bool, name: str | None, quiet: bool,
        environment: str | None, timestamps: bool) -> None:
    """Run a local entrypoint or a function inside an ephemeral app.

    FUNC_REF is `app.py` (its only local entrypoint, or its only function), `app.py::name` (a
    `@app.local_entrypoint()` or a function, called with `.remote()`), or with -m a module. Options
    after FUNC_REF go to the entrypoint: its parameters are `--flags`. The app's web endpoints are
    live while it runs; the exit status is the entrypoint's.
    """
    settings = Settings.from_env()
    target, _, entry = func_ref.partition("::")
    app_var = None
    if "." in entry:
        app_var, _, entry = entry.partition(".")
    ref = f"{target}::{app_var}" if app_var else target
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    session = RunSession(ref, entry or None, list(ctx.args), module_mode, settings, name, timestamps, detach)
    sys.exit(runner(session.run()))
