"""Routes of root filesystem images (server/images/rootfs.py): list, release, prune. A workspace sees
and releases only the images it claimed; layers go when no workspace and no running app needs them."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from ...exception import InvalidError, NotFoundError
from .router import Request

if TYPE_CHECKING:
    from .server import ControlServer

IMAGE_ID = re.compile(r"^im-[0-9a-f]{20}$")


def _builder(control: ControlServer) -> Any:
    if control.server.rootfs is None:
        raise InvalidError("This server builds images as virtual environments (the process runtime, or a "
                           "server that is not root); `sampan image` manages root filesystem images only.")
    return control.server.rootfs


async def list_images(control: ControlServer, req: Request) -> Any:
    return await asyncio.to_thread(_builder(control).images, req.workspace.name)


async def delete(control: ControlServer, req: Request) -> Any:
    builder, image_id = _builder(control), req.params["id"]
    if not IMAGE_ID.match(image_id) or not builder.release(image_id, req.workspace.name):
        raise NotFoundError(f"Image '{image_id}' not found.")
    await asyncio.to_thread(builder.collect, control.server.images_in_use())
    return {"deleted": image_id}


async def prune(control: ControlServer, req: Request) -> Any:
    builder = _builder(control)
    older = float(req.json.get("older_than") or 0)
    if older < 0:
        raise InvalidError("older_than must not be negative.")
    released = await asyncio.to_thread(builder.prune, req.workspace.name, control.server.images_in_use(), older)
    return {"deleted": released}
