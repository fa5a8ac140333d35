"""`sampan deploy` against a real server process: versions, restarts, kill -9, secrets, tokens, proxy auth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import IMAGES_DIR, SRC, gone_after_kill, kill_marked, marker_pids, wait_until

pytestmark = pytest.mark.slow
GUIDES = Path(__file__).resolve().parents[2] / "examples" / "guides"


class Sampan:
    """Runs `sampan ...` commands against one SAMPAN_HOME, and owns the server it starts."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.marker = f"deploy-{os.getpid()}-{time.monotonic_ns()}"
        self.env = {
            **os.environ,
            "SAMPAN_HOME": str(home),
            "SAMPAN_GATEWAY_PORT": "0",
            "SAMPAN_ENDPOINT_PORT_BASE": "0",
            "SAMPAN_IMAGES": IMAGES_DIR,
            "SAMPAN_SERVER_ID": self.marker,
            "SAMPAN_WORKSPACE": "alice",
            "PYTHONPATH": SRC,
        }

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:  # noqa: A002
        result = subprocess.run([sys.executable, "-m", "sampan", *args], capture_output=True, text=True,
                                env={**self.env, **(env or {})}, timeout=180, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"sampan {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str, env: dict[str, str] | None = None) -> object:
        return json.loads(self.run(*args, "--json", env=env).stdout)

    def server_pid(self) -> int:
        out = self.run("server", "status").stdout
        return int(out.split("pid ", 1)[1].split(",")[0])

    def urls(self, app: str, env: dict[str, str] | None = None) -> dict[str, str]:
        apps = self.json("app", "list", env=env)
        assert isinstance(apps, list)
        found = next(a for a in apps if a["name"] == app)
        return {e["function"]: e["url"] for e in found["endpoints"]}

    def close(self) -> None:
        self.run("server", "stop", "--timeout", "20", check=False)
        kill_marked(self.marker)


@pytest.fixture
def sampan(tmp_path: Path) -> Iterator[Sampan]:
    s = Sampan(tmp_path / "home")
    try:
        yield s
    finally:
        s.close()
        assert gone_after_kill(s.marker) == []


def write_app(path: Path, version: int, extra: str = "") -> Path:
    path.write_text(textwrap.dedent(f"""
        import os
        import modal

        app = modal.App("shop")

        @app.function()
        @modal.fastapi_endpoint()
        def version():
            return {{"v": {version}, "secret": os.environ.get("API_KEY")}}
    """) + extra)
    return path


class Load(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.ok, self.failed, self.seen = url, threading.Event(), 0, [], []

    def run(self) -> None:
        deadline = time.monotonic() + 180
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                r = requests.get(self.url, timeout=30)
                if r.status_code == 200:
                    self.ok += 1
                    self.seen.append(r.json()["v"])
                else:
                    self.failed.append(r.status_code)
            except requests.RequestException as exc:
                self.failed.append(type(exc).__name__)
            time.sleep(0.02)


def test_deploy_redeploy_under_load_rollback_history_and_stop(sampan: Sampan, tmp_path: Path) -> None:
    app = write_app(tmp_path / "shop.py", 1)
    out = sampan.run("deploy", str(app)).stdout
    assert "Created web function version => http://127.0.0.1:" in out and "App deployed in" in out
    assert "-dev" not in out
    url = sampan.urls("shop")["version"]
    assert requests.get(url, timeout=30).json()["v"] == 1
    assert "Deployment skipped: no changes detected" in sampan.run("deploy", str(app)).stdout

    load = Load(url)
    load.start()
    try:
        write_app(app, 2)
        sampan.run("deploy", str(app), "--tag", "second")
        wait_until(lambda: load.seen and load.seen[-1] == 2, timeout=30)
    finally:
        load.stop.set()
        load.join(30)
    assert load.failed == [] and load.ok > 0
    assert sampan.urls("shop")["version"] == url  # same URL across versions

    history = sampan.json("app", "history", "shop")
    assert isinstance(history, dict)
    assert [v["version"] for v in history["versions"]] == [1, 2] and history["current"] == 2
    assert history["versions"][1]["tag"] == "second"
    sampan.run("app", "rollback", "shop")
    assert requests.get(url, timeout=30).json()["v"] == 1
    sampan.run("app", "rollback", "shop", "2")
    assert requests.get(url, timeout=30).json()["v"] == 2

    apps = sampan.json("app", "list")
    assert isinstance(apps, list) and apps[0]["state"] == "deployed" and apps[0]["id"].startswith("ap-")
    sampan.run("app", "stop", "shop", "--yes")
    r = requests.get(url, timeout=30)
    assert (r.status_code, r.text) == (404, "modal-http: app for invoked web endpoint is stopped")
    assert sampan.json("app", "list")[0]["state"] == "stopped"  # type: ignore[index]


def test_kill_9_during_load_and_during_a_deploy_loses_nothing(sampan: Sampan, tmp_path: Path) -> None:
    app = write_app(tmp_path / "shop.py", 1)
    sampan.run("deploy", str(app))
    url = sampan.urls("shop")["version"]
    load = Load(url)
    load.start()
    try:
        wait_until(lambda: load.ok > 5, timeout=30)
        os.kill(sampan.server_pid(), signal.SIGKILL)
        time.sleep(0.5)
        assert marker_pids(sampan.marker) == [] or wait_until(lambda: marker_pids(sampan.marker) == [], timeout=10)
        sampan.run("server", "start")
        ok_before = load.ok
        wait_until(lambda: load.ok > ok_before + 5, timeout=60)
    finally:
        load.stop.set()
        load.join(30)
    assert requests.get(url, timeout=30).json()["v"] == 1  # same URL, same version after the restart

    # A deploy killed half-way (while its image builds) leaves the previous version serving.
    unique = sampan.marker  # never built before, so the build really takes its 5 s
    extra = f"\nimage = modal.Image.debian_slim().run_commands('sleep 5 # {unique}')\napp.image = image\n"
    slow = write_app(tmp_path / "shop.py", 2, extra=extra)
    deploy = subprocess.Popen([sys.executable, "-m", "sampan", "deploy", str(slow)], env=sampan.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(2.5)
    os.kill(sampan.server_pid(), signal.SIGKILL)
    deploy.communicate(timeout=60)
    sampan.run("server", "start")
    history = sampan.json("app", "history", "shop")
    assert isinstance(history, dict) and history["current"] == 1 and len(history["versions"]) == 1
    assert requests.get(url, timeout=30).json()["v"] == 1
    images = Path(IMAGES_DIR)
    sampan.run("deploy", str(slow))  # the next build cleans what the killed one left
    from sampan._proc import pid_alive

    assert not [p for p in images.glob(".im-*") if not pid_alive(int(p.name.split("-")[2]))]
    assert requests.get(url, timeout=30).json()["v"] == 2


def test_secrets_reach_containers_and_stay_encrypted(sampan: Sampan, tmp_path: Path) -> None:
    sampan.run("server", "start")
    value = "sk-live-very-secret-value-123"
    sampan.run("secret", "create", "payments", f"API_KEY={value}")
    duplicate = sampan.run("secret", "create", "payments", "API_KEY=x", check=False)
    assert duplicate.returncode != 0 and "already exists" in duplicate.stderr
    app = write_app(tmp_path / "shop.py", 1)
    with_secret = "@app.function(secrets=[modal.Secret.from_name('payments')])"
    app.write_text(app.read_text().replace("@app.function()", with_secret))
    sampan.run("deploy", str(app))
    assert requests.get(sampan.urls("shop")["version"], timeout=60).json()["secret"] == value
    for name in ("state.db", "state.db-wal"):
        path = sampan.home / name
        if path.exists():
            assert value.encode() not in path.read_bytes()
    secrets = sampan.json("secret", "list")
    assert secrets == [{"name": "payments", "created_at": secrets[0]["created_at"],  # type: ignore[index]
                        "updated_at": secrets[0]["updated_at"]}]  # type: ignore[index]
    assert value not in sampan.run("secret", "list").stdout
    missing = write_app(tmp_path / "other.py", 1)
    missing.write_text(missing.read_text().replace('"shop"', '"other"').replace(
        "@app.function()", "@app.function(secrets=[modal.Secret.from_name('nope')])"))
    failed = sampan.run("deploy", str(missing), check=False)
    assert failed.returncode != 0 and "Secret 'nope' not found" in failed.stderr


def test_guide_bearer_token_example(sampan: Sampan) -> None:
    sampan.run("server", "start")
    sampan.run("secret", "create", "my-web-auth-token", "AUTH_TOKEN=secret-random-token")
    sampan.run("deploy", str(GUIDES / "current_auth.py"))
    url = sampan.urls("auth-example")["f"]
    assert requests.get(url, timeout=60).status_code in (401, 403)  # FastAPI's HTTPBearer without a header
    assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
    ok = requests.get(url, headers={"Authorization": "Bearer secret-random-token"}, timeout=30)
    assert ok.json() == "success!"


def test_proxy_auth_tokens(sampan: Sampan, tmp_path: Path) -> None:
    sampan.run("server", "start")
    app = tmp_path / "private.py"
    app.write_text(textwrap.dedent("""
        import modal

        app = modal.App("private")

        @app.function()
        @modal.fastapi_endpoint(requires_proxy_auth=True)
        def hello():
            return "hi"
    """))
    out = sampan.run("deploy", str(app)).stdout
    assert "🔑" in out
    url = sampan.urls("private")["hello"]
    r = requests.get(url, timeout=30)
    assert (r.status_code, r.text) == (401, "modal-http: missing credentials for proxy authorization")
    token = sampan.json("workspace", "proxy-tokens", "create", "--name", "ci")
    assert isinstance(token, dict) and token["token_id"].startswith("wk-") and token["token_secret"].startswith("ws-")
    bad = requests.get(url, headers={"Modal-Key": token["token_id"], "Modal-Secret": "ws-wrong"}, timeout=30)
    assert (bad.status_code, bad.text) == (401, "modal-http: invalid credentials for proxy authorization")
    good = requests.get(url, headers={"Modal-Key": token["token_id"], "Modal-Secret": token["token_secret"]},
                        timeout=60)
    assert good.json() == "hi"
    bearer = requests.get(url, headers={"Authorization": f"Bearer {token['token_id']}.{token['token_secret']}"},
                          timeout=30)
    assert bearer.json() == "hi"
    listed = sampan.json("workspace", "proxy-tokens", "list")
    assert [t["token_id"] for t in listed] == [token["token_id"]]  # type: ignore[union-attr]
    sampan.run("workspace", "proxy-tokens", "delete", token["token_id"])
    after = requests.get(url, headers={"Modal-Key": token["token_id"], "Modal-Secret": token["token_secret"]},
                         timeout=30)
    assert after.status_code == 401


def test_workspaces_are_isolated_and_lookups_work(sampan: Sampan, tmp_path: Path) -> None:
    app = write_app(tmp_path / "shop.py", 1)
    sampan.run("deploy", str(app))
    sampan.run("secret", "create", "alice-only", "K=V")
    other = sampan.json("token", "new", "--workspace", "bob", "--no-activate")
    assert isinstance(other, dict) and other["workspace"] == "bob"
    bob = {"SAMPAN_TOKEN_ID": other["token_id"], "SAMPAN_TOKEN_SECRET": other["token_secret"]}
    assert sampan.json("app", "list", env=bob) == []
    assert sampan.json("secret", "list", env=bob) == []
    assert sampan.json("workspace", "proxy-tokens", "list", env=bob) == []
    requests.get(sampan.urls("shop")["version"], timeout=60)  # a container of alice's workspace is up
    mine = sampan.json("container", "list")
    assert isinstance(mine, list) and [c["app"] for c in mine] == ["shop"]
    assert sampan.json("container", "list", env=bob) == []
    for args in (("app", "stop", "shop", "--yes"), ("app", "history", "shop"), ("app", "logs", "shop"),
                 ("secret", "delete", "alice-only", "--yes")):
        refused = sampan.run(*args, check=False, env=bob)
        assert refused.returncode != 0, args
    wrong = sampan.run("app", "list", check=False, env={"SAMPAN_TOKEN_ID": "ak-x", "SAMPAN_TOKEN_SECRET": "as-y"})
    assert wrong.returncode != 0 and "invalid token" in wrong.stderr
    # bob deploys the same app name: his own app, under his own URL
    sampan.run("deploy", str(app), env=bob)
    bob_url = sampan.urls("shop", env=bob)["version"]
    assert bob_url != sampan.urls("shop")["version"]
    assert requests.get(sampan.urls("shop")["version"], timeout=60).json()["v"] == 1
    # Function.from_name from plain Python
    code = "import modal; print(modal.Function.from_name('shop', 'version').get_web_url())"
    looked_up = subprocess.run([sys.executable, "-c", code.replace("import modal", "import sampan as modal")],
                               capture_output=True, text=True, env=sampan.env, timeout=60)
    assert looked_up.stdout.strip() == sampan.urls("shop")["version"], looked_up.stderr


def test_a_label_owned_by_another_app_is_refused(sampan: Sampan, tmp_path: Path) -> None:
    first = tmp_path / "first.py"
    first.write_text(textwrap.dedent("""
        import modal
        app = modal.App("first")

        @app.function()
        @modal.fastapi_endpoint(label="shared-label")
        def f():
            return 1
    """))
    second = tmp_path / "second.py"
    second.write_text(first.read_text().replace('"first"', '"second"'))
    sampan.run("deploy", str(first))
    refused = sampan.run("deploy", str(second), check=False)
    assert refused.returncode != 0 and "already used by the deployed app 'first'" in refused.stderr


def test_serve_uses_the_running_server_and_stops_when_its_cli_dies(sampan: Sampan, tmp_path: Path) -> None:
    sampan.env["SAMPAN_EPHEMERAL_TIMEOUT_S"] = "3"
    sampan.run("server", "start")
    app = tmp_path / "served.py"
    app.write_text(textwrap.dedent("""
        import modal
        app = modal.App("served")

        @app.function()
        @modal.fastapi_endpoint()
        def hi():
            print("hello from the container")
            return "hi"
    """))
    serve = subprocess.Popen([sys.executable, "-m", "sampan", "serve", str(app)], env=sampan.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lines: list[str] = []
        url = None
        deadline = time.monotonic() + 60
        assert serve.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = serve.stdout.readline()
            lines.append(line)
            if "Created web function hi => " in line:
                url = line.split(" => ")[1].strip()
        assert url is not None, "".join(lines)
        assert requests.get(url, timeout=30).json() == "hi"
        apps = sampan.json("app", "list")
        assert [(a["name"], a["state"]) for a in apps] == [("served", "ephemeral")]  # type: ignore[index]
        assert "-dev" in apps[0]["endpoints"][0]["subdomain"]  # type: ignore[index]
        while True:  # the container's output reaches the serving CLI
            line = serve.stdout.readline()
            if "hello from the container" in line or not line:
                break
        assert "hello from the container" in line
        os.killpg(serve.pid, signal.SIGKILL)  # the CLI dies without saying goodbye
        serve.wait(10)
        wait_until(lambda: requests.get(url, timeout=30).status_code == 404, timeout=20)
        assert requests.get(url, timeout=30).text == "modal-http: app for invoked web endpoint is stopped"
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(10)
        if serve.stdout is not None:
            serve.stdout.close()


def test_app_deploy_from_plain_python(sampan: Sampan, tmp_path: Path) -> None:
    """`app.deploy()` in a script run with plain `python` deploys as `sampan deploy` does (the SDK runs the
    CLI's deploy in a child; it never imports the CLI), and sets the App's id."""
    script = tmp_path / "deployer.py"
    script.write_text(textwrap.dedent("""
        import modal

        app = modal.App("from-python")

        @app.function()
        @modal.fastapi_endpoint()
        def hi():
            return {"hi": True}

        if __name__ == "__main__":
            app.deploy(tag="v1")
            print("deployed", app.app_id)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=sampan.env, timeout=180,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    word, app_id = out.stdout.split()
    assert word == "deployed" and app_id.startswith("ap-")
    assert requests.get(sampan.urls("from-python")["hi"], timeout=60).json() == {"hi": True}
    history = sampan.json("app", "history", "from-python")
    assert isinstance(history, dict) and history["versions"][0]["tag"] == "v1"

