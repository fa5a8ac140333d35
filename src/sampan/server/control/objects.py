"""Routes of a workspace's shared objects: Dicts and Queues (server/objects.py), Volumes (server/volumes.py).

Keys and values travel base64-encoded (they are pickles); names are checked by the object stores.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from ..objects import check_name
from .router import Request

if TYPE_CHECKING:
    from .server import ControlServer


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def names(control: ControlServer, req: Request) -> Any:
    kind = req.params["kind"]
    check_name(kind, "x")
    return control.shared_objects().names(req.workspace, kind)


async def delete(control: ControlServer, req: Request) -> Any:
    control.shared_objects().delete(req.workspace, req.params["kind"], req.params["name"])
    return {"deleted": req.params["name"]}


async def operate(control: ControlServer, req: Request) -> Any:
    objects, kind = control.shared_objects(), req.params["kind"]
    body = dict(req.json)
    oid = objects.lookup(req.workspace, kind, req.params["name"], create=bool(body.get("create_if_missing")))
    b64 = base64.b64decode
    for field_name in ("key", "value"):
        if body.get(field_name) is not None:
            body[field_name] = b64(body[field_name])
    if "items" in body:
        body["items"] = [(b64(k), b64(v)) for k, v in body["items"]]
    if "values" in body:
        body["values"] = [b64(v) for v in body["values"]]
    op = body.get("op", "")
    result = objects.dict_op(oid, op, body) if kind == "dict" else await objects.queue_op(oid, op, body)
    if result.get("value") is not None:
        result["value"] = _b64(result["value"])
    if "values" in result:
        result["values"] = [_b64(v) for v in result["values"]]
    if "items" in result:
        result["items"] = [[_b64(k), _b64(v)] for k, v in result["items"]]
    return result


async def volume_names(control: ControlServer, req: Request) -> Any:
    return control.server.volumes.names(req.workspace.name)


async def volume_delete(control: ControlServer, req: Request) -> Any:
    control.server.volumes.delete(req.workspace.name, req.params["name"])
    return {"deleted": req.params["name"]}


async def volume_op(control: ControlServer, req: Request) -> Any:
    return control.server.volumes.op(req.workspace.name, req.params["name"], req.json)
