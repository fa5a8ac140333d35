"""Two workspaces attack each other through every route of the control API and the gateway, on a real
server process (issue: correct under real apps, safe under hostile tenants).

`ATTACKS` names, for every route of the control API's route table (server/control/routes.py),
where it is attacked here: a new route without an attack fails
`test_every_control_route_is_attacked`.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import stat
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from sampan.runtime import sandbox
from sampan.server import control
from tests.e2e.test_deploy import Sampan, sampan  # noqa: F401 - the fixture
from tests.helpers import wait_until
from tests.server_helpers import load

pytestmark = pytest.mark.slow

ATTACKS = {
    "GET /v1/health": "health names the caller's own workspace",
    "GET /v1/apps": "bob lists no app of alice",
    "POST /v1/deploy": "bundle paths, a stolen custom domain, an unpublished version",
    "POST /v1/apps/{name}/stop": "bob cannot stop alice's app",
    "POST /v1/apps/{name}/rollback": "bob cannot roll it back",
    "GET /v1/apps/{name}/history": "nor read its history",
    "GET /v1/apps/{name}/logs": "nor its logs",
    "GET /v1/apps/{name}/requests": "nor its request log",
    "GET /v1/apps/{name}/stats": "nor its stats",
    "GET /metrics": "bob's metrics name none of alice's apps; no token, no metrics",
    "POST /v1/dashboard/login": "bob's dashboard link opens a session that sees none of alice's apps",
    "GET /v1/functions/{app}/{tag}": "nor look its functions up",
    "GET /v1/containers": "nor list its containers",
    "GET /v1/containers/{id}/logs": "nor read a container's logs, running or stopped",
    "POST /v1/containers/{id}/stop": "nor stop a container of hers",
    "POST /v1/containers/{id}/exec": "nor run a command in it",
    "GET /v1/secrets": "bob lists only his secrets",
    "POST /v1/secrets": "bob's secret of the same name is his own",
    "DELETE /v1/secrets/{name}": "bob cannot delete alice's",
    "GET /v1/proxy-tokens": "bob lists only his proxy tokens",
    "POST /v1/proxy-tokens": "bob's proxy token does not open alice's endpoints",
    "DELETE /v1/proxy-tokens/{id}": "bob cannot delete alice's",
    "POST /v1/calls": "bob cannot call alice's functions",
    "POST /v1/autoscaler": "nor change their autoscaling",
    "GET /v1/calls/{id}": "nor read her spawned calls",
    "POST /v1/calls/{id}/cancel": "nor cancel them",
    "GET /v1/calls/{id}/logs": "nor read what they printed",
    "POST /v1/objects/{kind}/{name}": "bob's Dict of the same name is his own; '..' is no name",
    "GET /v1/objects/{kind}": "bob lists only his",
    "DELETE /v1/objects/{kind}/{name}": "bob cannot delete alice's",
    "POST /v1/volumes/{name}": "'..' and '.' are no Volume names; bob cannot read alice's",
    "GET /v1/volumes": "bob lists only his",
    "DELETE /v1/volumes/{name}": "DELETE of '..' is refused and alice's data stays",
    "POST /v1/tokens": "a token bob makes is for bob's workspace",
    "GET /v1/images": "bob lists none of alice's images",
    "DELETE /v1/images/{id}": "bob cannot remove alice's image; a bad id is no path",
    "POST /v1/images/prune": "bob's prune keeps alice's images",
    "POST /v1/ephemeral/{name}/heartbeat": "bob cannot keep alice's serve session alive",
    "POST /v1/ephemeral/{name}/stop": "nor stop it",
    "GET /v1/ephemeral/{name}/logs": "nor read its logs",
    "POST /v1/sandboxes": "bob cannot put a sandbox in alice's app",
    "GET /v1/sandboxes": "bob lists none of alice's sandboxes",
    "GET /v1/sandboxes/{id}": "nor finds one by id",
    "GET /v1/sandboxes/by-name/{app}/{name}": "nor by name",
    "POST /v1/sandboxes/{id}/wait": "nor waits on one",
    "POST /v1/sandboxes/{id}/terminate": "nor terminates it",
    "POST /v1/sandboxes/{id}/tags": "nor tags it",
    "POST /v1/sandboxes/{id}/exec": "nor runs a command in it",
    "POST /v1/sandboxes/{id}/io": "nor reads or writes its processes",
    "POST /v1/sandboxes/{id}/fs": "nor its files",
    "POST /v1/sandboxes/{id}/ready": "nor probes it",
    "POST /v1/sandboxes/{id}/snapshot": "nor snapshots its files (test_modal_sandbox: nor uses her snapshots)",
}


def control_routes() -> set[str]:
    """`METHOD /path` of every route in the control API's route table (server/control/routes.py)."""
    return {f"{route.method} {route.pattern}" for route in control.ROUTES}


def test_every_control_route_is_attacked() -> None:
    routes = control_routes()
    assert len(routes) >= 25
    missing = routes - set(ATTACKS)
    assert not missing, f"routes of server/control/routes.py without an attack in this file: {sorted(missing)}"
    assert not set(ATTACKS) - routes, f"attacks on routes that do not exist: {sorted(set(ATTACKS) - routes)}"


class Api:
    """Raw HTTP to the control API, as an attacker writes it (no client library smoothing anything)."""

    def __init__(self, url: str, token: str | bytes | None) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token = token

    def raw(self, method: str, path: str, body: bytes | None = None,
            headers: dict[str, Any] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            all_headers: dict[str, Any] = dict(headers or {})
            if self.token is not None:
                token = self.token if isinstance(self.token, bytes) else self.token.encode()
                all_headers["Authorization"] = b"Bearer " + token
            if body is not None:
                all_headers["Content-Type"] = "application/json"
            conn.request(method, path, body=body, headers=all_headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, data = self.raw(method, path, json.dumps(body).encode() if body is not None else None)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data.decode(errors="replace")


ALICE_APP = """
    import modal

    app = modal.App("shop", image=modal.Image.debian_slim().env({"SHOP": "RUN_TOKEN"}))
    vol = modal.Volume.from_name("data", create_if_missing=True)

    @app.function(secrets=[modal.Secret.from_dict({"INLINE": "inline-secret-value-123"})], volumes={"/data": vol})
    @modal.fastapi_endpoint(custom_domains=["shop.example.localhost"])
    def square(x: int = 3):
        import os
        return {"square": x * x, "inline": os.environ["INLINE"] == "inline-secret-value-123"}

    @app.function()
    def slow(seconds: float) -> float:
        import time
        time.sleep(seconds)
        return seconds
"""


@pytest.fixture
def two(sampan: Sampan, tmp_path: Path) -> Iterator[tuple[Sampan, Api, Api, str]]:  # noqa: F811
    started = sampan.run("server", "start")
    if sandbox.probe() is None:  # the runtime is said at start, and in `server status`
        assert "Containers: sandbox" in started.stdout
        assert "containers: sandbox" in sampan.run("server", "status").stdout
    config = (sampan.home / "config.toml").read_text()
    token_id = re.search(r'token_id = "([^"]+)"', config).group(1)  # type: ignore[union-attr]
    token_secret = re.search(r'token_secret = "([^"]+)"', config).group(1)  # type: ignore[union-attr]
    other = sampan.json("token", "new", "--workspace", "bob")
    assert isinstance(other, dict) and other["workspace"] == "bob"
    assert (sampan.home / "config.toml").read_text() == config, "a token for another workspace replaced mine"
    url = json.loads(next((sampan.home / "servers").glob("*.json")).read_text())["control_url"]
    yield sampan, Api(url, f"{token_id}:{token_secret}"), Api(url, f"{other['token_id']}:{other['token_secret']}"), url


def _deploy_body(tmp_path: Path, source: str, name: str, files: dict[str, bytes] | None = None) -> dict[str, Any]:
    app = tmp_path / "sources" / f"{name}.py"
    app.parent.mkdir(exist_ok=True)
    app.write_text(textwrap.dedent(source))
    manifest, root, rels = load(app)
    found = files if files is not None else {rel: (root / rel).read_bytes() for rel in rels}
    return {"name": name, "manifest": manifest.to_json(),
            "files": {rel: base64.b64encode(data).decode() for rel, data in found.items()}}


def _ndjson_result(answer: Any) -> dict[str, Any]:
    if isinstance(answer, dict):  # a one-line stream parses as one JSON object
        return answer
    events = [json.loads(line) for line in str(answer).splitlines() if line.strip()]
    return next(e for e in events if "result" in e or "error" in e)


def test_two_workspaces_attack_each_other_through_every_route(two: tuple[Sampan, Api, Api, str],
                                                              tmp_path: Path) -> None:
    cli, alice, bob, url = two
    home = cli.home

    # Alice deploys an app with an inline secret, a Volume and a custom domain, and makes some state.
    app = tmp_path / "shop.py"
    # (an image of this run's own: the image directory, and who used which image, outlive a test run)
    app.write_text(textwrap.dedent(ALICE_APP.replace("RUN_TOKEN", tmp_path.name + str(os.getpid()))))
    cli.run("deploy", str(app))
    shop = cli.urls("shop")["square"]
    assert requests.get(shop, timeout=60).json() == {"square": 9, "inline": True}
    cli.run("secret", "create", "alice-only", "K=V")
    assert alice("POST", "/v1/objects/dict/alice-dict", {"op": "put", "create_if_missing": True,
                                                         "key": base64.b64encode(b"k").decode(),
                                                         "value": base64.b64encode(b"v").decode()})[0] == 200
    assert alice("POST", "/v1/volumes/data", {"op": "upload", "files": {"keep.txt": base64.b64encode(b"x").decode()},
                                              "force": True})[0] == 200
    status, proxy = alice("POST", "/v1/proxy-tokens", {"name": "alice-proxy"})
    assert status == 200
    status, spawned = alice("POST", "/v1/calls", {"app": "shop", "function": "slow", "params": {}, "mode": "spawn",
                                                  "args": _args(30.0)})
    assert status == 200, spawned
    call_id = spawned["call_id"]
    status, box = alice("POST", "/v1/sandboxes", {"app": "shop", "name": "alice-box", "timeout": 600})
    assert status == 200, box
    box_id = box["sandbox_id"]
    alice_containers = wait_until(lambda: alice("GET", "/v1/containers")[1], timeout=30)
    cid = alice_containers[0]["id"]

    # The caller's workspace is the only one it sees.
    assert bob("GET", "/v1/health")[1]["workspace"] == "bob"
    assert bob("GET", "/v1/apps") == (200, [])
    for method, path in (("POST", "/v1/apps/shop/stop"), ("POST", "/v1/apps/shop/rollback"),
                         ("GET", "/v1/apps/shop/history"), ("GET", "/v1/apps/shop/logs"),
                         ("GET", "/v1/apps/shop/requests"), ("GET", "/v1/apps/shop/stats"),
                         ("GET", "/v1/functions/shop/square"), ("GET", f"/v1/containers/{cid}/logs"),
                         ("DELETE", "/v1/secrets/alice-only"), ("DELETE", f"/v1/proxy-tokens/{proxy['token_id']}"),
                         ("GET", f"/v1/calls/{call_id}?timeout=0"), ("POST", f"/v1/calls/{call_id}/cancel"),
                         ("GET", f"/v1/calls/{call_id}/logs"),
                         ("DELETE", "/v1/objects/dict/alice-dict"), ("DELETE", "/v1/volumes/data"),
                         ("POST", "/v1/ephemeral/shop/heartbeat"), ("POST", "/v1/ephemeral/shop/stop"),
                         ("GET", "/v1/ephemeral/shop/logs"), ("POST", f"/v1/containers/{cid}/stop"),
                         ("POST", f"/v1/containers/{cid}/exec")):
        status, answer = bob(method, path)
        assert status == 404, (method, path, status, answer)
    for method, path in (("GET", f"/v1/sandboxes/{box_id}"), ("GET", "/v1/sandboxes/by-name/shop/alice-box"),
                         ("POST", f"/v1/sandboxes/{box_id}/wait"), ("POST", f"/v1/sandboxes/{box_id}/terminate"),
                         ("POST", f"/v1/sandboxes/{box_id}/ready"), ("POST", f"/v1/sandboxes/{box_id}/snapshot")):
        status, answer = bob(method, path)
        assert status == 404, (method, path, status, answer)
    for path, body in ((f"/v1/sandboxes/{box_id}/tags", {"tags": {"mine": "yes"}}),
                       (f"/v1/sandboxes/{box_id}/exec", {"argv": ["id"]}),
                       (f"/v1/sandboxes/{box_id}/io", {"process": "main", "op": "read"}),
                       (f"/v1/sandboxes/{box_id}/fs", {"op": "read", "path": "/etc/hostname"})):
        status, answer = bob("POST", path, body)
        assert status == 404, (path, status, answer)
    assert bob("GET", "/v1/sandboxes") == (200, [])
    status, answer = bob("POST", "/v1/sandboxes", {"app_key": "alice/shop", "timeout": 60})
    assert status == 400 and "not of your workspace" in answer["error"]
    status, ran = alice("POST", f"/v1/sandboxes/{box_id}/exec", {"argv": ["echo", "alice ran this"]})
    assert status == 200, ran
    status, read = alice("POST", f"/v1/sandboxes/{box_id}/io", {"process": ran["process"], "op": "read", "wait": 10})
    assert status == 200 and base64.b64decode(read["data"]) == b"alice ran this\n"
    assert alice("POST", f"/v1/sandboxes/{box_id}/terminate")[1]["returncode"] == 137
    assert bob("GET", "/v1/containers") == (200, [])
    status, scraped = bob.raw("GET", "/metrics")
    assert status == 200 and b"shop" not in scraped and b"alice" not in scraped
    status, scraped = alice.raw("GET", "/metrics")
    assert status == 200 and b'app="alice/shop"' in scraped and b"sampan_requests_total" in scraped
    assert Api(alice.url, None).raw("GET", "/metrics")[0] == 401
    # the dashboard: bob's one-time link opens a session of bob's workspace only; no token, no link
    assert Api(alice.url, None).raw("POST", "/v1/dashboard/login")[0] == 401
    link = bob("POST", "/v1/dashboard/login")[1]["url"]
    opened = requests.get(link, allow_redirects=False, timeout=30)
    assert opened.status_code == 303 and requests.get(link, allow_redirects=False, timeout=30).status_code == 401
    cookies = {"sampan_session": opened.cookies["sampan_session"]}
    listed = requests.get(f"{alice.url}/dashboard/", cookies=cookies, timeout=30)
    assert listed.status_code == 200 and "/dashboard/apps/shop" not in listed.text
    for path in ("/dashboard/apps/shop", f"/dashboard/containers/{cid}", f"/dashboard/calls/{call_id}",
                 "/dashboard/apps/shop/series.json", "/dashboard/volumes/data",
                 "/dashboard/apps/alice%2Fshop", "/dashboard/apps/alice%2Fshop/requests"):
        assert requests.get(f"{alice.url}{path}", cookies=cookies, timeout=30).status_code == 404, path
    assert [s["name"] for s in bob("GET", "/v1/secrets")[1]] == []
    assert bob("POST", "/v1/secrets", {"name": "alice-only", "values": {"K": "bob"}})[0] == 200
    assert [t["name"] for t in bob("GET", "/v1/proxy-tokens")[1]] == []
    assert bob("GET", "/v1/objects/dict") == (200, [])
    assert bob("GET", "/v1/volumes") == (200, [])
    status, answer = bob("POST", "/v1/calls", {"app": "shop", "function": "slow", "params": {}, "mode": "call",
                                               "args": _args(0.0)})
    assert status == 404, answer
    status, answer = bob("POST", "/v1/autoscaler", {"app": "shop", "function": "slow",
                                                     "settings": {"min_containers": 5}})
    assert status == 404, answer
    status, answer = bob("POST", "/v1/objects/dict/alice-dict", {"op": "len"})
    assert status == 404, answer
    status, answer = bob("POST", "/v1/volumes/data", {"op": "listdir", "path": "/"})
    assert status == 404, answer
    # a piece of an upload lands in bob's own namespace: alice's Volume is none of his
    status, answer = bob("POST", "/v1/volumes/data", {"op": "write", "path": "/keep.txt", "force": True,
                                                       "upload_id": "ab" * 16, "offset": 0, "final": True,
                                                       "data": base64.b64encode(b"bob").decode()})
    assert status == 404, answer
    status, read = alice("POST", "/v1/volumes/data", {"op": "read", "path": "/keep.txt"})
    assert status == 200 and base64.b64decode(read["data"]) == b"x"
    # a sandbox's image files are bundle paths: none leads out
    status, answer = bob("POST", "/v1/sandboxes", {"app": "mine", "timeout": 60,
                                                   "files": {"../../escape": base64.b64encode(b"x").decode()}})
    assert status == 400, answer
    status, minted = bob("POST", "/v1/tokens")
    assert status == 200 and minted["workspace"] == "bob"
    # bob's proxy token does not open alice's endpoints (they need none; a private one is checked in test_deploy)
    assert bob("POST", "/v1/proxy-tokens", {"name": "bob-proxy"})[0] == 200

    # Images: a workspace sees and removes only the images it built or used.
    status, images = alice("GET", "/v1/images")
    if status == 200:  # real images (a root server with the sandbox)
        # (the image directory is shared by the test run: earlier tests' images may be listed too)
        steps = {i["id"]: i["steps"] for i in images}
        image_id = next(i for i, s in steps.items() if any("env" in (step or "") for step in s))
        status, bobs = bob("GET", "/v1/images")
        assert status == 200 and image_id not in [i["id"] for i in bobs]
        assert bob("DELETE", f"/v1/images/{image_id}")[0] == 404
        assert bob("DELETE", "/v1/images/im-..%2F..%2Flayers")[0] == 404
        assert image_id not in bob("POST", "/v1/images/prune", {"older_than": 0})[1]["deleted"]
        assert image_id in [i["id"] for i in alice("GET", "/v1/images")[1]]
        # her running app uses it (and the other images of the test run were used within the hour)
        assert image_id not in alice("POST", "/v1/images/prune", {"older_than": 3600})[1]["deleted"]
        assert image_id in [i["id"] for i in alice("GET", "/v1/images")[1]]
    else:
        assert status == 400 and "virtual environments" in str(images)

    # Names with no letter or digit would be the workspace's own directory or its parent (finding 8).
    for name in ("..", ".", "...", "-"):
        for kind in ("volumes", "objects/dict", "objects/queue"):
            status, answer = bob("POST", f"/v1/{kind}/{name}", {"op": "listdir" if kind == "volumes" else "len",
                                                                 "path": "/", "create_if_missing": True})
            assert status == 400, (kind, name, status, answer)
        assert bob("DELETE", f"/v1/volumes/{name}")[0] == 400
    assert (home / "volumes" / "alice" / "data" / "keep.txt").read_bytes() == b"x"

    # Bundles name relative paths only (finding 11): nothing is written outside the bundle.
    for evil in ("../../evil.py", "/tmp/sampan-evil.py", "a/../../evil.py", "./x.py"):
        body = _deploy_body(tmp_path, "import modal\napp = modal.App('evil')\n", "evil", {evil: b"print('pwned')"})
        status, answer = bob("POST", "/v1/deploy", body)
        assert status == 400 and "Invalid path in the code bundle" in str(answer), (evil, status, answer)
    assert not (home.parent / "evil.py").exists() and not Path("/tmp/sampan-evil.py").exists()

    # A custom domain belongs to the workspace that claimed it first (finding 9), and the version that
    # failed to publish is not recorded (finding 12).
    thief = ALICE_APP.replace('"shop"', '"thief"').replace('name("data"', 'name("bobdata"')
    status, answer = bob("POST", "/v1/deploy", _deploy_body(tmp_path, thief, "thief"))
    assert status == 200 and "already in use by another workspace" in _ndjson_result(answer).get("error", "")
    assert bob("GET", "/v1/apps") == (200, [])
    gateway = urlsplit(shop)
    routed = requests.get(f"http://127.0.0.1:{_gateway_port(cli)}/?x=4", headers={"Host": "shop.example.localhost"},
                          timeout=60)
    assert routed.json()["square"] == 16 and gateway.port is not None

    # Malformed requests get a clear 4xx and the server keeps serving (finding 17).
    assert Api(url, b"\xff").raw("GET", "/v1/apps")[0] == 401
    assert Api(url, None).raw("GET", "/v1/apps")[0] == 401
    assert alice.raw("POST", "/v1/objects/dict/alice-dict", b"{not json")[0] == 400
    assert alice.raw("POST", "/v1/objects/dict/alice-dict", b"[1, 2]")[0] == 400
    assert alice("GET", "/v1/health")[0] == 200

    # Inline secrets are not in the store as plain text (finding 16).
    for path in home.glob("state.db*"):
        assert b"inline-secret-value-123" not in path.read_bytes(), path

    # Private files (finding 17).
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "server.log").stat().st_mode) == 0o600

    # Alice stops her app: its container's logs stay hers, and the domain is free again.
    alice("POST", f"/v1/calls/{call_id}/cancel")
    cli.run("app", "stop", "shop", "--yes")
    assert bob("GET", f"/v1/containers/{cid}/logs")[0] == 404
    assert alice("GET", f"/v1/containers/{cid}/logs?n=5")[0] == 200
    status, answer = bob("POST", "/v1/deploy", _deploy_body(tmp_path, thief, "thief"))
    assert "result" in _ndjson_result(answer), answer


def _args(*values: Any) -> str:
    import cloudpickle

    return base64.b64encode(cloudpickle.dumps((values, {}))).decode()


def _gateway_port(cli: Sampan) -> int:
    """The gateway's Host-routed port, as the server logged it at start."""
    found = re.search(r"gateway on http://[^:]+:(\d+)", (cli.home / "server.log").read_text())
    assert found is not None
    return int(found.group(1))


COPYING_APP = """
    import modal

    image = (modal.Image.debian_slim().add_local_file(FILE, "/root/baked.txt", copy=True)
             .pip_install_from_requirements(REQUIREMENTS))
    app = modal.App("baker", image=image)

    @app.function()
    @modal.fastapi_endpoint()
    def read():
        import tomli_w  # installed from the client's requirements file
        return open("/root/baked.txt").read() + " + " + tomli_w.__name__
"""


def test_a_shared_server_builds_from_what_a_client_sent_never_from_its_own_files(
        two: tuple[Sampan, Api, Api, str], tmp_path: Path) -> None:
    """An image step names a path that the server would read on its own disk. Before, a tenant baked the
    server's secret key into an image of their own with `add_local_file(<server path>, copy=True)`, or saw
    lines of a server file in a build's error (a requirements file). Now `copy=True` sources come with the
    app (`sampan deploy` sends them, as it sends requirement files) and are all the server reads; a
    Dockerfile's sources are not sent, so a step that copies them is refused before any build."""
    cli, _, bob, _ = two
    secret = cli.home / "server-only.txt"
    secret.write_text("the server's own file")
    for step, expected in ((f".add_local_file({str(secret)!r}, '/root/loot', copy=True)", "did not come with the app"),
                           (f".uv_pip_install(requirements=[{str(secret)!r}])", "did not come with the app"),
                           (f".dockerfile_commands('COPY {secret.name} /root/loot', context_dir={str(cli.home)!r})",
                            "reads files of the machine")):
        source = f"""
            import modal

            app = modal.App("loot", image=modal.Image.debian_slim(){step})

            @app.function()
            @modal.fastapi_endpoint()
            def read():
                return open("/root/loot").read()
        """
        body = _deploy_body(tmp_path, source, "loot", files={"loot.py": textwrap.dedent(source).encode()})
        status, answer = bob("POST", "/v1/deploy", body)  # no upload: a client that names the path only
        result = _ndjson_result(answer)
        assert "error" in result and expected in str(result["error"]), (status, result)
    assert all(a["name"] != "loot" for a in bob("GET", "/v1/apps")[1])
    # A real client sends what `copy=True` copies, and the image holds the client's bytes.
    local = tmp_path / "mine.txt"
    local.write_text("the client's own file")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tomli-w==1.0.0\n")
    app = tmp_path / "baker.py"
    app.write_text(textwrap.dedent(COPYING_APP.replace("FILE", repr(str(local)))
                                   .replace("REQUIREMENTS", repr(str(requirements)))))
    cli.run("deploy", str(app))
    assert requests.get(cli.urls("baker")["read"], timeout=60).json() == "the client's own file + tomli_w"
