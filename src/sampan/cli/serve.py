"""`sampan serve`: run an app with live reload until Ctrl-C.

    load the script (fresh process)  ->  snapshot its files into a bundle  ->  publish
    watch the files  ->  on change: load again; publish if it loads, else keep the last good version
    Ctrl-C  ->  routes answer "app is stopped", containers finish and stop, nothing is left behind
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import click

from ..backends.base import get_backend
from ..config import Settings, read_token
from ..exception import InvalidError, NotFoundError
from ..manifest import Manifest
from ..registry import running_servers
from ..server.apps import AppServer
from ..server.assemble import Sinks, assemble, process_runtime_warning
from ..server.bundle import read_files, write_bundle
from ..server.control import ControlServer
from ..server.endpoints import AppVersion, EndpointInfo
from ..server.images.recipe import ImageBuildError
from ..server.store import Store
from . import output
from .client import Client
from .loader import WarmLoader

HEARTBEAT_S = 10.0  # the server stops a served app after 30 s without one
SERVE_STOP_GRACE_S = 30.0  # Modal's grace period for @exit hooks; a second Ctrl-C skips it


@dataclass
class Loaded:
    manifest: Manifest
    root: Path
    files: list[str]
    mounts: list[tuple[str, str]]  # add_local_*(copy=False): (local path, path in the bundle)
    uploads: list[tuple[str, str]] = field(default_factory=list)  # add_local_*(copy=True), for a server

    @property
    def watch_paths(self) -> set[str]:
        return {str(self.root / f) for f in self.files} | {local for local, _ in self.mounts}

    def bundle_files(self, uploads: bool = False) -> dict[str, bytes]:
        """The code bundle; `uploads`: with the sources of `copy=True` image steps, for a server that reads
        none of this machine's files (not for this process's own server, which reads them in place)."""
        files = read_files(self.root, self.files)
        for local, target in [*self.mounts, *(self.uploads if uploads else [])]:
            files[target] = Path(local).read_bytes()
        return files


class LoadFailed(Exception):
    pass


async def load_app(ref: str, module_mode: bool, loader: WarmLoader | None = None) -> Loaded:
    """Import the user's script in a fork of the warm loader (cli/loader.py), else in a fresh
    interpreter, and read back its manifest."""
    fd, out_path = tempfile.mkstemp(prefix="sampan-manifest-", suffix=".json")
    os.close(fd)
    try:
        args = [ref, *(["-m"] if module_mode else []), "--out", out_path]
        answered = await loader.load(args) if loader is not None else None
        if answered is None:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "sampan.cli.importer", *args,
                                                        stdin=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE)
            _, stderr = await proc.communicate()
            answered = (proc.returncode or 0, stderr.decode(errors="replace"))
        code, text = answered[0], answered[1].rstrip()
        if code != 0:
            raise LoadFailed(text or f"loading {ref} failed (exit status {code})")
        if text:  # warnings (e.g. deprecated spellings) printed while importing
            output.err_console.print(text, markup=False)
        with open(out_path) as fh:
            data = json.load(fh)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(out_path)
    mounts = [(local, target) for local, target in data.get("mounts") or []]
    uploads = [(local, target) for local, target in data.get("uploads") or []]
    return Loaded(Manifest.from_json(data["manifest"]), Path(data["root"]), data["files"], mounts, uploads)


class ServeSession:
    def __init__(self, ref: str, module_mode: bool, settings: Settings, timeout: float | None,
                 name: str | None, timestamps: bool) -> None:
        self.ref = ref
        self.module_mode = module_mode
        self.settings = settings
        self.timeout = timeout
        self.name = name
        self.stop = asyncio.Event()
        self.printer = output.LogPrinter(timestamps)
        self.server: AppServer | None = None
        self.current: Loaded | None = None
        self.version: AppVersion | None = None
        self.reload_lock = asyncio.Lock()
        self.control: ControlServer | None = None
        self.remote: Client | None = None
        self.app_name = name or ""
        self.interrupts = 0
        self.loader: WarmLoader | None = None  # forks a child per reload (cli/loader.py)

    @property
    def app_key(self) -> str:
        return "serve:" + (self.name or (self.current.manifest.app_name if self.current else None) or self.ref)

    def _start_error(self, tag: str, container_id: str, reason: str) -> None:
        output.err_console.print(f"[red]✗ {tag} {container_id} failed to start:[/red] {reason}", markup=True)

    def _warn(self, message: str) -> None:
        output.console.print(f"[yellow]⚠[/yellow] {message}")

    async def _publish(self, loaded: Loaded) -> Any:
        if self.remote is not None:
            return await asyncio.to_thread(self._publish_remote, loaded)
        assert self.server is not None
        bundle = write_bundle(self.settings.home, loaded.bundle_files())
        with output.BuildDisplay() as display:
            return await self.server.publish(self.app_key, loaded.manifest, bundle, ephemeral=True,
                                             hooks=display.hooks())

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._interrupt)
        with output.console.status("Loading app...", spinner="dots"):
            try:
                self.current = await load_app(self.ref, self.module_mode)
            except LoadFailed as exc:
                output.err_console.print(str(exc), markup=False)
                output.err_console.print(f"[red]✗ Could not load {self.ref}.[/red]")
                return 1
        loaded = self.current
        self.app_name = self.name or loaded.manifest.app_name or Path(self.ref.split("::")[0]).stem
        output.console.print(f"[green]✓[/green] Initialized. App [bold]{self.app_name}[/bold] (ephemeral).")
        output.print_notes(loaded.manifest.notes)
        remote = self._running_server()
        if remote is not None:
            return await self._run_remote(loaded, remote)
        return await self._run_embedded(loaded)

    def _running_server(self) -> Client | None:
        """A persistent server of this SAMPAN_HOME, if one runs and we hold a token for it."""
        if not [s for s in running_servers(self.settings.home) if s.kind == "server"]:
            return None
        if read_token(self.settings) is None:
            return None
        return Client.connect(self.settings)

    async def _run_embedded(self, loaded: Loaded) -> int:
        # The same store a persistent server uses: named secrets and proxy tokens work under serve too.
        assembly = assemble(self.settings, backend=get_backend("local", home=self.settings.home),
                            store=Store(self.settings.home), stop_grace=SERVE_STOP_GRACE_S,
                            sinks=Sinks(log=self.printer, start_error=self._start_error, warn=self._warn))
        warning = process_runtime_warning(assembly.backend)
        if warning:
            output.err_console.print(f"⚠ {warning}", markup=False, style="yellow")
        self.server, self.control = assembly.server, assembly.control
        try:
            try:
                await assembly.start(control_port_fallback=False)
                assembly.register("serve")
                self.version = await self._publish(loaded)
            except (OSError, InvalidError, NotFoundError, ImageBuildError) as exc:
                output.err_console.print(f"✗ {exc}", markup=False, style="red")
                return 1
            output.print_created(self.version.infos, loaded.manifest.other_functions)
            output.console.print(
                f"[dim]Host-routed gateway: http://{self.settings.workspace}--<label>-"
                f"{self.settings.dev_suffix}.{self.settings.domain}:{self.server.gateway.port}[/dim]"
            )
            output.console.print(f"[dim]Dashboard: {self.control.url}/dashboard/ (sampan dashboard logs in)[/dim]")
            await self._serve_until_stopped("⚡️ Serving... hit Ctrl-C to stop!")
        finally:
            await assembly.close()
        output.console.print("[green]✓[/green] App stopped.")
        return 0

    async def _run_remote(self, loaded: Loaded, client: Client) -> int:
        """Serve through the running persistent server: it runs the containers, we watch and reload."""
        self.remote = client
        try:
            self.version = await self._publish(loaded)
        except click.ClickException as exc:
            output.err_console.print(f"✗ {exc.message}", markup=False, style="red")
            return 1
        output.print_created(self.version.infos, loaded.manifest.other_functions)
        threading.Thread(target=self._print_remote_logs, daemon=True).start()
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            await self._serve_until_stopped(
                f"⚡️ Serving on the Sampan server (pid {client.server.pid})... hit Ctrl-C to stop!"
            )
        finally:
            heartbeat.cancel()
            with contextlib.suppress(click.ClickException):
                await asyncio.to_thread(client.post, f"/v1/ephemeral/{quote(self.app_name)}/stop")
        output.console.print("[green]✓[/green] App stopped.")
        return 0

    def _print_remote_logs(self) -> None:
        assert self.remote is not None
        with contextlib.suppress(Exception):
            for line in self.remote.stream_text(f"/v1/ephemeral/{quote(self.app_name)}/logs?follow=1"):
                tag_and_id, sep, text = line.rstrip("\n").partition(" │ ")
                tag, _, cid = tag_and_id.partition(" ")
                if sep:
                    self.printer(tag, cid, "stdout", text)

    async def _heartbeat(self) -> None:
        assert self.remote is not None
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(click.ClickException):
                await asyncio.to_thread(self.remote.post, f"/v1/ephemeral/{quote(self.app_name)}/heartbeat")

    async def _serve_until_stopped(self, banner: str) -> None:
        assert self.current is not None
        output.console.print(banner)
        for d in sorted({str(Path(p).parent) for p in self.current.watch_paths}):
            output.console.print(f"└── Watching {d}.")
        self.loader = WarmLoader()
        with contextlib.suppress(OSError):
            await self.loader.start()
        watcher = asyncio.create_task(self._watch())
        try:
            if self.timeout is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), self.timeout)
            else:
                await self.stop.wait()
        finally:
            self.stop.set()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
            await self.loader.close()
        output.console.print("Stopping app - containers finish their requests and stop...")

    def _publish_remote(self, loaded: Loaded) -> Any:
        assert self.remote is not None
        body = {"name": self.app_name, "ephemeral": True, "manifest": loaded.manifest.to_json(),
                "files": {rel: base64.b64encode(data).decode()
                          for rel, data in loaded.bundle_files(uploads=True).items()}}
        with output.BuildDisplay() as display:
            result = display.follow(self.remote.stream_json("/v1/deploy", body))
        if result is None:
            raise click.ClickException("The server closed the connection before the app was published.")
        infos = [EndpointInfo(i["tag"], "", i["url"], i.get("host_url", ""), "", i["truncated"],
                              i["requires_proxy_auth"]) for i in result["endpoints"]]
        return SimpleNamespace(infos=infos, number=result["version"])

    def _interrupt(self) -> None:
        self.interrupts += 1
        if self.interrupts == 2 and self.server is not None:
            output.console.print("Second interrupt: killing containers now.")
            self.server.kill_all()
        self.stop.set()

    async def _watch(self) -> None:
        import watchfiles

        while not self.stop.is_set():
            assert self.current is not None
            paths = self.current.watch_paths
            dirs = sorted({str(Path(p).parent) for p in paths})

            def only_app_files(change: Any, path: str, paths: set[str] = paths) -> bool:
                return path in paths

            async for changes in watchfiles.awatch(
                *dirs, watch_filter=only_app_files, debounce=self.settings.debounce_ms, step=50,
                stop_event=self.stop, rust_timeout=1000, yield_on_timeout=False,
            ):
                changed = sorted({Path(p).name for _, p in changes})
                await self.reload(changed)
                if self.current.watch_paths != paths:
                    break  # the set of files changed: watch the new set

    async def reload(self, changed: list[str]) -> bool:
        async with self.reload_lock:
            output.console.print(f"↻ Change detected in {', '.join(changed)}: reloading...")
            try:
                loaded = await load_app(self.ref, self.module_mode, self.loader)
            except LoadFailed as exc:
                output.err_console.print(str(exc), markup=False)
                output.err_console.print(
                    "[red]✗ The new version failed to load; still serving the last good one.[/red]"
                )
                return False
            old_urls = {i.tag: i.url for i in self.version.infos} if self.version else {}
            try:
                version = await self._publish(loaded)
            except (InvalidError, NotFoundError, ImageBuildError, click.ClickException) as exc:
                output.err_console.print(getattr(exc, "message", str(exc)), markup=False)
                output.err_console.print("[red]✗ Still serving the last good version.[/red]")
                return False
            old_notes = set(self.current.manifest.notes) if self.current else set()
            self.current, self.version = loaded, version
            output.print_notes(n for n in loaded.manifest.notes if n not in old_notes)
            new_urls = {i.tag: i.url for i in version.infos}
            if new_urls != old_urls:
                output.print_created(version.infos, loaded.manifest.other_functions)
            output.console.print(f"[green]✓[/green] App updated (version {version.number}).")
            return True


@click.command()
@click.argument("app_ref")
@click.option("-m", "module_mode", is_flag=True, help="Interpret APP_REF as a Python module path (package.module).")
@click.option("--timeout", type=float, default=None, help="Stop serving after this many seconds.")
@click.option("-n", "--name", default=None, help="A name for this run of the app.")
@click.option("-e", "--env", "environment", default=None,
              help="Environment (accepted for Modal compatibility; Sampan has one environment per server).")
@click.option("--timestamps", is_flag=True, help="Prefix container log lines with the time.")
def serve(app_ref: str, module_mode: bool, timeout: float | None, name: str | None, environment: str | None,
          timestamps: bool) -> None:
    """Serve an app's web functions with live reload until Ctrl-C.

    APP_REF is a file (`app.py`), a file and an App variable (`app.py::app`), or with -m a module
    (`-m package.module`). URLs print as `http://127.0.0.1:<port>` (one port per web function,
    stable across runs); the gateway also routes `http://<workspace>--<label>-dev.localhost:8487`.
    """
    if environment:
        output.console.print("[yellow]⚠[/yellow] `--env` has no effect: a Sampan server has one environment.")
    settings = Settings.from_env()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    code = runner(ServeSession(app_ref, module_mode, settings, timeout, name, timestamps).run())
    sys.exit(code)
