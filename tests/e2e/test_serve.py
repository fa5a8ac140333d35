"""`sampan serve` as a user runs it: live reload, broken edits, errors, Ctrl-C, app references."""

from __future__ import annotations

import re
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import Serve, free_port, marker_pids, serve, wait_until

pytestmark = pytest.mark.slow

VERSIONED = textwrap.dedent(
    """
    import modal

    app = modal.App("reload")

    @app.function()
    @modal.fastapi_endpoint()
    def version():
        return {{"v": {v}}}
    """
)


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(textwrap.dedent(text))
    tmp.replace(path)



class PacedClient(threading.Thread):
    """Sends a request every `interval` seconds until stopped; records every answer and failure."""

    def __init__(self, url: str, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.stop_event = threading.Event()
        self.seen: list[int] = []
        self.failures: list[str] = []

    def run(self) -> None:
        session = requests.Session()
        deadline = time.monotonic() + 300
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                r = session.get(self.url, timeout=30)
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
                else:
                    self.seen.append(r.json()["v"])
            except requests.RequestException as exc:
                self.failures.append(repr(exc))
            time.sleep(self.interval)


def test_ten_edits_under_paced_load_drop_no_request(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    write(app, VERSIONED.format(v=0))
    with serve(app, tmp_path / "home") as s:
        url = s.urls["version"]
        assert requests.get(url, timeout=30).json() == {"v": 0}
        client = PacedClient(url)
        client.start()
        try:
            for v in range(1, 11):
                write(app, VERSIONED.format(v=v))
                s.wait_for(f"App updated (version {v + 1})", timeout=60)
                wait_until(lambda v=v: client.seen and client.seen[-1] == v, timeout=30)
        finally:
            client.stop_event.set()
            client.join(30)
        assert client.failures == []
        # answers only ever move forward, and every version was served
        assert client.seen == sorted(client.seen)
        assert set(range(11)) <= set(client.seen)
        assert s.urls["version"] == url  # the URL survives reloads


def test_broken_edit_keeps_the_last_good_version(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    write(app, VERSIONED.format(v=1))
    with serve(app, tmp_path / "home") as s:
        url = s.urls["version"]
        assert requests.get(url, timeout=30).json() == {"v": 1}
        mark = len(s.lines)
        write(app, VERSIONED.format(v=2).replace("return", "return (("))
        s.wait_for("still serving the last good one", start=mark)
        assert "SyntaxError" in s.output
        assert requests.get(url, timeout=30).json() == {"v": 1}
        mark = len(s.lines)
        write(app, VERSIONED.format(v=3).replace("import modal", "import modal\nimport no_such_module_xyz"))
        s.wait_for("still serving the last good one", start=mark)
        assert "ModuleNotFoundError: No module named 'no_such_module_xyz'" in s.output
        assert requests.get(url, timeout=30).json() == {"v": 1}
        write(app, VERSIONED.format(v=4))
        s.wait_for("App updated", start=mark)
        wait_until(lambda: requests.get(url, timeout=30).json() == {"v": 4})


def test_editing_an_imported_local_module_reloads(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("GREETING = 'hello'\n")
    app = tmp_path / "app.py"
    write(app, """
        import modal
        from helper import GREETING

        app = modal.App("with-helper")

        @app.function()
        @modal.fastapi_endpoint()
        def greet():
            return GREETING
    """)
    with serve(app, tmp_path / "home") as s:
        url = s.urls["greet"]
        assert requests.get(url, timeout=30).json() == "hello"
        write(tmp_path / "helper.py", "GREETING = 'bonjour'\n")
        s.wait_for("App updated")
        wait_until(lambda: requests.get(url, timeout=30).json() == "bonjour")


def test_ctrl_c_leaves_no_process_behind(tmp_path: Path) -> None:
    port = free_port()
    app = tmp_path / "app.py"
    write(app, f"""
        import modal

        app = modal.App("cleanup")

        @app.function()
        @modal.fastapi_endpoint()
        def hello():
            return "hi"

        @app.function()
        @modal.web_server({port})
        def files():
            import subprocess
            subprocess.Popen("python -m http.server --bind 0.0.0.0 {port}", shell=True)
    """)
    s = Serve(str(app), tmp_path / "home")
    try:
        s.ready()
        assert requests.get(s.urls["hello"], timeout=30).json() == "hi"
        assert requests.get(s.urls["files"], timeout=30).status_code == 200
        # containers, the web server's shell and its python are all running now
        assert len(marker_pids(s.marker)) >= 4
        assert s.interrupt() == 0
        wait_until(lambda: marker_pids(s.marker) == [], timeout=10)
        assert "App stopped" in s.output
    finally:
        s.close()


def test_decorator_misuse_is_reported_with_modal_text_and_exit_status(tmp_path: Path) -> None:
    app = tmp_path / "bad.py"
    write(app, """
        import modal

        app = modal.App("bad")

        @modal.fastapi_endpoint()
        @app.function()
        def f():
            return 1
    """)
    s = Serve(str(app), tmp_path / "home")
    try:
        code = s.proc.wait(60)
        s._reader.join(5)
        assert code == 1
        assert "Cannot stack `@modal.fastapi_endpoint` on top of `@app.function`. Hint: swap the order" in s.output
        assert 'bad.py", line' in s.output  # the user's frame is shown
        assert "sampan/sdk" not in s.output  # Sampan's own frames are not
    finally:
        s.close()


def test_missing_file_and_missing_app(tmp_path: Path) -> None:
    s = Serve(str(tmp_path / "nope.py"), tmp_path / "home")
    try:
        assert s.proc.wait(60) == 1
        s._reader.join(5)
        assert "File not found" in s.output
    finally:
        s.close()
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    s = Serve(str(empty), tmp_path / "home")
    try:
        assert s.proc.wait(60) == 1
        s._reader.join(5)
        assert "No App found" in s.output
    finally:
        s.close()


def test_app_variable_and_module_references(tmp_path: Path) -> None:
    pkg = tmp_path / "proj" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    write(pkg / "two.py", """
        import modal

        first = modal.App("first")
        second = modal.App("second")

        @first.function()
        @modal.fastapi_endpoint()
        def a():
            return "a"

        @second.function()
        @modal.fastapi_endpoint()
        def b():
            return "b"
    """)
    s = Serve(str(pkg / "two.py"), tmp_path / "home")
    try:
        assert s.proc.wait(60) == 1
        s._reader.join(5)
        assert "Several Apps found" in s.output and "first, second" in s.output
    finally:
        s.close()
    with serve(f"{pkg / 'two.py'}::second", tmp_path / "home") as s:
        assert set(s.urls) == {"b"}
        assert requests.get(s.urls["b"], timeout=30).json() == "b"
    with serve("pkg.two::first", tmp_path / "home", cwd=tmp_path / "proj", extra_args=["-m"]) as s:
        assert set(s.urls) == {"a"}
        assert requests.get(s.urls["a"], timeout=30).json() == "a"


def test_failing_enter_hook_answers_500_and_the_server_keeps_serving(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    write(app, """
        import modal

        app = modal.App("failing")

        @app.cls()
        class Broken:
            @modal.enter()
            def setup(self):
                raise RuntimeError("model weights not found")

            @modal.fastapi_endpoint()
            def web(self):
                return "never"

        @app.function()
        @modal.fastapi_endpoint()
        def fine():
            return "fine"
    """)
    with serve(app, tmp_path / "home") as s:
        r = requests.get(s.urls["Broken.web"], timeout=60)
        assert r.status_code == 500
        assert r.text == "modal-http: internal error: status InitFailure: RuntimeError: model weights not found"
        s.wait_for("failed to start")
        # A crash-looping class does not turn every request into a new process: retries back off.
        for _ in range(20):
            again = requests.get(s.urls["Broken.web"], timeout=60)
            assert again.status_code == 500 and "model weights not found" in again.text
        assert s.count("failed to start") <= 3
        assert requests.get(s.urls["fine"], timeout=30).json() == "fine"


def test_web_server_that_never_listens_times_out_with_modal_text(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    port = free_port()
    write(app, f"""
        import modal

        app = modal.App("silent")

        @app.function()
        @modal.web_server({port}, startup_timeout=0.5)
        def nothing():
            pass
    """)
    with serve(app, tmp_path / "home") as s:
        r = requests.get(s.urls["nothing"], timeout=60)
        assert r.status_code == 500
        assert f"Waited too long for port {port} to start accepting connections" in r.text


def test_host_routing_and_unknown_urls(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    write(app, VERSIONED.format(v=7))
    with serve(app, tmp_path / "home") as s:
        line = next(line for line in s.lines if "Host-routed gateway" in line)
        port = int(re.search(r":(\d+)$", line.strip()).group(1))
        base = f"http://127.0.0.1:{port}/"
        r = requests.get(base, headers={"Host": f"tester--reload-version-dev.localhost:{port}"}, timeout=30)
        assert r.json() == {"v": 7}
        assert r.headers["modal-function-call-id"].startswith("fc-")
        r = requests.get(base, headers={"Host": f"tester--nothing-dev.localhost:{port}"}, timeout=30)
        assert (r.status_code, r.text) == (404, "modal-http: invalid function call")
        r = requests.get(base, timeout=30)
        assert (r.status_code, r.text) == (404, "modal-http: invalid function call")


def test_concurrent_requests_scale_out_one_input_per_container(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    write(app, """
        import os, time
        import modal

        app = modal.App("scale")

        @app.function()
        @modal.fastapi_endpoint()
        def slow():
            time.sleep(0.5)
            return os.environ["MODAL_TASK_ID"]
    """)
    with serve(app, tmp_path / "home") as s:
        url = s.urls["slow"]
        results: list[int] = []

        def hit() -> None:
            results.append(requests.get(url, timeout=60).json())

        threads = [threading.Thread(target=hit) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(results) == 3
        assert len(set(results)) == 3  # three containers, one request each


def test_container_list_and_logs_see_the_containers_of_a_serve_run(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    app = tmp_path / "app.py"
    write(app, VERSIONED.format(v=3))
    with serve(app, tmp_path / "home") as s:
        assert requests.get(s.urls["version"], timeout=30).json() == {"v": 3}
        env = {**os.environ, "SAMPAN_HOME": str(tmp_path / "home")}

        def cli(*args: str) -> str:
            done = subprocess.run([sys.executable, "-m", "sampan", *args], env=env, capture_output=True, text=True,
                                  timeout=60, check=True)
            return done.stdout

        rows = json.loads(cli("container", "list", "--json"))
        assert [(r["function"], r["state"]) for r in rows] == [("version", "ready")]
        assert "started by fork of template" in cli("container", "logs", rows[0]["id"])
