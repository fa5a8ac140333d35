"""Every route of the control API, in one table (what `tests/e2e/test_tenants.py` attacks, route by route).

Authentication happens before any route (auth.py): each handler gets the caller's workspace and
filters everything by it, so a token of workspace A never sees or changes workspace B.
"""

from __future__ import annotations

from . import accounts, apps, calls, containers, images, objects, observe, sandboxes
from .router import Route

ROUTES: list[Route] = [
    Route("GET", "/v1/health", accounts.health),                        # {"ok", "server_id", "workspace"}
    Route("POST", "/v1/tokens", accounts.new_token),                    # a new API token of the caller's workspace
    # apps
    Route("GET", "/v1/apps", apps.list_apps),                           # the workspace's apps, live state included
    Route("POST", "/v1/deploy", apps.deploy),                           # {name, manifest, files, ...} -> NDJSON
    Route("POST", "/v1/apps/{name}/stop", apps.stop),
    Route("POST", "/v1/apps/{name}/rollback", apps.rollback),           # {version?}
    Route("GET", "/v1/apps/{name}/history", apps.history),
    Route("GET", "/v1/apps/{name}/logs", apps.logs),                    # ?n=&follow=1&since=&until=&search=&source=
    Route("GET", "/v1/functions/{app}/{tag}", apps.web_url),            # {"web_url"}
    Route("GET", "/v1/apps/{name}/requests", observe.requests),         # NDJSON; ?status=5xx&since=10m&n=&follow=1
    Route("GET", "/v1/apps/{name}/stats", observe.stats),
    Route("GET", "/metrics", observe.metrics),                          # Prometheus's text format
    Route("POST", "/v1/dashboard/login", observe.dashboard_login),      # {"url"}: opens a session, once
    Route("POST", "/v1/ephemeral/{name}/heartbeat", apps.ephemeral_heartbeat),  # a `sampan serve` on this server
    Route("POST", "/v1/ephemeral/{name}/stop", apps.ephemeral_stop),
    Route("GET", "/v1/ephemeral/{name}/logs", apps.ephemeral_logs),
    # containers
    Route("GET", "/v1/containers", containers.list_containers),
    Route("GET", "/v1/containers/{id}/logs", containers.logs),
    Route("POST", "/v1/containers/{id}/stop", containers.stop),         # {graceful}
    Route("POST", "/v1/containers/{id}/exec", containers.exec_in),      # {argv, timeout} -> {code, stdout, stderr}
    # calls
    Route("POST", "/v1/calls", calls.call),                             # {app, app_key?, function, params, args, mode}
    Route("GET", "/v1/calls/{id}", calls.result),                       # ?timeout= -> {"status", "result", "graph"}
    Route("POST", "/v1/calls/{id}/cancel", calls.cancel),
    Route("GET", "/v1/calls/{id}/logs", calls.logs),                   # the lines printed while running it
    Route("POST", "/v1/autoscaler", calls.autoscaler),                  # {app, app_key?, function, settings}
    # sandboxes (modal.Sandbox)
    Route("POST", "/v1/sandboxes", sandboxes.create),                   # {app|app_key, cmd, image, ...}
    Route("GET", "/v1/sandboxes", sandboxes.listed),                    # ?app=&tag.K=V: running, newest first
    Route("GET", "/v1/sandboxes/{id}", sandboxes.get),
    Route("GET", "/v1/sandboxes/by-name/{app}/{name}", sandboxes.by_name),  # ?include_terminated=1
    Route("POST", "/v1/sandboxes/{id}/wait", sandboxes.wait),           # {timeout}: long poll for its end
    Route("POST", "/v1/sandboxes/{id}/terminate", sandboxes.terminate),
    Route("POST", "/v1/sandboxes/{id}/tags", sandboxes.set_tags),       # {tags}
    Route("POST", "/v1/sandboxes/{id}/exec", sandboxes.exec_),          # {argv, workdir, env, secrets, pty, timeout}
    Route("POST", "/v1/sandboxes/{id}/io", sandboxes.io),               # {process, op: read|write|eof|wait|kill}
    Route("POST", "/v1/sandboxes/{id}/fs", sandboxes.fs),               # {op: read|write|stat|list|mkdir|...}
    Route("POST", "/v1/sandboxes/{id}/ready", sandboxes.ready),         # the readiness probe's answer
    Route("POST", "/v1/sandboxes/{id}/snapshot", sandboxes.snapshot),   # {timeout} -> an image's recipe
    # shared objects
    Route("GET", "/v1/objects/{kind}", objects.names),                  # kind: dict | queue
    Route("POST", "/v1/objects/{kind}/{name}", objects.operate),        # {op, create_if_missing, ...}
    Route("DELETE", "/v1/objects/{kind}/{name}", objects.delete),
    Route("GET", "/v1/volumes", objects.volume_names),
    Route("POST", "/v1/volumes/{name}", objects.volume_op),             # {op: create|listdir|read|upload|...}
    Route("DELETE", "/v1/volumes/{name}", objects.volume_delete),
    # credentials
    Route("GET", "/v1/secrets", accounts.list_secrets),
    Route("POST", "/v1/secrets", accounts.put_secret),                  # {name, values, force}
    Route("DELETE", "/v1/secrets/{name}", accounts.delete_secret),
    Route("GET", "/v1/proxy-tokens", accounts.list_proxy_tokens),
    Route("POST", "/v1/proxy-tokens", accounts.new_proxy_token),        # {name}
    Route("DELETE", "/v1/proxy-tokens/{id}", accounts.delete_proxy_token),
    # images
    Route("GET", "/v1/images", images.list_images),
    Route("DELETE", "/v1/images/{id}", images.delete),
    Route("POST", "/v1/images/prune", images.prune),                    # {older_than}
]
