"""`modal.Sandbox` end to end, against a real server and real containers: an image with a package the host
lacks, exec with streamed output and fed input, files, a tunnel to a server in the sandbox, a blocked
network, a timeout, lookups and tags, and two workspaces that cannot see each other's sandboxes."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from sampan.runtime import sandbox as container_sandbox
from tests.e2e.test_deploy import Sampan, sampan  # noqa: F401 - the fixture

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(container_sandbox.probe() is not None or os.geteuid() != 0
                                 or shutil.which("mmdebstrap") is None,
                                 reason="needs the container sandbox, real images (root, mmdebstrap)")]

SCRIPT = """
    import asyncio, json, sys, time, urllib.request
    import sampan as modal

    PROBE = (
        "import socket, sys\\n"
        "for port in sys.argv[1:]:\\n"
        "    try:\\n"
        "        socket.create_connection(('127.0.0.1', int(port)), timeout=3)\\n"
        "        print('open')\\n"
        "    except OSError as e:\\n"
        "        print(type(e).__name__)\\n"
    )
    app = modal.App.lookup("sandboxes", create_if_missing=True)
    out = {}
    image = modal.Image.debian_slim().apt_install("cowsay")
    sb = modal.Sandbox.create(app=app, image=image, timeout=300, name="main-box", tags={"team": "a"})
    out["cowsay"] = sb.exec("/usr/games/cowsay", "moo").stdout.read()

    # stdout line by line while the process runs
    p = sb.exec("python3", "-u", "-c", "import time\\nfor i in range(3):\\n print('line', i); time.sleep(0.5)",
                bufsize=1)
    start, lines = time.monotonic(), []
    for line in p.stdout:
        lines.append([line, round(time.monotonic() - start, 2)])
    out["lines"], out["lines_code"] = lines, p.wait()

    # stdin in, exit code out
    p = sb.exec("bash", "-c", "while read l; do echo got:$l; done; echo bye >&2; exit 3")
    p.stdin.write(b"a\\nb\\n")
    p.stdin.write_eof()
    p.stdin.drain()
    out["stdin"] = [p.stdout.read(), p.stderr.read(), p.wait(), p.returncode]

    # files
    with sb.open("/tmp/note.txt", "w") as f:
        f.write("written through sb.open")
    out["open"] = sb.open("/tmp/note.txt").read()
    out["cat"] = sb.exec("cat", "/tmp/note.txt").stdout.read()
    sb.filesystem.write_bytes(b"\\x00\\x01binary", "/root/data.bin")
    out["fs"] = [list(sb.filesystem.read_bytes("/root/data.bin")), sb.filesystem.stat("/root/data.bin").size,
                 sb.ls("/tmp")]
    try:
        sb.filesystem.read_text("/nope")
    except modal.exception.SandboxFilesystemNotFoundError:
        out["missing"] = "SandboxFilesystemNotFoundError"

    # a tunnel to an HTTP server in the sandbox
    web = modal.Sandbox.create("python3", "-m", "http.server", "8000", app=app, encrypted_ports=[8000],
                               readiness_probe=modal.Probe.with_tcp(8000), timeout=300)
    web.wait_until_ready(timeout=60)
    tunnel = web.tunnels()[8000]
    out["tunnel"] = [tunnel.url.startswith("http://127.0.0.1:"),
                     urllib.request.urlopen(tunnel.url + "/", timeout=30).status]
    tunnel_port = tunnel.port

    # a blocked network: not even the host's loopback, nor the control API
    blocked = modal.Sandbox.create(app=app, block_network=True, timeout=300)
    control_port = int(sys.argv[1])
    for box in (blocked, web):
        box.filesystem.write_text(PROBE, "/tmp/probe.py")
    out["blocked"] = blocked.exec("python3", "/tmp/probe.py", str(tunnel_port), str(control_port)).stdout.read().split()
    out["open_net"] = web.exec("python3", "/tmp/probe.py", str(control_port)).stdout.read().split()

    # the tunnel's relay socket, swapped by the sandbox for a link to a socket of the host's, leads nowhere
    import socket
    decoy = socket.socket(socket.AF_UNIX)
    decoy.bind(sys.argv[3])
    decoy.listen()
    decoy.settimeout(1)
    web.exec("sh", "-c", "mv /run/sampan/web.sock.8000 /run/sampan/moved.8000 && "
             f"ln -s {sys.argv[3]} /run/sampan/web.sock.8000").wait()
    try:
        urllib.request.urlopen(tunnel.url + "/", timeout=5)
        out["relinked"] = "answered"
    except Exception as exc:  # noqa: BLE001 - whatever the client saw
        out["relinked"] = type(exc).__name__
    try:
        decoy.accept()[0].close()
        out["decoy"] = "reached"
    except OSError:
        out["decoy"] = "untouched"
    decoy.close()

    # an image's local files come along
    with_files = (modal.Image.debian_slim().apt_install("cowsay").add_local_dir(sys.argv[2], "/code")
                  .add_local_file(sys.argv[2] + "/note.md", "/root/"))
    local = modal.Sandbox.create(app=app, timeout=120, image=with_files)
    out["local_files"] = local.exec("sh", "-c", "cat /code/note.md /root/note.md; ls /code").stdout.read().split()
    local.terminate()

    # a snapshot of its files is an image
    sb.exec("sh", "-c", "echo kept > /root/state.txt").wait()
    snap = sb.snapshot_filesystem()
    restored = modal.Sandbox.create(app=app, image=snap, timeout=120)
    out["snapshot"] = restored.exec("sh", "-c", "cat /root/state.txt; ls /usr/games").stdout.read().split()
    out["snapshot_steps"] = snap.to_json()
    restored.terminate()

    # lookups and tags
    out["from_name"] = modal.Sandbox.from_name("sandboxes", "main-box").object_id == sb.object_id
    out["list"] = [s.object_id for s in modal.Sandbox.list(app_id="sandboxes", tags={"team": "a"})] == [sb.object_id]
    sb.set_tags({"team": "b"})
    out["tags"] = modal.Sandbox.from_id(sb.object_id).get_tags()
    try:
        modal.Sandbox.create(app=app, name="main-box", timeout=60)
    except modal.exception.AlreadyExistsError:
        out["same_name"] = "AlreadyExistsError"

    # the entrypoint's exit, its output after it ended; a timeout; terminate
    missing = modal.Sandbox.create("no-such-command-sampan", app=app, timeout=60)
    missing.wait()
    out["missing_command"] = [missing.returncode, "no-such-command-sampan" in missing.stderr.read()]
    done = modal.Sandbox.create("sh", "-c", "echo out; echo err >&2; exit 7", app=app, timeout=60)
    done.wait()
    out["exited"] = [done.returncode, done.stdout.read(), done.stderr.read()]
    short = modal.Sandbox.create("sleep", "600", app=app, timeout=2)
    started = time.monotonic()
    try:
        short.wait()
    except modal.exception.SandboxTimeoutError:
        out["timeout"] = [short.returncode, round(time.monotonic() - started)]
    async def twins():
        box = await modal.Sandbox.create.aio(app=app, timeout=60)
        p = await box.exec.aio("echo", "async")
        got = [piece async for piece in p.stdout]
        code = await p.wait.aio()
        await box.terminate.aio()
        return [got, code]

    out["aio"] = asyncio.run(twins())
    web.terminate()
    try:
        web.wait()
    except modal.exception.SandboxTerminatedError:
        out["terminated"] = web.returncode
    print(json.dumps({"out": out, "ids": [sb.object_id, blocked.object_id]}))
"""

OTHER = """
    import json, sys
    import sampan as modal
    from sampan.sdk.image import Image, Step

    out = {}
    steps = json.loads(sys.argv[2])  # alice's snapshot, named in bob's own recipe
    image = Image(tuple(Step(s["op"], tuple(sorted(s["args"].items()))) for s in steps))
    try:
        modal.Sandbox.create(app=modal.App.lookup("mine"), image=image, timeout=60)
        out["snapshot"] = "used"
    except modal.exception.Error as exc:
        out["snapshot"] = "another workspace's" in str(exc)
    for name, call in (("from_id", lambda: modal.Sandbox.from_id(sys.argv[1])),
                       ("from_name", lambda: modal.Sandbox.from_name("sandboxes", "main-box")),
                       ("exec", lambda: modal.Sandbox.from_id(sys.argv[1]).exec("true"))):
        try:
            call()
            out[name] = "visible"
        except modal.exception.NotFoundError:
            out[name] = "NotFoundError"
    out["list"] = [s.object_id for s in modal.Sandbox.list()]
    print(json.dumps(out))
"""


def test_a_sandbox_from_python(sampan: Sampan, tmp_path: Path) -> None:  # noqa: F811
    sampan.run("server", "start")
    (tmp_path / "box.py").write_text(textwrap.dedent(SCRIPT))
    control = sampan.run("server", "status").stdout.split("control API ", 1)[1].split(",")[0].strip()
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "note.md").write_text("from-my-machine\n")
    done = subprocess.run([sys.executable, str(tmp_path / "box.py"), control.rsplit(":", 1)[1],
                           str(tmp_path / "local"), str(tmp_path / "decoy.sock")],
                          capture_output=True, text=True, env=sampan.env, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    out = found["out"]
    assert "< moo >" in out["cowsay"] and shutil.which("cowsay") is None  # the host lacks it
    assert [line for line, _ in out["lines"]] == ["line 0\n", "line 1\n", "line 2\n"] and out["lines_code"] == 0
    assert out["lines"][2][1] - out["lines"][0][1] >= 0.7  # each line arrived as it was printed
    assert out["stdin"] == ["got:a\ngot:b\n", "bye\n", 3, 3]
    assert out["open"] == out["cat"] == "written through sb.open"
    assert out["fs"] == [[0, 1, 98, 105, 110, 97, 114, 121], 8, ["note.txt"]]
    assert out["missing"] == "SandboxFilesystemNotFoundError"
    assert out["tunnel"] == [True, 200]
    assert out["blocked"] == ["ConnectionRefusedError", "ConnectionRefusedError"]
    assert out["open_net"] == ["open"]  # an ordinary sandbox reaches the platform (Dict, Queue, calls)
    assert out["decoy"] == "untouched" and out["relinked"] != "answered", out
    assert out["snapshot"] == ["kept", "cowsay", "cowthink"]
    assert out["local_files"] == ["from-my-machine", "from-my-machine", "note.md"]
    assert out["from_name"] and out["list"] and out["tags"] == {"team": "b"}
    assert out["same_name"] == "AlreadyExistsError"
    assert out["exited"] == [7, "out\n", "err\n"]
    assert out["missing_command"] == [127, True]
    assert out["timeout"] == [124, 2]
    assert out["terminated"] == 137
    assert out["aio"] == [["async\n"], 0]

    # sandboxes are containers: listed, stopped with the CLI; another workspace sees none of them
    sb_id, blocked_id = found["ids"]
    listed = sampan.json("container", "list")
    assert isinstance(listed, list) and {sb_id, blocked_id} <= {c["id"] for c in listed}
    # the dashboard shows them, under their app and with the containers
    link = sampan.json("dashboard")
    assert isinstance(link, dict)
    with requests.Session() as browser:
        assert browser.get(link["url"], timeout=30).status_code == 200
        base = link["dashboard"].rstrip("/")
        assert "/dashboard/apps/sandboxes" in browser.get(base + "/", timeout=30).text
        assert sb_id in browser.get(base + "/apps/sandboxes", timeout=30).text
        assert sb_id in browser.get(base + "/containers", timeout=30).text
    assert "< cli >" in sampan.run("container", "exec", sb_id, "--", "/usr/games/cowsay", "cli").stdout
    assert "shell-modal" in sampan.run("shell", sb_id, input="echo shell-$(hostname); exit 0\n").stdout
    (tmp_path / "other.py").write_text(textwrap.dedent(OTHER))
    token = sampan.json("token", "new", "--workspace", "bob")
    assert isinstance(token, dict)
    bob = {**sampan.env, "SAMPAN_TOKEN_ID": token["token_id"], "SAMPAN_TOKEN_SECRET": token["token_secret"]}
    bob.pop("SAMPAN_SERVER_TOKEN", None)
    seen = subprocess.run([sys.executable, str(tmp_path / "other.py"), sb_id, json.dumps(out["snapshot_steps"])],
                          capture_output=True, text=True, env=bob, timeout=300)
    assert seen.returncode == 0, seen.stdout + seen.stderr
    assert json.loads(seen.stdout) == {"snapshot": True, "from_id": "NotFoundError", "from_name": "NotFoundError",
                                       "exec": "NotFoundError", "list": []}
    sampan.run("container", "stop", blocked_id, "--yes")
    check = ("import sampan as modal, sys; sb = modal.Sandbox.from_id(sys.argv[1]); "
             "sb.wait(raise_on_termination=False); print(sb.returncode)")
    polled = subprocess.run([sys.executable, "-c", check, blocked_id], capture_output=True, text=True,
                            env=sampan.env, timeout=120)
    assert polled.stdout.strip() == "137", polled.stderr


ATTACH = """
    import sampan as modal

    sb = modal.Sandbox.create(app=modal.App.lookup("sandboxes", create_if_missing=True), timeout=120)
    p = sb.exec("sh", pty=True)
    p.attach()
    print("exited", p.returncode)
    sb.terminate()
"""


def on_a_terminal(argv: list[str], env: dict[str, str], typed: bytes) -> tuple[int, bytes]:
    """Run `argv` on a pseudo-terminal, type `typed` at the first shell prompt; (exit code, screen)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True)
    os.close(follower)
    seen, sent, deadline = b"", False, time.monotonic() + 180
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                piece = os.read(leader, 65536)
            except OSError:
                break
            if not piece:
                break
            seen += piece
        if not sent and b"#" in seen:  # the sandbox's shell prompt: type into it
            os.write(leader, typed)
            sent = True
    os.close(leader)
    return proc.wait(timeout=60), seen


def test_attach_connects_a_terminal_to_a_sandbox_process(sampan: Sampan, tmp_path: Path) -> None:  # noqa: F811
    sampan.run("server", "start")
    (tmp_path / "attach.py").write_text(textwrap.dedent(ATTACH))
    code, seen = on_a_terminal([sys.executable, str(tmp_path / "attach.py")], sampan.env,
                               b"echo attached-$((1+2))\nexit 4\n")
    assert code == 0, seen.decode(errors="replace")
    assert b"attached-3" in seen and b"exited 4" in seen, seen.decode(errors="replace")
    # `sampan shell sb-...` on a terminal: the same path (exec with a PTY, attached), no root needed
    make = ("import sampan as modal; print(modal.Sandbox.create(app=modal.App.lookup('sandboxes'), "
            "timeout=120).object_id)")
    sb_id = subprocess.run([sys.executable, "-c", make], capture_output=True, text=True, env=sampan.env,
                           timeout=120).stdout.strip()
    code, seen = on_a_terminal([sys.executable, "-m", "sampan", "shell", sb_id], sampan.env,
                               b"echo via-$(hostname); exit 5\n")
    assert code == 5 and b"via-modal" in seen, seen.decode(errors="replace")
