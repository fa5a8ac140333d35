"""Containers are real containers (runtime/sandbox.py, backends/isolation.py), checked over real HTTP
with `sampan serve`: Modal's filesystem (`/root`, `/assets`, Volumes at their mount paths), a PID
namespace of their own, a network namespace for `web_server`, and no view of the platform."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from sampan.backends.isolation import Isolation
from sampan.runtime import sandbox
from tests.helpers import Serve, marker_pids, serve, wait_until

pytestmark = pytest.mark.slow

CAN_SANDBOX = sandbox.probe()
needs_sandbox = pytest.mark.skipif(CAN_SANDBOX is not None, reason=f"no sandbox here: {CAN_SANDBOX}")

SLOW_SERVER = """
    import http.server, os, time

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(3.0)  # long enough that a second request waits for a second container, even on a busy machine
            body = os.environ["MODAL_TASK_ID"].encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
"""

APP = """
    import json, os, subprocess
    import modal
    from fastapi import FastAPI, Request
    from fastapi.staticfiles import StaticFiles

    image = (
        modal.Image.debian_slim()
        .add_local_file({css!r}, "/srv/site.css", copy=True)
        .add_local_dir({assets!r}, remote_path="/assets")
        .add_local_file({slow!r}, "/root/slow_server.py")
    )
    app = modal.App("sandboxed", image=image)
    vol = modal.Volume.from_name("media", create_if_missing=True)

    @app.function()
    @modal.asgi_app()
    def static():
        web = FastAPI()
        web.mount("/static", StaticFiles(directory="/assets"), name="static")
        return web

    @app.function(volumes={{"/data": vol}})
    @modal.fastapi_endpoint(method="POST")
    async def probe(request: Request):
        paths = await request.json()
        with open("/data/x", "w") as f:
            f.write("in the volume")
        vol.commit()
        opened = []
        for path in paths:
            try:
                with open(path, "rb") as f:
                    f.read(1)
                opened.append(path)
            except OSError:
                pass
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        return {{"cwd": os.getcwd(), "home": os.environ["HOME"], "pids": len(pids), "uid": os.getuid(),
                "opened": opened, "css": open("/srv/site.css").read(),
                "script": os.path.exists("/root/sandboxed.py"), "tmp": os.listdir("/tmp"),
                "visible": [p for p in paths if os.path.exists(p)]}}

    @app.function()
    @modal.concurrent(max_inputs=1)
    @modal.web_server(8000, startup_timeout=30)
    def web():
        # In its own network namespace, the container still reaches the platform at its usual addresses.
        import urllib.request
        seen = modal.Dict.from_name("seen", create_if_missing=True)
        with urllib.request.urlopen(static.get_web_url() + "/static/hello.txt", timeout=30) as resp:
            seen[os.environ["MODAL_TASK_ID"]] = resp.read().decode()
        subprocess.Popen(["python", "/root/slow_server.py"])

    @app.function(min_containers=1)
    @modal.web_server(8001, startup_timeout=30, requires_proxy_auth=True)
    def private():
        subprocess.Popen(["python", "-m", "http.server", "8001"])

    @app.function()
    @modal.fastapi_endpoint()
    def report():
        return dict(modal.Dict.from_name("seen").items())

    @app.function()
    @modal.fastapi_endpoint()
    def stubborn():
        # A descendant that leaves the process group and ignores SIGTERM: only the PID namespace ends it.
        subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 1000"], start_new_session=True)
        return "started"
"""


def _port_listening_on_host(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "hello.txt").write_text("hello from /assets")
    (tmp_path / "site.css").write_text("body { color: teal }")
    (tmp_path / "slow_server.py").write_text(textwrap.dedent(SLOW_SERVER))
    path = tmp_path / "sandboxed.py"
    path.write_text(textwrap.dedent(APP.format(css=str(tmp_path / "site.css"), assets=str(assets),
                                               slow=str(tmp_path / "slow_server.py"))))
    return path


@needs_sandbox
def test_containers_get_modals_filesystem_their_own_namespaces_and_no_view_of_the_platform(
        app_file: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    port_8000_before = _port_listening_on_host(8000)
    port_8001_before = _port_listening_on_host(8001)
    with serve(app_file, home) as s:
        urls = s.urls
        # add_local_dir(remote_path="/assets") is at /assets, for the app's own StaticFiles.
        r = requests.get(urls["static"] + "/static/hello.txt", timeout=60)
        assert r.status_code == 200 and r.text == "hello from /assets"

        # Every file of the server's $SAMPAN_HOME, by its host path: none can be opened from inside.
        platform_files = [str(home), *(str(p) for p in home.rglob("*") if p.is_file())]
        assert any(p.endswith(".sqlite") or "servers" in p for p in platform_files) or platform_files
        probe = requests.post(urls["probe"], json=platform_files, timeout=60).json()
        assert probe["opened"] == [] and probe["visible"] == []
        assert probe["cwd"] == "/root" and probe["home"] == "/root" and probe["script"]
        assert probe["uid"] == 0  # root in the container, never root on the host (checked below)
        assert probe["pids"] < 20
        assert probe["css"] == "body { color: teal }"  # copy=True: baked into the image at its absolute path

        # The Volume got the write; the host's /data did not.
        volume = home / "volumes" / "tester" / "media"
        assert (volume / "x").read_text() == "in the volume"
        assert not Path("/data/x").exists()
        if os.geteuid() == 0:
            assert (volume / "x").stat().st_uid != 0

        # Two concurrent requests to a web_server(8000) with max_inputs=1: two containers, each on its
        # own port 8000, at once.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: requests.get(urls["web"], timeout=90), range(2)))
        assert [a.status_code for a in answers] == [200, 200], s.output[-4000:]
        assert len({a.text for a in answers}) == 2, "both requests were served by one container"
        seen = requests.get(urls["report"], timeout=60).json()
        assert {seen[a.text] for a in answers} == {"hello from /assets"}
        # ... and port 8000 on the host is not the app.
        assert _port_listening_on_host(8000) == port_8000_before
        if port_8000_before is False:
            with pytest.raises(requests.ConnectionError):
                requests.get("http://127.0.0.1:8000/", timeout=5)

        # A requires_proxy_auth web_server, running (min_containers=1): the gateway asks for credentials,
        # and its port is nowhere on the host.
        wait_until(lambda: "private" in s.output and s.count("ready in") >= 3, timeout=60)
        denied = requests.get(urls["private"], timeout=30)
        assert (denied.status_code, denied.text) == (401, "modal-http: missing credentials for proxy authorization")
        assert _port_listening_on_host(8001) == port_8001_before

        # A descendant that left the process group and ignores SIGTERM still ends with serve.
        assert requests.get(urls["stubborn"], timeout=60).json() == "started"
        marker = s.marker
        s.interrupt()
    wait_until(lambda: not marker_pids(marker), timeout=15)


@needs_sandbox
def test_socket_directory_is_made_fresh_never_found(tmp_path: Path) -> None:
    planted = Path(f"/tmp/sampan-{os.getuid()}-sockets")  # where the process runtime used to look
    existed = planted.exists()
    planted.mkdir(exist_ok=True)
    if not existed:
        os.chmod(planted, 0o777)
    isolation = Isolation.detect("sandbox")
    try:
        assert isolation.sockets is not None and isolation.sockets != planted
        assert stat.S_IMODE(isolation.sockets.stat().st_mode) == 0o700
        own = isolation.container_dir("ta-test")
        assert stat.S_IMODE(own.stat().st_mode) == 0o700
    finally:
        isolation.close()
        if not existed:
            planted.rmdir()


def test_process_runtime_is_chosen_on_purpose_and_said(tmp_path: Path) -> None:
    app = tmp_path / "plain.py"
    app.write_text(textwrap.dedent("""
        import os
        import modal

        app = modal.App("plain")

        @app.function()
        @modal.fastapi_endpoint()
        def where():
            return os.getcwd()
    """))
    s = Serve(str(app), tmp_path / "home", env={"SAMPAN_RUNTIME": "process"})
    try:
        s.ready()
        assert "process runtime" in s.output and "SAMPAN_RUNTIME=process" in s.output
        assert requests.get(s.urls["where"], timeout=60).json() != "/root"
    finally:
        s.close()


@needs_sandbox
def test_a_bad_mount_path_fails_at_serve_with_its_name(tmp_path: Path) -> None:
    app = tmp_path / "bad.py"
    app.write_text(textwrap.dedent("""
        import modal

        app = modal.App("bad")
        vol = modal.Volume.from_name("v", create_if_missing=True)

        @app.function(volumes={"/proc/x": vol})
        @modal.fastapi_endpoint()
        def f():
            return 1
    """))
    s = Serve(str(app), tmp_path / "home")
    try:
        s.wait_for("/proc/x", timeout=60)
        assert "system directory" in s.output
    finally:
        s.proc.send_signal(signal.SIGINT)
        s.close()


SNAPSHOT = """
    import os
    import modal

    app = modal.App("snap-and-spawn")
    IMPORTED = os.getcwd()

    @app.cls(enable_memory_snapshot=True)
    class Snap:
        @modal.enter(snap=True)
        def warm(self):
            self.snapped = True

        @modal.fastapi_endpoint()
        def where(self):
            return {"cwd": os.getcwd(), "snapped": self.snapped, "pids": len([p for p in os.listdir("/proc")
                                                                             if p.isdigit()]),
                    "code": os.path.exists("/root/snapapp.py")}

    @app.function()
    @modal.fastapi_endpoint()
    def plain():
        return {"cwd": os.getcwd(), "code": os.path.exists("/root/snapapp.py")}
"""


@needs_sandbox
@pytest.mark.parametrize("fork", ["1", "0"])
def test_memory_snapshots_and_spawned_containers_are_sandboxed_too(tmp_path: Path, fork: str) -> None:
    app = tmp_path / "snapapp.py"
    app.write_text(textwrap.dedent(SNAPSHOT))
    with serve(app, tmp_path / "home", env={"SAMPAN_FORK": fork}) as s:
        where = requests.get(s.urls["Snap.where"], timeout=60).json()
        assert where == {"cwd": "/root", "snapped": True, "pids": where["pids"], "code": True}
        assert where["pids"] < 20
        assert requests.get(s.urls["plain"], timeout=60).json() == {"cwd": "/root", "code": True}
        how = "started by spawn (SAMPAN_FORK=0)" if fork == "0" else "started by fork of template"
        assert how in s.output


@needs_sandbox
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_a_server_that_is_not_host_root_sandboxes_with_its_own_uid(tmp_path: Path) -> None:
    """`unshare -r`: root of a user namespace of one uid, as a rootless laptop user is. Containers map
    that uid, reach the server's paths through the host tree, and still see only their own root."""
    app = tmp_path / "rootless.py"
    app.write_text(textwrap.dedent("""
        import os
        import modal

        app = modal.App("rootless")
        vol = modal.Volume.from_name("v", create_if_missing=True)

        @app.function(volumes={"/data": vol})
        @modal.fastapi_endpoint()
        def f():
            open("/data/y", "w").write("y")
            return {"cwd": os.getcwd(), "pids": len([p for p in os.listdir("/proc") if p.isdigit()]),
                    "host": os.path.exists("/.sampan-host"), "home": os.path.exists(HOME_OF_SERVER)}
    """).replace("HOME_OF_SERVER", repr(str(tmp_path / "home"))))
    home = tmp_path / "home"
    s = Serve(str(app), home, wrapper=["unshare", "-r"])
    try:
        s.ready()
        assert "process runtime" not in s.output
        answer = requests.get(s.urls["f"], timeout=60)
        assert answer.status_code == 200, s.output[-3000:]
        r = answer.json()
        assert r == {"cwd": "/root", "pids": r["pids"], "host": False, "home": False}
        assert r["pids"] < 20
        assert (home / "volumes" / "tester" / "v" / "y").read_text() == "y"
    finally:
        s.close()


OUTBOUND_APP = """
    import json, os, socket, subprocess, urllib.request
    import modal

    app = modal.App("outbound")

    def reach(host, port):
        try:
            socket.create_connection((host, port), timeout=3).close()
            return True
        except OSError:
            return False

    @app.function()
    @modal.web_server(8000, startup_timeout=30)
    def web():
        seen = {
            "out": urllib.request.urlopen("http://10.77.0.1:PORT/", timeout=10).status,  # the outside world
            "host_loopback": reach("10.0.2.2", PORT),  # the host's own loopback stays closed
        }
        os.makedirs("/root/www", exist_ok=True)
        open("/root/www/seen.json", "w").write(json.dumps(seen))
        subprocess.Popen(["python", "-m", "http.server", "8000", "--directory", "/root/www"])
"""

OUTBOUND_DRIVER = """
import json, os, re, subprocess, sys, time, urllib.request
app, home, port = sys.argv[1], sys.argv[2], sys.argv[3]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "addr", "add", "10.77.0.1/32", "dev", "lo"], check=True)
outside = subprocess.Popen([sys.executable, "-m", "http.server", port, "--bind", "0.0.0.0"],  # loopback too
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
serve = subprocess.Popen([sys.executable, "-m", "sampan", "serve", app], env={**os.environ, "SAMPAN_HOME": home},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
try:
    url = None
    for line in serve.stdout:
        found = re.search(r"Created web function web => (http://\\S+)", line)
        if found:
            url = found.group(1)
        if "Serving..." in line:
            break
    print(json.dumps(json.loads(urllib.request.urlopen(url + "/seen.json", timeout=90).read())))
finally:
    serve.terminate()
    serve.wait(60)
    outside.terminate()
"""


@needs_sandbox
@pytest.mark.skipif(shutil.which("slirp4netns") is None or shutil.which("ip") is None,
                    reason="needs slirp4netns and iproute2")
def test_web_server_containers_reach_out_but_not_the_hosts_loopback(tmp_path: Path) -> None:
    """A web_server container has a network namespace of its own; slirp4netns gives it the way out
    that every Modal container has, and nothing of the host's loopback. The 'outside world' here is an
    address in a network namespace this test makes (`unshare -rn`): no traffic leaves the machine."""
    port = "18767"
    app = tmp_path / "outbound.py"
    app.write_text(textwrap.dedent(OUTBOUND_APP).replace("PORT", port))
    driver = tmp_path / "driver.py"
    driver.write_text(OUTBOUND_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
           "SAMPAN_IMAGES": os.environ.get("SAMPAN_TEST_IMAGES", "/tmp/sampan-test-images-outbound")}
    done = subprocess.run(["unshare", "-rn", sys.executable, str(driver), str(app), str(tmp_path / "home"), port],
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"out": 200, "host_loopback": False}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return b""


@needs_sandbox
def test_kill_9_of_the_server_takes_every_container_process_along(tmp_path: Path) -> None:
    """Finding 17 of the tenants issue: descendants that ignore SIGTERM or call setsid outlived a
    `kill -9` of the server. A container is a PID namespace: when it ends, all of it ends."""
    app = tmp_path / "stubborn.py"
    app.write_text(textwrap.dedent("""
        import subprocess
        import modal

        app = modal.App("stubborn")

        @app.function()
        @modal.fastapi_endpoint()
        def start():
            subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 1000"], start_new_session=True)
            return "started"
    """))
    s = Serve(str(app), tmp_path / "home")
    try:
        s.ready()
        assert requests.get(s.urls["start"], timeout=60).json() == "started"
        # Popen returns before the child has run `sh`: wait for it to show, rather than race its exec.
        wait_until(lambda: any(b"sleep" in _cmdline(p) for p in marker_pids(s.marker)), timeout=20)
        os.kill(s.proc.pid, signal.SIGKILL)
        wait_until(lambda: not marker_pids(s.marker), timeout=40)
    finally:
        s.close()


class _Decoy:
    """A server of the host's that no container may lead the gateway to: a Unix socket or a loopback TCP
    port, counting the connections it gets (and answering each as a container would, so that a gateway
    led there would show it)."""

    def __init__(self, sock: socket.socket) -> None:  # bound already
        self.sock = sock
        self.accepted = 0
        sock.listen(16)
        sock.settimeout(0.2)
        self.stop = False
        self.thread = __import__("threading").Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            with conn:
                conn.settimeout(1)
                with __import__("contextlib").suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\ndecoy")

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)
        self.sock.close()


SWAPPING_APP = """
    import os
    import modal
    from fastapi import FastAPI, Response

    app = modal.App("swapper")

    @app.function()
    @modal.asgi_app()
    def web():
        api = FastAPI()

        @api.get("/swap")
        def swap():  # its socket's name, now a link to a socket of the host's
            os.rename("/run/sampan/web.sock", "/run/sampan/web.real")
            os.symlink(DECOY, "/run/sampan/web.sock")
            return Response("swapped", headers={"connection": "close"})  # the gateway must connect again

        @api.get("/")
        def ours():
            return Response("ours")

        return api
"""

FORGING_APP = """
    import json, os, stat
    import modal
    from fastapi import FastAPI

    app = modal.App("forger")

    @app.function()
    @modal.asgi_app()
    def web():  # runs in the container before it is ready: say "ready" first, with another address
        forged = json.dumps({"ready": {"host": "127.0.0.1", "port": PORT, "calls": PORT}}) + "\\n"
        for fd in range(3, 256):
            try:
                if stat.S_ISFIFO(os.fstat(fd).st_mode):
                    os.write(fd, forged.encode())
            except OSError:
                pass
        return FastAPI()
"""


@needs_sandbox
def test_a_container_cannot_lead_the_gateway_to_a_socket_of_the_hosts(tmp_path: Path) -> None:
    """The gateway connects to a container's Unix socket by a descriptor it took when the container
    became ready, not by its name: a container that swaps its socket for a link to a socket of the host's
    (a Docker socket, the server's own) gets the gateway nowhere near it (before, it got every new
    connection, with requests its clients chose)."""
    decoy_path = tmp_path / "decoy.sock"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(decoy_path))
    decoy = _Decoy(unix)
    app = tmp_path / "swapper.py"
    app.write_text(textwrap.dedent(SWAPPING_APP).replace("DECOY", repr(str(decoy_path))))
    try:
        with serve(app, tmp_path / "home") as s:
            url = s.urls["web"]
            assert requests.get(url + "/", timeout=60).text == "ours"
            assert requests.get(url + "/swap", timeout=60).text == "swapped"
            answers = {requests.get(url + "/", timeout=60).text for _ in range(3)}
            assert decoy.accepted == 0 and answers == {"ours"}, answers
    finally:
        decoy.close()


@needs_sandbox
def test_a_container_cannot_name_its_own_address(tmp_path: Path) -> None:
    """The backend decides where a container serves; a container that writes its own "ready" line first,
    naming an address of the host's, is refused as a failed start (before, the gateway sent it the
    function's requests: a way to any TCP service the server can reach)."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    decoy = _Decoy(tcp)
    app = tmp_path / "forger.py"
    app.write_text(textwrap.dedent(FORGING_APP).replace("PORT", str(decoy.sock.getsockname()[1])))
    try:
        with serve(app, tmp_path / "home") as s:
            r = requests.get(s.urls["web"] + "/", timeout=60)
            assert r.status_code >= 500 and "decoy" not in r.text, (r.status_code, r.text)
            assert decoy.accepted == 0
    finally:
        decoy.close()
