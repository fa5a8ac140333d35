"""The dashboard in a real browser (headless Chromium driven by Playwright) against a real server: log in,
open an app, watch its chart move under load, follow a container's log live, stop a container, find a
5xx in the request log, roll back; another workspace sees none of it. Screenshots of every page are
saved (artefacts: $SAMPAN_ARTIFACTS, default build/artifacts/dashboard) for docs/dashboard.md."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.test_deploy import Sampan, sampan  # noqa: F401 - the fixture
from tests.helpers import wait_until

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(os.environ.get("SAMPAN_ARTIFACTS") or REPO / "build" / "artifacts") / "dashboard"
# The flags a closed network needs (no background calls home) and a root user needs (no sandbox).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

WATCHED = """
    import modal

    app = modal.App("watched")
    VERSION = {version}

    @app.function()
    @modal.fastapi_endpoint()
    def item(say: str = "", fail: bool = False, evil: bool = False):
        if say:
            print(say, flush=True)
        if evil:
            print("\\x1b[31m<script>window.pwned = 1</script><img src=x onerror='window.pwned = 2'>\\x1b[0m",
                  flush=True)
        if fail:
            raise RuntimeError("boom")
        return {{"v": VERSION}}

    @app.function()
    def double(n: int) -> int:
        return 2 * n
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Load(threading.Thread):
    """Requests to one URL, one at a time, until stopped (at most `limit_s` seconds)."""

    def __init__(self, url: str, limit_s: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.url, self.limit_s = url, limit_s
        self.stopped = threading.Event()
        self.sent = 0

    def run(self) -> None:
        end = time.monotonic() + self.limit_s
        with requests.Session() as session:
            while not self.stopped.is_set() and time.monotonic() < end:
                session.get(self.url, timeout=10)
                self.sent += 1


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_the_dashboard_in_a_browser(sampan: Sampan, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    source = tmp_path / "watched.py"
    for version in (1, 2):
        source.write_text(textwrap.dedent(WATCHED.format(version=version)))
        sampan.run("deploy", str(source))
    url = sampan.urls("watched")["item"]
    assert requests.get(url, timeout=60).json() == {"v": 2}
    sampan.run("dict", "create", "prefs")
    (tmp_path / "notes.txt").write_text("hello")
    sampan.run("volume", "create", "media")
    sampan.run("volume", "put", "media", str(tmp_path / "notes.txt"), "/docs/notes.txt")
    spawn = "import sampan as modal; print(modal.Function.from_name('watched', 'double').spawn(21).get())"
    done = subprocess.run([sys.executable, "-c", spawn], capture_output=True, text=True, env=sampan.env, timeout=120)
    assert done.stdout.strip() == "42", done.stderr
    token = sampan.json("token", "new")
    assert isinstance(token, dict)
    control = sampan.run("server", "status").stdout.split("control API ", 1)[1].split(",")[0].strip()
    dashboard = f"{control}/dashboard"

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())

    # log in: the form, then a cookie session
    page.goto(f"{dashboard}/")
    assert page.url.startswith(f"{dashboard}/login")
    shot(page, "login")
    page.fill("#token", "not:a-token")
    page.click("#login")
    assert "not valid" in page.inner_text("main")
    page.fill("#token", f"{token['token_id']}:{token['token_secret']}")
    page.click("#login")
    page.wait_for_url(f"{dashboard}/")
    assert "watched" in page.inner_text("#apps")
    shot(page, "apps")

    # an app: its chart moves while a load generator runs
    page.click("#apps >> text=watched")
    page.wait_for_url(f"{dashboard}/apps/watched")
    page.click("#window-300")  # the last 5 minutes
    page.wait_for_url(f"{dashboard}/apps/watched?window=300")
    charts = '.function[data-function="item"] .charts'
    page.wait_for_selector(f"{charts}[data-total]")
    assert page.locator(f"{charts} canvas").count() >= 4  # uPlot drew them
    before = int(page.get_attribute(charts, "data-total") or 0)
    load = Load(url)
    load.start()
    try:
        page.wait_for_function(f"(n) => Number(document.querySelector('{charts}').dataset.total) > n + 20",
                               arg=before, timeout=30_000)
        shot(page, "app")
    finally:
        load.stopped.set()
        load.join()
    assert load.sent > 20

    # a 5xx appears in the request log
    assert requests.get(url + "?fail=true", timeout=60).status_code == 500
    page.click("#filter-5xx")
    page.wait_for_selector("#requests td.status:text-is('500')", timeout=15_000)
    assert "200" not in page.locator("#requests td.status").all_inner_texts()
    shot(page, "requests-5xx")

    # a container's log, live: a line printed after the page opened arrives; markup in it stays text
    page.click("#nav-containers")
    page.wait_for_selector("#containers tr[data-container]")
    shot(page, "containers")
    cid = page.get_attribute("#containers tr[data-container]", "data-container")
    page.click(f"#containers >> text={cid}")
    page.wait_for_selector("#log")
    page.wait_for_timeout(500)  # the event stream is open
    nonce = "after-opening-" + secrets.token_hex(4)
    for query in (f"?say={nonce}", "?evil=true"):
        requests.get(url + query, timeout=60)
    page.wait_for_function("(n) => document.querySelector('#log').textContent.includes(n)", arg=nonce,
                           timeout=15_000)
    page.wait_for_function("() => document.querySelector('#log').textContent.includes('<script>')",
                           timeout=15_000)
    assert page.evaluate("window.pwned") is None
    assert page.locator("#log script, #log img").count() == 0
    assert "\x1b" not in page.inner_text("#log")
    shot(page, "container-log")

    # stop it from the page: it leaves the list
    page.click("#stop-container")
    page.wait_for_url(f"{dashboard}/containers")
    wait_until(lambda: cid not in [c["id"] for c in sampan.json("container", "list")],  # type: ignore[union-attr]
               timeout=30, interval=0.5)

    # function calls and their graph; storage
    page.click("#nav-calls")
    page.wait_for_selector("#calls")
    assert "double" in page.inner_text("#calls") and "SUCCESS" in page.inner_text("#calls")
    shot(page, "calls")
    page.click("#calls td.id a >> nth=0")
    page.wait_for_selector("#graph")
    page.click("#nav-storage")
    for part in ("#volumes", "#dicts"):
        page.wait_for_selector(part)
    assert "prefs" in page.inner_text("#dicts")
    shot(page, "storage")
    page.click("#volumes >> text=media")
    page.click("#entries >> text=docs/")
    assert "docs/notes.txt" in page.inner_text("#entries")

    # roll back to version 1 from the history
    page.goto(f"{dashboard}/apps/watched")
    page.click('button.rollback[data-version="1"]')
    page.wait_for_url(f"{dashboard}/apps/watched")
    wait_until(lambda: requests.get(url, timeout=30).json() == {"v": 1}, timeout=60, interval=0.2)
    assert "serving" not in page.inner_text("h1") and "v1" in page.inner_text("h1")
    assert errors == []

    # another workspace's session sees none of it
    theirs = sampan.json("token", "new", "--workspace", "bob")
    assert isinstance(theirs, dict)
    other = browser.new_context().new_page()
    other.goto(f"{dashboard}/login")
    other.fill("#token", f"{theirs['token_id']}:{theirs['token_secret']}")
    other.click("#login")
    other.wait_for_url(f"{dashboard}/")
    assert "watched" not in other.inner_text("main")
    assert other.goto(f"{dashboard}/apps/watched").status == 404
    assert other.goto(f"{dashboard}/volumes/media").status == 404
    assert requests.get(f"{dashboard}/apps/watched", timeout=10, allow_redirects=False).status_code == 303

    # `sampan dashboard` hands out a link that logs a browser in, once
    link = sampan.json("dashboard")
    assert isinstance(link, dict) and link["dashboard"] == f"{dashboard}/"
    opened = browser.new_context().new_page()
    opened.goto(link["url"])
    assert opened.url == f"{dashboard}/" and "watched" in opened.inner_text("#apps")
    again = browser.new_context().new_page()
    again.goto(link["url"])
    assert "used already" in again.inner_text("main")
    printed = sampan.run("dashboard", "--no-browser").stdout
    assert "/dashboard/login?code=" in printed
    assert requests.get(f"{control}/metrics", timeout=10).status_code == 401
