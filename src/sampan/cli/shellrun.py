"""`sampan shell app.py::fn`: a new container of a function, and a shell in it (Modal's `modal shell REF`).

The app is published as an ephemeral app on an embedded server (always on this machine: the shell
enters the container's namespaces), one container of the function is started in its image with its
secrets and Volumes, and the shell runs there until it exits; then the app stops. `sampan shell ta-...`
(cli/container.py) enters a container that already runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
from typing import Any

from ..config import Settings
from ..server.control import container_pid
from . import output
from .serve import ServeSession

SHELL_PROMPT = 'export HOME=/root PS1="root@modal:\\w# "; exec {cmd}'


def container_environ(pid: int) -> dict[str, str]:
    """The environment of a container (its image's variables, its secrets), which its runtime left in its
    own /run (runtime/container.py ENVIRON_FILE): the shell's."""
    try:
        with open(f"/proc/{pid}/root/run/sampan/environ", "rb") as fh:
            data = fh.read()
    except OSError:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            data = fh.read()
    pairs = [item.split(b"=", 1) for item in data.split(b"\0") if b"=" in item]
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


class ShellSession(ServeSession):
    def __init__(self, ref: str, function: str | None, cmd: str, settings: Settings) -> None:
        # Its own gateway port: a persistent server may hold the default one.
        super().__init__(ref, False, dataclasses.replace(settings, gateway_port=0), None, None, False)
        self.function = function
        self.cmd = cmd
        self.exit_code = 0

    def _running_server(self) -> Any:
        return None  # always embedded: the shell enters a container on this machine

    def _endpoint(self) -> Any:
        assert self.version is not None
        endpoints = {e.tag: e for e in self.version.all_endpoints()}
        if self.function is None and len(endpoints) == 1:
            return next(iter(endpoints.values()))
        if self.function not in endpoints:
            raise LookupError(f"No function {self.function!r} in this app; its functions are {sorted(endpoints)}.")
        return endpoints[self.function]

    async def _serve_until_stopped(self, banner: str) -> None:
        try:
            endpoint = self._endpoint()
        except LookupError as exc:
            output.err_console.print(f"✗ {exc}", markup=False, style="red")
            self.exit_code = 2
            return
        pool = endpoint.pool_for(b"")
        with output.console.status(f"Starting a container of {endpoint.tag}...", spinner="dots"):
            await pool.warm(1)
        found = next((pc for pc in pool.containers.values() if pc.backend is not None), None)
        pid = container_pid(found.backend) if found is not None else None
        if pid is None:
            output.err_console.print("✗ `sampan shell` needs the container sandbox (see `sampan server status`).",
                                     style="red")
            self.exit_code = 1
            return
        output.console.print(f"[green]✓[/green] Container {found.id} of {endpoint.tag}: a shell in it "
                             "(exit to stop).")
        nsenter = shutil.which("nsenter") or "nsenter"
        command = SHELL_PROMPT.format(cmd=self.cmd)
        proc = await asyncio.create_subprocess_exec(nsenter, "--target", str(pid), "--all", "--root", "--wd",
                                                    "/bin/sh", "-c", command, env=container_environ(pid))
        self.exit_code = await proc.wait()

    async def run(self) -> int:
        if os.geteuid() != 0:
            output.err_console.print("✗ `sampan shell` enters a container's namespaces and must run as root.",
                                     style="red")
            return 1
        code = await super().run()
        return code or self.exit_code
