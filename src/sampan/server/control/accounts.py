"""Routes of a workspace's credentials: health (who am I), API tokens, secrets, proxy tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...exception import InvalidError, NotFoundError
from .router import Request

if TYPE_CHECKING:
    from .server import ControlServer


async def health(control: ControlServer, req: Request) -> Any:
    return {"ok": True, "server_id": control.server.settings.server_id, "workspace": req.workspace.name}


async def new_token(control: ControlServer, req: Request) -> Any:
    token_id, secret = control.needs_store().create_token(req.workspace)
    return {"token_id": token_id, "token_secret": secret, "workspace": req.workspace.name}


async def list_secrets(control: ControlServer, req: Request) -> Any:
    return [{"name": s.name, "created_at": s.created_at, "updated_at": s.updated_at, "keys": list(s.keys)}
            for s in control.needs_store().secrets(req.workspace)]


async def put_secret(control: ControlServer, req: Request) -> Any:
    body = req.json
    values = body.get("values") or {}
    if not isinstance(values, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
        raise InvalidError("Secret values must be strings.")
    control.needs_store().put_secret(req.workspace, body["name"], values, force=bool(body.get("force")))
    return {"name": body["name"], "keys": sorted(values)}


async def delete_secret(control: ControlServer, req: Request) -> Any:
    name = req.params["name"]
    if not control.needs_store().delete_secret(req.workspace, name):
        raise NotFoundError(f"Secret '{name}' not found.")
    return {"deleted": name}


async def list_proxy_tokens(control: ControlServer, req: Request) -> Any:
    return [{"token_id": t.id, "name": t.name, "created_at": t.created_at}
            for t in control.needs_store().proxy_tokens(req.workspace)]


async def new_proxy_token(control: ControlServer, req: Request) -> Any:
    token_id, secret = control.needs_store().create_proxy_token(req.workspace, req.json.get("name") or "")
    return {"token_id": token_id, "token_secret": secret}


async def delete_proxy_token(control: ControlServer, req: Request) -> Any:
    token_id = req.params["id"]
    if not control.needs_store().delete_proxy_token(req.workspace, token_id):
        raise NotFoundError(f"Proxy token '{token_id}' not found.")
    return {"deleted": token_id}
