"""The server's image service: which builder makes a server's images (root filesystems or virtual
environments) and building every image of a manifest with it, with progress for the person waiting."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from ...backends.base import Backend
from ...config import Settings
from ...manifest import Manifest
from ..bundle import Bundle
from .builder import BuiltImage, ImageBuilder
from .rootfs import RootfsBuilder


@dataclass
class BuildHooks:
    """What the CLI shows while images build: the current step, the installer's log, the result."""

    progress: Callable[[str], None] = lambda step: None
    log: Callable[[str], None] = lambda line: None
    built: Callable[[BuiltImage], None] = lambda image: None


def rootfs_builder(settings: Settings, backend: Backend, runtimes: ImageBuilder) -> RootfsBuilder | None:
    """Real images (root filesystems, rootfs.py) where the backend's containers can run them: in the
    sandbox of a root server, which can map the uid range an image's files are owned by. Elsewhere
    (the process runtime, a server that is not root) images are virtual environments (builder.py);
    `SAMPAN_IMAGE_BUILDER=venv` chooses those on purpose."""
    isolation = getattr(backend, "isolation", None)
    if settings.image_builder == "venv":
        return None
    if isolation is None or not isolation.enabled or not isolation.privileged:
        return None
    if shutil.which("mmdebstrap") is None:  # the README's first command must work on a fresh machine
        return None
    return RootfsBuilder(settings.images_dir, isolation.uid, count=isolation.count, slirp=isolation.slirp,
                         constraints=runtimes.constraints, runtimes=runtimes)


async def build_images(images: ImageBuilder, rootfs: RootfsBuilder | None, manifest: Manifest, hooks: BuildHooks,
                       resolve: Callable[[str, list[str]], dict[str, str]], workspace: str, bundle: Bundle | None,
                       cache_max: int, in_use: Callable[[], set[str]]) -> list[BuiltImage | None]:
    """Build (or find) the image of every function (web ones, then the others, as in
    `manifest.functions + manifest.calls`); None where a function declares no image. Root filesystem
    images are claimed for `workspace`, and the cache is trimmed to `cache_max` bytes (0: no cap),
    sparing the images `in_use()`."""
    built: dict[str, BuiltImage] = {}
    out: list[BuiltImage | None] = []

    def build_secrets(name: str) -> dict[str, str]:  # a build step's `secrets=` (named Secrets)
        return resolve(name, [])

    for entry in [*manifest.functions, *manifest.calls]:
        if not entry.image:
            out.append(None)  # no image anywhere: Sampan's own environment (docs/architecture.md)
            continue
        key = json.dumps(entry.image, sort_keys=True)
        if key not in built:
            if rootfs is not None:
                image = await rootfs.build(list(entry.image), log=hooks.log, progress=hooks.progress,
                                           secrets=build_secrets, scope=workspace,
                                           code=(bundle.path, manifest.module) if bundle else None)
                rootfs.claim(image.id, workspace)
                if not image.cached and cache_max:
                    await asyncio.to_thread(rootfs.enforce_cap, cache_max, in_use() | {image.id})
            else:
                image = await images.build(list(entry.image), log=hooks.log, progress=hooks.progress)
            built[key] = image
            hooks.built(image)
        out.append(built[key])
    return out
