"""Routes of apps: list, deploy (and `serve` on this server), stop, rollback, history, logs, lookups."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import TYPE_CHECKING, Any

from ...exception import Error, InvalidError, NotFoundError
from ...manifest import Manifest
from ..bundle import check_paths, write_bundle
from ..images.recipe import ImageBuildError
from ..images.service import BuildHooks
from ..store import check_app_name
from .containers import stream_logs
from .router import WRITTEN, Request
from .wire import LAST_CHUNK, NDJSON, event, stream_head

if TYPE_CHECKING:
    from .server import ControlServer


def _infos(version: Any) -> list[dict[str, Any]]:
    if version is None:
        return []
    return [{"tag": i.tag, "url": i.url, "host_url": i.host_url, "truncated": i.truncated,
             "requires_proxy_auth": i.requires_proxy_auth} for i in version.infos]


def _hooks(emit: Any) -> BuildHooks:
    return BuildHooks(progress=lambda s: emit({"progress": s}), log=lambda line: emit({"log": line}),
                      built=lambda im: emit({"built": {"id": im.id, "seconds": im.seconds, "cached": im.cached}}))


def _files(body: dict[str, Any]) -> dict[str, bytes]:
    check_paths(body["files"])  # before the 200: a bad path is a 400, and nothing is written
    return {rel: base64.b64decode(data) for rel, data in body["files"].items()}


async def list_apps(control: ControlServer, req: Request) -> Any:
    ws = req.workspace
    live = {a["key"]: a for a in control.server.describe_apps()}
    out = []
    if control.store is not None:
        for app in control.store.apps(ws):
            info = live.get(control.app_key(ws, app.name), {})
            out.append({"id": app.id, "name": app.name, "state": app.state, "version": app.current_version,
                        "containers": info.get("containers", 0), "created_at": app.created_at,
                        "stopped_at": app.stopped_at, "endpoints": info.get("endpoints", []),
                        "schedules": control.scheduler.upcoming(control.app_key(ws, app.name))})
    for key, info in live.items():
        if info["ephemeral"] and key.startswith(f"{ws.name}/"):
            out.append({"id": key, "name": info["name"], "state": "ephemeral", "version": info["version"],
                        "containers": info["containers"], "created_at": None, "stopped_at": None,
                        "endpoints": info["endpoints"], "schedules": control.scheduler.upcoming(key)})
    return out


async def deploy(control: ControlServer, req: Request) -> Any:
    body, ws, writer = req.json, req.workspace, req.writer
    if body.get("ephemeral"):
        return await _serve_ephemeral(control, req)
    store = control.needs_store()
    name = body["name"]
    check_app_name(name)
    manifest = Manifest.from_json(body["manifest"])
    files = _files(body)
    strategy = body.get("strategy") or "rolling"
    writer.write(stream_head(NDJSON))

    def emit(payload: dict[str, Any]) -> None:
        writer.write(event(payload))

    lock = control.deploy_locks.setdefault(f"{ws.id}/{name}", asyncio.Lock())
    started = time.perf_counter()
    server = control.server
    try:
        async with lock:
            bundle = write_bundle(server.settings.home, files)
            app = store.app(ws, name)
            if app is not None and app.state == "deployed" and app.current_version:
                current = store.version(app.id, app.current_version)
                if current.bundle_id == bundle.id and current.manifest == manifest.to_json():
                    version = server.apps.get(control.app_key(ws, name))
                    emit({"result": {"skipped": True, "version": app.current_version, "app_id": app.id,
                                     "endpoints": _infos(version), "seconds": time.perf_counter() - started}})
                    return WRITTEN
            # Build and validate first: a failure leaves the previous version serving, unrecorded.
            subdomains = [sub for _, sub, _ in server.plan_subdomains(manifest, False, ws.name)]
            server.check_secrets(manifest, ws.name)
            await server.build_images(manifest, _hooks(emit), ws.name, bundle)
            previous = store.app(ws, name)
            labels = store.labels_of(previous.id) if previous is not None else []
            app, record = store.add_version(ws, name, manifest.to_json(), bundle.id, body.get("tag") or "",
                                            subdomains)
            try:
                live = await server.publish(control.app_key(ws, name), manifest, bundle, ephemeral=False,
                                            strategy=strategy, workspace=ws.name, number=record.version)
            except BaseException:
                # A version that never served is not the current one: the store says what serves.
                store.undo_version(app, record.version, previous, labels)
                raise
            emit({"result": {"skipped": False, "version": record.version, "app_id": app.id,
                             "endpoints": _infos(live), "seconds": time.perf_counter() - started}})
    except (Error, ImageBuildError, ValueError, KeyError, OSError) as exc:
        emit({"error": str(exc)})
    finally:
        writer.write(LAST_CHUNK)
    return WRITTEN


async def _serve_ephemeral(control: ControlServer, req: Request) -> Any:
    """`sampan serve` on this server: a `-dev` app kept in memory while its CLI sends heartbeats."""
    body, ws, writer = req.json, req.workspace, req.writer
    key = control.ephemeral_key(ws, body["name"])
    manifest = Manifest.from_json(body["manifest"])
    files = _files(body)
    writer.write(stream_head(NDJSON))

    def emit(payload: dict[str, Any]) -> None:
        writer.write(event(payload))

    started = time.perf_counter()
    try:
        bundle = write_bundle(control.server.settings.home, files)
        control.heartbeats[key] = time.monotonic()
        live = await control.server.publish(key, manifest, bundle, ephemeral=True, hooks=_hooks(emit),
                                            workspace=ws.name)
        emit({"result": {"skipped": False, "version": live.number, "app_id": key, "endpoints": _infos(live),
                         "seconds": time.perf_counter() - started}})
    except (Error, ImageBuildError, ValueError, KeyError, OSError) as exc:
        emit({"error": str(exc)})
    finally:
        writer.write(LAST_CHUNK)
    return WRITTEN


def _served(control: ControlServer, req: Request) -> str:
    key = control.ephemeral_key(req.workspace, req.params["name"])
    if key not in control.server.apps:
        raise NotFoundError(f"No app '{req.params['name']}' is being served.")
    return key


async def ephemeral_heartbeat(control: ControlServer, req: Request) -> Any:
    control.heartbeats[_served(control, req)] = time.monotonic()
    return {"ok": True}


async def ephemeral_stop(control: ControlServer, req: Request) -> Any:
    key = _served(control, req)
    control.heartbeats.pop(key, None)
    await control.server.stop_app(key)
    return {"stopped": req.params["name"]}


async def ephemeral_logs(control: ControlServer, req: Request) -> Any:
    key = _served(control, req)
    ids = [c["id"] for c in control.server.describe_containers() if c["app_key"] == key]
    await stream_logs(control.server.logs, ids, req.query, req.writer, app_key=key)
    return WRITTEN


def _app(control: ControlServer, req: Request) -> Any:
    app = control.needs_store().app(req.workspace, req.params["name"])
    if app is None:
        raise NotFoundError(f"App '{req.params['name']}' not found in workspace '{req.workspace.name}'.")
    return app


async def stop(control: ControlServer, req: Request) -> Any:
    app = _app(control, req)
    control.needs_store().stop_app(app)
    await control.server.stop_app(control.app_key(req.workspace, app.name))
    return {"stopped": app.name}


async def history(control: ControlServer, req: Request) -> Any:
    store, app = control.needs_store(), _app(control, req)
    versions = {v.version: v for v in store.versions(app.id)}
    return {
        "app": app.name, "current": app.current_version,
        "versions": [{"version": v.version, "tag": v.tag, "created_at": v.created_at, "bundle": v.bundle_id}
                     for v in versions.values()],
        "events": [{"version": e.version, "action": e.action, "at": e.at} for e in store.events(app.id)],
    }


async def rollback(control: ControlServer, req: Request) -> Any:
    store, app, ws = control.needs_store(), _app(control, req), req.workspace
    versions = [v.version for v in store.versions(app.id)]
    target = req.json.get("version")
    if target is None:
        earlier = [v for v in versions if app.current_version and v < app.current_version]
        if not earlier:
            raise InvalidError(f"App '{app.name}' has no earlier version to roll back to.")
        target = earlier[-1]
    record = store.version(app.id, int(target))
    manifest = Manifest.from_json(record.manifest)
    bundle = control.server.bundle(record.bundle_id)
    await control.server.build_images(manifest, workspace=ws.name, bundle=bundle)
    live = await control.server.publish(control.app_key(ws, app.name), manifest, bundle, ephemeral=False,
                                        workspace=ws.name, number=record.version)
    store.set_current(app, record.version)  # only once it serves
    return {"version": record.version, "endpoints": _infos(live)}


async def logs(control: ControlServer, req: Request) -> Any:
    app = _app(control, req)
    key = control.app_key(req.workspace, app.name)
    ids = [c["id"] for c in control.server.describe_containers() if c["app_key"] == key]
    ids += [cid for cid in control.server.logs.containers_of(key) if cid not in ids]
    await stream_logs(control.server.logs, ids, req.query, req.writer, app_key=key)
    return WRITTEN


async def web_url(control: ControlServer, req: Request) -> Any:
    ws, app_name, tag = req.workspace, req.params["app"], req.params["tag"]
    live = control.server.apps.get(control.app_key(ws, app_name))
    if live is None:
        raise NotFoundError(f"App '{app_name}' is not deployed in workspace '{ws.name}'.")
    if tag not in live.web_urls and not any(s == tag or s.startswith(tag + ".")
                                            for s in [*live.manifest.other_functions, *live.web_urls]):
        raise NotFoundError(f"Function '{tag}' not found in app '{app_name}'.")
    return {"web_url": live.web_urls.get(tag)}
