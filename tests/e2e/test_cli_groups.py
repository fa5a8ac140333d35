"""The CLI groups of Modal's index against a running server: dict, queue, config, profile,
environment, nfs, launch; and legacy objects (Mount, NetworkFileSystem, CloudBucketMount, Proxy) in a
deployed app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from sampan.runtime import sandbox
from tests.e2e.test_deploy import Sampan, sampan  # noqa: F401 - the fixture
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

LEGACY = """
    import modal

    app = modal.App("legacy")
    share = modal.NetworkFileSystem.from_name("shared", create_if_missing=True)

    @app.function(network_file_systems={{"/shared": share}},
                  mounts=[modal.Mount.from_local_file({asset!r}, remote_path="/assets/asset.txt")],
                  proxy=modal.Proxy.from_name("static-ip"), gpu=None)
    @modal.fastapi_endpoint()
    def look():
        with open("/shared/note", "w") as fh:
            fh.write("shared")
        return {{"asset": open("/assets/asset.txt").read()}}
"""


def test_dict_and_queue_groups(sampan: Sampan) -> None:  # noqa: F811
    sampan.run("server", "start")
    sampan.run("dict", "create", "prefs")
    assert [d["name"] for d in sampan.json("dict", "list")] == ["prefs"]  # type: ignore[union-attr]
    sampan.run("queue", "create", "jobs")
    assert "jobs" in sampan.run("queue", "list").stdout
    assert sampan.run("queue", "len", "jobs").stdout.strip() == "0"
    assert sampan.run("dict", "get", "prefs", "missing", check=False).returncode != 0
    sampan.run("dict", "clear", "prefs", "--yes")
    sampan.run("dict", "delete", "prefs", "--yes")
    sampan.run("queue", "delete", "jobs", "--yes")
    assert sampan.json("dict", "list") == []


def test_config_profile_environment_launch(sampan: Sampan) -> None:  # noqa: F811
    sampan.run("server", "start")
    shown = json.loads(sampan.run("config", "show").stdout)
    assert shown["workspace"] == "alice" and shown["profile"] == "default"
    assert shown["profile_settings"]["token_secret"] == "***"
    assert sampan.run("profile", "current").stdout.strip() == "default"
    assert sampan.json("profile", "list") == [{"name": "default", "workspace": "alice", "active": True,
                                               "server_url": ""}]
    assert "main" in sampan.run("environment", "list").stdout
    refused = sampan.run("launch", "jupyter", check=False)
    assert refused.returncode != 0 and "not offered" in refused.stderr
    assert sampan.run("environment", "create", "x", check=False).returncode != 0


def test_legacy_objects_in_a_deployed_app(sampan: Sampan, tmp_path: Path) -> None:  # noqa: F811
    asset = tmp_path / "asset.txt"
    asset.write_text("from a legacy mount")
    (tmp_path / "legacy.py").write_text(textwrap.dedent(LEGACY.format(asset=str(asset))))
    sampan.run("server", "start")
    deployed = sampan.run("deploy", str(tmp_path / "legacy.py"))
    assert "`proxy=` is accepted but has no effect here" in deployed.stdout + deployed.stderr
    url = sampan.urls("legacy")["look"]
    body = requests.get(url, timeout=120).json()
    assert body == {"asset": "from a legacy mount"}
    assert [n["name"] for n in sampan.json("nfs", "list")] == ["shared"]  # type: ignore[index]
    assert sampan.run("nfs", "get", "shared", "/note").stdout == "shared"


WARM = """
    import modal

    app = modal.App("warm")

    @app.function(min_containers=1)
    @modal.fastapi_endpoint()
    def hi():
        return "hi"
"""


def test_container_exec_and_stop(sampan: Sampan, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "warm.py").write_text(textwrap.dedent(WARM))
    sampan.run("server", "start")
    sampan.run("deploy", str(tmp_path / "warm.py"))
    rows = wait_until(lambda: [c for c in sampan.json("container", "list") if c["state"] in ("ready", "idle")],  # type: ignore
                      timeout=60)
    cid = rows[0]["id"]
    done = sampan.run("container", "exec", cid, "--", "sh", "-c", "echo $(id -u) $(hostname); exit 3", check=False)
    if sandbox.probe() is None:
        assert done.returncode == 3 and done.stdout.split() == ["0", "modal"], done.stdout + done.stderr
    else:
        assert done.returncode != 0 and "needs the container sandbox" in done.stderr
    sampan.run("container", "stop", cid, "--yes")
    wait_until(lambda: cid not in [c["id"] for c in sampan.json("container", "list")], timeout=30)  # type: ignore
    missing = sampan.run("container", "stop", "ta-nothing", "--yes", check=False)
    assert missing.returncode != 0 and "No running container" in missing.stderr


SCALED = """
    import modal

    app = modal.App("scaled")

    @app.function()
    def work(x):
        return x
"""

UPDATE = """
    import sys
    import modal

    f = modal.Function.from_name("scaled", "work")
    print(f.update_autoscaler(min_containers=int(sys.argv[1])))
    try:
        f.update_autoscaler(scaledown_window=1)
    except modal.exception.InvalidError as exc:
        print("refused:", exc)
"""


def test_update_autoscaler_of_a_deployed_function(sampan: Sampan, tmp_path: Path) -> None:  # noqa: F811
    import subprocess
    import sys

    from tests.helpers import wait_until

    (tmp_path / "scaled.py").write_text(textwrap.dedent(SCALED))
    (tmp_path / "update.py").write_text(textwrap.dedent(UPDATE))
    sampan.run("server", "start")
    sampan.run("deploy", str(tmp_path / "scaled.py"))
    assert sampan.json("container", "list") == []
    out = subprocess.run([sys.executable, "-c", f"import runpy, sys; sys.argv = ['u', '1']; "
                          f"from sampan import modal_alias; modal_alias.install(); "
                          f"runpy.run_path({str(tmp_path / 'update.py')!r}, run_name='__main__')"],
                         env=sampan.env, capture_output=True, text=True, timeout=120)
    assert "min_containers=1" in out.stdout, out.stdout + out.stderr
    assert "refused: Invalid argument: `scaledown_window` must be between 2 and 3600 (inclusive)" in out.stdout
    wait_until(lambda: len(sampan.json("container", "list")) == 1, timeout=60)  # type: ignore[arg-type]


LOUD = """
    import sys
    import modal

    app = modal.App("loud")

    @app.function()
    @modal.fastapi_endpoint()
    def speak(word: str = "x"):
        print("said", word)
        print("oops", word, file=sys.stderr)
        return word
"""


def test_app_logs_filters(sampan: Sampan, tmp_path: Path) -> None:  # noqa: F811
    from tests.helpers import wait_until

    (tmp_path / "loud.py").write_text(textwrap.dedent(LOUD))
    sampan.run("server", "start")
    sampan.run("deploy", str(tmp_path / "loud.py"))
    url = sampan.urls("loud")["speak"]
    for word in ("apple", "banana"):
        assert requests.get(url, params={"word": word}, timeout=120).json() == word
    wait_until(lambda: "oops banana" in sampan.run("app", "logs", "loud").stdout, timeout=20)
    only = sampan.run("app", "logs", "loud", "--search", "banana", "--source", "stdout").stdout
    assert "said banana" in only and "apple" not in only and "oops" not in only
    assert "said" not in sampan.run("app", "logs", "loud", "--until", "1h").stdout
    assert "said apple" in sampan.run("app", "logs", "loud", "--since", "10m").stdout


IMAGED = """
    import modal

    app = modal.App("imaged", image=modal.Image.debian_slim().env({{"RUN": "{token}"}}))

    @app.function()
    @modal.fastapi_endpoint()
    def hi():
        return "hi"
"""


def test_image_list_and_rm(sampan: Sampan, tmp_path: Path) -> None:  # noqa: F811
    import uuid

    from sampan.runtime import sandbox

    if sandbox.probe() is not None or not sandbox.host_root():
        pytest.skip("real images need a root server with the sandbox")
    (tmp_path / "imaged.py").write_text(textwrap.dedent(IMAGED.format(token=uuid.uuid4().hex)))
    sampan.run("server", "start")
    sampan.run("deploy", str(tmp_path / "imaged.py"))
    images = sampan.json("image", "list")
    assert isinstance(images, list)
    mine = [i for i in images if any("env" in (s or "") for s in i["steps"])]
    assert mine and mine[0]["size"] > 0 and mine[0]["python"] == "3.11"
    assert mine[0]["id"] in sampan.run("image", "list").stdout  # the whole id, even piped
    sampan.run("image", "rm", mine[0]["id"])
    assert mine[0]["id"] not in [i["id"] for i in sampan.json("image", "list")]  # type: ignore[union-attr]
    missing = sampan.run("image", "rm", "im-00000000000000000000", check=False)
    assert missing.returncode != 0 and "not found" in (missing.stdout + missing.stderr)


SHELLED = """
    import modal

    app = modal.App("shelled", secrets=[modal.Secret.from_dict({"TOKEN": "t0k"})])

    @app.function(volumes={"/data": modal.Volume.from_name("shell-data", create_if_missing=True)})
    def work():
        return 1
"""


def test_shell_in_a_new_container_of_a_function(sampan: Sampan, tmp_path: Path) -> None:  # noqa: F811
    """`sampan shell app.py::fn` starts a container of the function (its secrets, Volumes, /root) and runs
    the shell there; its exit status is the shell's, and the app is gone afterwards."""
    if os.geteuid() != 0 or sandbox.probe() is not None:
        pytest.skip("`sampan shell` enters a sandboxed container's namespaces as root")
    (tmp_path / "shelled.py").write_text(textwrap.dedent(SHELLED))
    script = 'echo "token=$TOKEN cwd=$(pwd) uid=$(id -u) host=$(hostname)"; ls /root; touch /data/seen; exit 3\n'
    done = sampan.run("shell", f"{tmp_path / 'shelled.py'}::work", check=False, input=script)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "token=t0k cwd=/root uid=0 host=modal" in done.stdout
    assert "shelled.py" in done.stdout
    assert sampan.run("volume", "ls", "shell-data").stdout.count("seen") == 1
    missing = sampan.run("shell", f"{tmp_path / 'shelled.py'}::nothing", check=False, input="exit 0\n")
    assert missing.returncode != 0 and "No function 'nothing'" in missing.stdout + missing.stderr


OBSERVED = """
    import modal
    from fastapi import HTTPException

    app = modal.App("observed")

    @app.function()
    @modal.fastapi_endpoint()
    def item(fail: bool = False):
        print(f"item called, fail={fail}")
        if fail:
            raise HTTPException(status_code=503, detail="down")
        return {"ok": True}

    @app.function()
    def work(n: int) -> int:
        print(f"working on {n}")
        return n
"""


def test_request_log_stats_and_metrics(sampan: Sampan, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "observed.py").write_text(textwrap.dedent(OBSERVED))
    sampan.run("deploy", str(tmp_path / "observed.py"))
    url = sampan.urls("observed")["item"]
    for _ in range(3):
        assert requests.get(url, timeout=60).status_code == 200
    assert requests.get(url + "?fail=true", timeout=60).status_code == 503
    assert requests.get(url + "/<script>alert(1)</script>", timeout=60).status_code == 404
    logged = [json.loads(line) for line in sampan.run("app", "requests", "observed", "--json").stdout.splitlines()]
    assert [r["status"] for r in logged] == [200, 200, 200, 503, 404]
    assert logged[0]["cold"] is True and all(r["function"] == "item" for r in logged)
    failed = sampan.run("app", "requests", "observed", "--status", "5xx", "--json").stdout.splitlines()
    assert [json.loads(line)["status"] for line in failed] == [503]
    text = sampan.run("app", "requests", "observed", "--since", "10m").stdout
    assert "/%3Cscript%3Ealert(1)%3C/script%3E" in text and "503" in text  # the path as sent, as text
    stats = sampan.json("app", "stats", "observed")
    assert isinstance(stats, dict)
    item = stats["functions"]["item"]
    assert (item["requests"], item["errors_5xx"], item["cold_starts"]) == (5, 1, 1)
    assert "Function" in sampan.run("app", "stats", "observed").stdout
    refused = sampan.run("app", "requests", "nothing-here", check=False)
    assert refused.returncode != 0 and "not found" in refused.stderr
    # the same containers' output through the SDK's log readers (Modal 1.5.3+)
    code = textwrap.dedent("""
        import datetime as dt
        import sampan as modal
        f = modal.Function.from_name("observed", "item")
        tail = list(f.logs.tail(20, source="stdout"))
        print("tail", sum("item called" in e.message for e in tail), tail[0].source, tail[0].context_ids[0][:3])
        since = dt.datetime.now() - dt.timedelta(minutes=10)
        found = list(modal.App.lookup("observed").logs.fetch(since=since, search_text="fail=True"))
        print("fetch", [e.message for e in found])
        print("stream", list(f.logs.stream(timeout=1)))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=sampan.env, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines == {"tail": "4 stdout ta-", "fetch": "['item called, fail=True\\n']", "stream": "[]"}
    # a function call's own lines (FunctionCall.logs), and the readers' async twins
    code = textwrap.dedent("""
        import asyncio
        import sampan as modal
        work = modal.Function.from_name("observed", "work")
        calls = [work.spawn(n) for n in (7, 8)]
        assert [c.get() for c in calls] == [7, 8]
        for call in calls:
            print("call", [e.message for e in call.logs.tail(10)])

        async def twin():
            return [e.message async for e in calls[0].logs.tail.aio(10)]

        print("aio", asyncio.run(twin()))
        print("none", list(modal.FunctionCall.from_id("fc-000000000000000000000000").logs.tail(5)))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=sampan.env, timeout=120)
    assert "not found" in done.stderr and done.returncode != 0, done.stdout + done.stderr
    printed = done.stdout.splitlines()
    assert printed == ["call ['working on 7\\n']", "call ['working on 8\\n']", "aio ['working on 7\\n']"]
    listed = sampan.run("app", "logs", "observed", "--function", "work").stdout
    assert "working on 7" in listed and "working on 8" in listed and "item called" not in listed
