"""The persistent server (`sampan server start`): gateway, control API, store and backend in one
asyncio process, restoring every deployed app at start.

    open the store (migrations), make sure the local user has a workspace and a token
    start the gateway and the control API
    publish the current version of every deployed app (same URLs: ports are remembered)
    register in $SAMPAN_HOME/servers/ (`sampan server start` returns once this file appears)
    serve until SIGTERM/SIGINT; then stop accepting, let containers finish, and unregister

Containers die with the server (they watch its pid), so `kill -9` leaves no orphans and the
next start brings every app back from the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

from ..backends.base import ContainerStartError
from ..config import Settings, server_local_paths, write_token_config
from ..manifest import Manifest
from ..registry import running_servers
from .assemble import Sinks, assemble, process_runtime_warning, runtime_description
from .store import Store

DEFAULT_CONTROL_PORT = 8486


def _log(message: str) -> None:
    sys.stdout.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message + "\n")
    sys.stdout.flush()


async def run(settings: Settings, control_port: int = DEFAULT_CONTROL_PORT) -> int:
    # Clients of several workspaces deploy here: their images read no file of this machine's (config.py).
    settings = dataclasses.replace(settings, local_paths=server_local_paths())
    others = [s for s in running_servers(settings.home) if s.kind == "server"]
    if others:
        _log(f"a Sampan server is already running for {settings.home} (pid {others[0].pid})")
        return 1
    store = Store(settings.home)
    workspace = store.workspace(settings.workspace)
    write_token_config(settings, store, workspace)

    def log_line(tag: str, cid: str, stream: str, line: str) -> None:
        sys.stdout.write(f"{tag} {cid} | {line}\n")

    def start_error(tag: str, cid: str, reason: str) -> None:
        _log(f"{tag} {cid} failed to start: {reason}")

    try:
        assembly = assemble(settings, store=store, control_port=control_port,
                            sinks=Sinks(log=log_line, start_error=start_error, warn=_log))
        if hasattr(assembly.backend, "connect"):  # a cluster backend: fail now, clearly, when it is unreachable
            await asyncio.to_thread(assembly.backend.connect)
    except (ValueError, ContainerStartError) as exc:
        _log(f"cannot start the {settings.backend} backend: {exc}")
        return 1
    server, control = assembly.server, assembly.control
    _log(f"backend: {settings.backend}")
    _log(f"containers: {runtime_description(assembly.backend)}")
    warning = process_runtime_warning(assembly.backend)
    if warning:
        _log(f"WARNING: {warning}")
    _log(f"images: {server.images_description}")
    await assembly.start()
    _log(f"gateway on http://{settings.host}:{server.gateway.port}, control API on {control.url}, pid {os.getpid()}")

    restored = 0
    for app in store.apps():
        if app.state != "deployed" or app.current_version is None:
            continue
        record = store.version(app.id, app.current_version)
        ws = store.workspace_by_id(app.workspace_id)
        try:
            manifest = Manifest.from_json(record.manifest)
            await server.publish(f"{ws.name}/{app.name}", manifest, server.bundle(record.bundle_id),
                                 ephemeral=False, workspace=ws.name, number=record.version)
            restored += 1
        except Exception as exc:  # noqa: BLE001 - one broken app must not keep the others down
            _log(f"could not restore app {app.name} version {record.version}: {exc}")
    # Registered only now: `sampan server start` returns once the deployed apps answer again.
    assembly.register("server")
    reaper = asyncio.create_task(control.reap_ephemeral(settings.ephemeral_timeout))
    _log(f"ready: {restored} app(s) restored")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    _log("stopping: containers finish their requests")
    reaper.cancel()
    assembly.unregister()
    # Schedules first: a scheduler step after an app stopped below would forget its timers, and the next
    # start would lose a Period's phase (and could fire a tick twice).
    await control.scheduler.close()
    # Deployed apps stay deployed in the store: only their containers stop with the server. They stop
    # before the control API closes: @exit hooks and lifespan shutdown may still call the platform.
    for key in list(server.apps):
        await server.stop_app(key, drain_timeout=10.0)
    await assembly.close()
    store.close()
    _log("stopped")
    return 0


def main(settings: Settings, control_port: int = DEFAULT_CONTROL_PORT) -> int:
    try:
        import uvloop

        return uvloop.run(run(settings, control_port))
    except ImportError:
        return asyncio.run(run(settings, control_port))


__all__ = ["DEFAULT_CONTROL_PORT", "Path", "main", "run"]
