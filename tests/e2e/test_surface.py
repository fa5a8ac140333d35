"""Modal's surface end to end: dynamic batching behind a web endpoint, and `with app.run():` from a
plain `python script.py` (no `sampan` command)."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from tests.helpers import IMAGES_DIR, serve

pytestmark = pytest.mark.slow

BATCHED = """
    import modal

    app = modal.App("batches")

    @app.function()
    @modal.batched(max_batch_size=8, wait_ms=800)
    def embed(xs: list[int]) -> list[dict]:
        return [{"x": x, "batch": len(xs)} for x in xs]

    @app.function()
    @modal.fastapi_endpoint()
    async def one(x: int):
        return await embed.remote.aio(x)
"""


def test_concurrent_web_requests_reach_a_batched_function_as_one_batch(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(BATCHED))
    with serve(tmp_path / "app.py", tmp_path / "home", cwd=tmp_path) as s:
        url = s.urls["one"]
        requests.get(url, params={"x": -1}, timeout=60).raise_for_status()  # containers are warm
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: requests.get(url, params={"x": i}, timeout=60).json(), range(8)))
    assert sorted(a["x"] for a in answers) == list(range(8))
    assert max(a["batch"] for a in answers) >= 2, answers


PLAIN = """
    import modal

    app = modal.App("plain")

    @app.function()
    def square(x):
        return x * x

    if __name__ == "__main__":
        with app.run():
            print("result", square.remote(12))
            print("again", sum(square.map(range(4))))
        print("stopped")
"""


def test_app_run_from_plain_python(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(textwrap.dedent(PLAIN))
    env = {**os.environ, "SAMPAN_HOME": str(tmp_path / "home"), "SAMPAN_IMAGES": IMAGES_DIR,
           "SAMPAN_GATEWAY_PORT": "0", "SAMPAN_ENDPOINT_PORT_BASE": "0"}
    out = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["result", "144", "again", "14", "stopped"], out.stdout


INDEX = ["App", "Client", "CloudBucketMount", "Cls", "Cron", "Dict", "Error", "FilePatternMatcher", "Function",
         "FunctionCall", "Image", "Mount", "NetworkFileSystem", "Period", "Proxy", "Queue", "Retries", "Sandbox",
         "SandboxSnapshot", "Secret", "Tunnel", "Volume", "asgi_app", "batched", "build", "call_graph", "concurrent",
         "container_process", "current_function_call_id", "current_input_id", "enable_output", "enter", "exit",
         "fastapi_endpoint", "file_io", "forward", "gpu", "interact", "io_streams", "is_local", "method", "parameter",
         "web_endpoint", "web_server", "wsgi_app", "exception", "config"]
MODULE_PATHS = ["app", "functions", "cls", "partial_function", "image", "secret", "volume", "dict", "queue",
                "exception", "schedule", "retries", "call_graph", "runner", "config", "output", "gpu", "sandbox",
                "mount", "network_file_system", "cloud_bucket_mount", "file_io", "io_streams", "container_process",
                "proxy", "client", "stream_type", "file_pattern_matcher", "types", "experimental",
                "scheduler_placement"]

EVERYTHING = """
    import importlib
    import modal

    app = modal.App("surface")

    @app.local_entrypoint()
    def main():
        missing = [n for n in {index!r} if not hasattr(modal, n)]
        for path in {paths!r}:
            try:
                importlib.import_module("modal." + path)
            except ImportError as exc:
                missing.append(f"modal.{{path}}: {{exc}}")
        assert importlib.import_module("modal.runner").run_app
        print("MISSING", missing)
"""


def test_every_name_of_the_index_and_every_module_path_under_sampan_run(tmp_path: Path) -> None:
    assert len(INDEX) == 48 - 1  # the index's 48 minus `runner`, which (as on Modal) needs `import modal.runner`
    (tmp_path / "everything.py").write_text(textwrap.dedent(EVERYTHING.format(index=INDEX, paths=MODULE_PATHS)))
    env = {**os.environ, "SAMPAN_HOME": str(tmp_path / "home"), "SAMPAN_IMAGES": IMAGES_DIR,
           "SAMPAN_GATEWAY_PORT": "0", "SAMPAN_ENDPOINT_PORT_BASE": "0"}
    out = subprocess.run([sys.executable, "-m", "sampan", "run", "everything.py"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "MISSING []" in out.stdout, out.stdout


SERVERS = """
    import subprocess, sys, urllib.error, urllib.request
    import modal

    app = modal.App("servers")

    @app.server(port=8000, target_concurrency=4)
    class Private:
        @modal.enter()
        def start(self):
            open("/tmp/index.html", "w").write("private")
            self.proc = subprocess.Popen([sys.executable, "-m", "http.server", "8000", "-d", "/tmp"])

        @modal.exit()
        def stop(self):
            self.proc.terminate()

    @app.server(port=8000, unauthenticated=True)
    class Public:
        @modal.enter()
        def start(self):
            open("/tmp/index.html", "w").write("public")
            self.proc = subprocess.Popen([sys.executable, "-m", "http.server", "8000", "-d", "/tmp"])

    @app.cls()
    @modal.concurrent(target_inputs=10)
    @modal.experimental.http_server(port=8001, proxy_regions=["us-east"])
    class Flash:
        @modal.enter()
        def start(self):
            open("/tmp/index.html", "w").write("flash")
            self.proc = subprocess.Popen([sys.executable, "-m", "http.server", "8001", "-d", "/tmp"])

    @app.server(port=8000, unauthenticated=True, max_concurrency=1, max_containers=1)
    class Limited:
        @modal.enter()
        def start(self):
            import threading, time
            from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

            class Slow(BaseHTTPRequestHandler):
                def do_GET(self):
                    time.sleep(1.5)
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"slow")

            threading.Thread(target=ThreadingHTTPServer(("0.0.0.0", 8000), Slow).serve_forever, daemon=True).start()

    @app.server(port=8000, unauthenticated=True, min_containers=2)
    @modal.sessioned()
    class Sticky:
        @modal.enter()
        def start(self):
            import os, threading
            from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
            me = os.environ["MODAL_TASK_ID"].encode()

            class Who(BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(me)

            threading.Thread(target=ThreadingHTTPServer(("0.0.0.0", 8000), Who).serve_forever, daemon=True).start()

    def status(url, headers=None):
        try:
            return urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60).status
        except urllib.error.HTTPError as exc:
            return exc.code

    def sticky():
        one, two = Sticky.sessions.start(idle_timeout=60), Sticky.sessions.start(idle_timeout=60)
        seen = []
        for session in (one, two, one, two, one, two):
            auth = {"Modal-Authorization": f"Bearer {session.token}"}
            request = urllib.request.Request(Sticky.get_url(), headers=auth)
            seen.append(urllib.request.urlopen(request, timeout=60).read().decode())
        print("sticky", len(set(seen[0::2])), len(set(seen[1::2])))
        print("no-token", status(Sticky.get_url()))
        Sticky.sessions.terminate(one.token)
        print("ended", status(Sticky.get_url(), {"Modal-Authorization": f"Bearer {one.token}"}))

    @app.local_entrypoint()
    def main():
        from concurrent.futures import ThreadPoolExecutor
        print("warm", status(Limited.get_url()))
        with ThreadPoolExecutor(2) as pool:
            print("limited", sorted(pool.map(status, [Limited.get_url()] * 2)))
        print("public", urllib.request.urlopen(Public.get_url(), timeout=60).read().decode())
        sticky()
        print("flash", urllib.request.urlopen(Flash._experimental_get_flash_urls()[0], timeout=60).read().decode())
        try:
            urllib.request.urlopen(Private.get_url(), timeout=60)
        except urllib.error.HTTPError as exc:
            print("private", exc.code)
        print("distinct", len({Private.get_url(), Public.get_url(), Flash._experimental_get_flash_urls()[0]}))
"""


def test_servers_and_flash_classes_serve_their_own_http(tmp_path: Path) -> None:
    """`@app.server` (a proxy token needed unless `unauthenticated=True`) and `experimental.http_server`
    classes: their `@enter` starts an HTTP server on the port, each container in its own network, and the
    gateway gives each a URL."""
    (tmp_path / "servers.py").write_text(textwrap.dedent(SERVERS))
    env = {**os.environ, "SAMPAN_HOME": str(tmp_path / "home"), "SAMPAN_IMAGES": IMAGES_DIR,
           "SAMPAN_GATEWAY_PORT": "0", "SAMPAN_ENDPOINT_PORT_BASE": "0"}
    out = subprocess.run([sys.executable, "-m", "sampan", "run", "servers.py"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.split(" ")[0] in
                 ("public", "flash", "private", "distinct", "warm", "limited", "sticky", "no-token", "ended"))
    assert lines == {"public": "public", "flash": "flash", "private": "401", "distinct": "3", "warm": "200",
                     "limited": "[200, 429]", "sticky": "1 1", "no-token": "401", "ended": "404"}, out.stdout
