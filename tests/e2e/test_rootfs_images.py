"""Images are real root filesystems (server/images/rootfs.py): a Debian base made by mmdebstrap,
apt-get and shell steps run as the image's root, registry images pulled from a registry this test
starts on 127.0.0.1, Dockerfiles; and containers that run inside them, forked from a template that
runs inside them too. Needs a root server with the sandbox, mmdebstrap, skopeo, umoci and Debian's
docker-registry (`.ci/run` installs them)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tarfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import requests

import sampan as modal
from sampan.runtime import sandbox
from sampan.server.images.recipe import ImageBuildError
from sampan.server.images.rootfs import RootfsBuilder
from tests.helpers import IMAGES_DIR, free_port, serve, wait_until

WHY_NOT = (sandbox.probe() or (None if sandbox.host_root() else "the server is not root")
           or next((f"{tool} is not installed" for tool in ("mmdebstrap", "skopeo", "umoci", "slirp4netns")
                    if shutil.which(tool) is None), None))
pytestmark = [pytest.mark.slow, pytest.mark.skipif(WHY_NOT is not None, reason=f"no real images here: {WHY_NOT}")]


def builder() -> RootfsBuilder:
    from sampan.server.images.builder import ImageBuilder

    return RootfsBuilder(Path(IMAGES_DIR), 100000, runtimes=ImageBuilder(Path(IMAGES_DIR)))


def build(image: modal.Image, b: RootfsBuilder | None = None):  # noqa: ANN201
    progress: list[str] = []
    log: list[str] = []
    started = time.perf_counter()
    built = asyncio.run((b or builder()).build(image.to_json(), progress=progress.append, log=log.append))
    return built, progress, log, time.perf_counter() - started


APP = """
    import os, subprocess, sys
    import modal

    image = (modal.Image.debian_slim(python_version="3.11")
             .apt_install("cowsay")
             .run_commands("apt-get update && apt-get install -y figlet && rm -rf /var/lib/apt/lists/*")
             .env({{"GREETING": "moo"}}))
    app = modal.App("realimage", image=image)

    @app.function()
    @modal.fastapi_endpoint()
    def check():
        cow = subprocess.run(["/usr/games/cowsay", os.environ["GREETING"]], capture_output=True, text=True)
        fig = subprocess.run(["figlet", "ok"], capture_output=True, text=True)
        with open("/usr/written-by-container", "w") as fh:  # a private copy: never the layer
            fh.write("x")
        return {{"cow": cow.stdout, "figlet": fig.returncode, "version": sys.version.split()[0],
                "executable": sys.executable, "uid": os.getuid(), "cwd": os.getcwd(),
                "debian": open("/etc/debian_version").read().strip(),
                "apt_lists": sorted(os.listdir("/var/lib/apt/lists"))[:3]}}
"""


def test_apt_packages_and_run_commands_as_root_live_in_the_image_only(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP.format()))
    assert not os.path.exists("/usr/games/cowsay")  # the host does not have it
    with serve(tmp_path / "app.py", tmp_path / "home", cwd=tmp_path) as s:
        body = requests.get(s.urls["check"], timeout=60).json()
        assert "moo" in body["cow"] and "(oo)" in body["cow"]
        assert body["figlet"] == 0
        assert body["version"].startswith("3.11.") and body["executable"] == "/usr/local/bin/python"
        assert body["uid"] == 0 and body["cwd"] == "/root"
        assert body["debian"].startswith("12.")
        assert body["apt_lists"] in ([], ["auxfiles"], ["lock"], ["auxfiles", "lock"], ["lock", "partial"],
                                     ["partial"])  # the lists were cleaned
        assert "fork of template" in s.output  # the template runs inside the image
        again = requests.get(s.urls["check"], timeout=60).json()
        assert again["cow"] == body["cow"]
    assert not os.path.exists("/usr/games/cowsay")
    # the container's write went to its own copy, not into any layer
    layers = Path(IMAGES_DIR) / "layers"
    assert not any(layers.glob("*/diff/usr/written-by-container"))


def test_a_cached_rebuild_is_instant_and_an_edit_rebuilds_only_the_last_step() -> None:
    token = uuid.uuid4().hex  # the image directory is shared by the whole test run: this recipe is new
    image = modal.Image.debian_slim().apt_install("jq").run_commands(f"echo {token} > /one")
    first, _, _, _ = build(image)
    again, progress, _, seconds = build(image)
    assert again.cached and again.id == first.id and progress == [] and seconds < 1.0
    edited, progress, _, _ = build(modal.Image.debian_slim().apt_install("jq").run_commands(f"echo {token} > /two"))
    assert edited.id != first.id
    assert progress == [f"Building image {edited.id}", f"Step 3/3: run_commands('echo {token} > /two')"], progress
    assert len(edited.layers) == len(first.layers) and edited.layers[1:] == first.layers[1:]


def test_python_versions() -> None:
    built, _, _, _ = build(modal.Image.debian_slim(python_version="3.11"))
    assert built.python_version == "3.11"
    from sampan.server.images.pythons import host_pythons

    if "3.12" not in host_pythons():
        with pytest.raises(ImageBuildError, match="Python 3.12 is not installed"):
            build(modal.Image.debian_slim(python_version="3.12"))
        return
    built, _, _, _ = build(modal.Image.debian_slim(python_version="3.12").run_commands(
        "python --version > /pyver && pip --version >> /pyver"))
    assert built.python_version == "3.12"
    top = Path(built.layers[0])
    text = (top / "pyver").read_text()
    assert text.startswith("Python 3.12.") and "pip 24.0" in text


@pytest.mark.parametrize("image, expected", [
    (modal.Image.debian_slim().apt_install("no-such-package-sampan"), "Unable to locate package no-such-package"),
    (modal.Image.debian_slim().run_commands(f"echo about to fail; exit 7 # {uuid.uuid4().hex}"), "exit status 7"),
    (modal.Image.from_registry("Not A Reference!"), "Invalid image reference"),
    (modal.Image.debian_slim().dockerfile_commands("VOLUME /data"), "`VOLUME` is not supported"),
    (modal.Image.debian_slim().dockerfile_commands("FROBNICATE x"), "unknown instruction"),
])
def test_bad_steps_stop_the_build_with_the_tools_message_and_cache_nothing(image: modal.Image, expected: str) -> None:
    b = builder()
    try:
        chain = b.chain(image.to_json())
    except ImageBuildError as exc:  # refused while planning: before anything runs
        assert expected in str(exc)
        return
    with pytest.raises((ImageBuildError, ValueError), match=expected) as info:
        build(image, b)
    if "exit status" in expected:
        assert "about to fail" in str(info.value) and "run_commands" in str(info.value)
    assert b._meta(chain[-1].key) is None
    assert not list((Path(IMAGES_DIR) / "layers").glob(f".b-{chain[-1].key[:20]}-*"))


# -- a registry of our own -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """Debian's docker-registry on 127.0.0.1, holding an image this fixture makes from the Debian base
    (umoci) and pushes (skopeo): `127.0.0.1:PORT/sampan/py:1`, with ENV FROM_IMAGE=yes and WORKDIR /app."""
    if shutil.which("docker-registry") is None:
        pytest.skip("Debian's docker-registry is not installed")
    base, _, _, _ = build(modal.Image.debian_slim())  # makes the mmdebstrap tarball
    tarball = next((Path(IMAGES_DIR) / "cache").glob("debian-*.tar"))
    work = tmp_path_factory.mktemp("registry")
    port = free_port()
    (work / "config.yml").write_text(textwrap.dedent(f"""
        version: 0.1
        storage:
          filesystem:
            rootdirectory: {work / "data"}
        http:
          addr: 127.0.0.1:{port}
    """))
    proc = subprocess.Popen(["docker-registry", "serve", str(work / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/v2/", timeout=2).ok
                   if _connectable(port) else False, timeout=30)
        rootfs = work / "rootfs"
        rootfs.mkdir()
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if not m.name.startswith("./dev/")]
            tar.extractall(rootfs, members=members, numeric_owner=True, filter="fully_trusted")
        layout = work / "oci"
        run = lambda *argv: subprocess.run(argv, check=True, capture_output=True, timeout=300)  # noqa: E731
        run("umoci", "init", "--layout", str(layout))
        run("umoci", "new", "--image", f"{layout}:t")
        run("umoci", "insert", "--image", f"{layout}:t", str(rootfs), "/")
        run("umoci", "config", "--image", f"{layout}:t", "--config.env", "FROM_IMAGE=yes",
            "--config.workingdir", "/app", "--config.env", "PATH=/usr/local/bin:/usr/bin:/bin")
        run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:t", f"docker://127.0.0.1:{port}/sampan/py:1")
        yield f"127.0.0.1:{port}/sampan/py:1"
    finally:
        proc.terminate()
        proc.wait(10)


def _connectable(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


REGISTRY_APP = """
    import os, sys
    import modal

    registry = modal.Image.from_registry({ref!r})
    dockerfile = modal.Image.from_dockerfile("Dockerfile")
    app = modal.App("registry")

    def facts():
        return {{"from_image": os.environ.get("FROM_IMAGE"), "cwd": os.getcwd(), "version": sys.version.split()[0],
                "built": open("/built").read().strip() if os.path.exists("/built") else None,
                "copied": open("/opt/data/data.txt").read() if os.path.exists("/opt/data/data.txt") else None,
                "greeting": os.environ.get("GREETING")}}

    @app.function(image=registry)
    @modal.fastapi_endpoint()
    def pulled():
        return facts()

    @app.function(image=dockerfile)
    @modal.fastapi_endpoint()
    def dockerfiled():
        return facts()
"""

DOCKERFILE = """
    ARG TAG=1
    FROM {repo}:${{TAG}}
    ENV GREETING="hello there"
    # a comment between instructions
    RUN echo "built as $(id -u)" > /built && \\
        echo continued >> /built
    WORKDIR /srv/work
    COPY data.txt /opt/data/
"""


def test_registry_images_and_dockerfiles(tmp_path: Path, registry: str) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(REGISTRY_APP.format(ref=registry)))
    (tmp_path / "Dockerfile").write_text(textwrap.dedent(DOCKERFILE.format(repo=registry.rsplit(":", 1)[0])))
    (tmp_path / "data.txt").write_text("from the context")
    with serve(tmp_path / "app.py", tmp_path / "home", cwd=tmp_path) as s:
        answer = requests.get(s.urls["pulled"], timeout=60)
        assert answer.status_code == 200, s.output
        pulled = answer.json()
        assert pulled["from_image"] == "yes" and pulled["cwd"] == "/app"  # the image's ENV and WORKDIR
        assert pulled["version"].startswith("3.11.")
        answer = requests.get(s.urls["dockerfiled"], timeout=60)
        assert answer.status_code == 200, s.output
        built = answer.json()
        assert built["from_image"] == "yes" and built["greeting"] == "hello there"
        assert built["built"] == "built as 0\ncontinued" and built["cwd"] == "/srv/work"
        assert built["copied"] == "from the context"


def test_an_unreachable_registry_fails_with_skopeos_message() -> None:
    port = free_port()
    with pytest.raises(ImageBuildError, match=r"Could not pull .*127\.0\.0\.1"):
        build(modal.Image.from_registry(f"127.0.0.1:{port}/nothing/here:1"))


def test_layers_are_owned_by_the_container_range_not_host_root() -> None:
    built, _, _, _ = build(modal.Image.debian_slim().apt_install("jq"))
    bottom = Path(built.layers[-1])
    assert bottom.joinpath("usr/bin/python3").exists()
    owners = {p.lstat().st_uid for p in list(bottom.joinpath("usr/bin").iterdir())[:50]}
    assert owners and all(100000 <= uid < 100000 + 65536 for uid in owners)
    meta = json.loads((Path(built.path) / "meta.json").read_text())
    assert meta["python"] == "/usr/local/bin/python"


RUN_FUNCTION_APP = """
    import os
    import modal

    def download(name, size=3):
        # runs once, while the image is built: what it writes is part of the image
        os.makedirs("/models", exist_ok=True)
        with open(f"/models/{{name}}", "w") as fh:
            fh.write("w" * size + " " + os.environ.get("TOKEN", "-") + " " + os.environ.get("MODAL_IS_REMOTE", "-"))

    image = (modal.Image.debian_slim().run_function(download, args=("weights",), kwargs={{"size": 5}},
                                                    secrets=[modal.Secret.from_dict({{"TOKEN": "{token}"}})]))
    app = modal.App("builder", image=image)

    @app.function()
    @modal.fastapi_endpoint()
    def read():
        return {{"weights": open("/models/weights").read(), "token_in_env": os.environ.get("TOKEN")}}
"""


def test_run_function_runs_once_at_build_and_its_files_are_the_layer(tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    (tmp_path / "app.py").write_text(textwrap.dedent(RUN_FUNCTION_APP.format(token=token)))
    with serve(tmp_path / "app.py", tmp_path / "home", cwd=tmp_path) as s:
        body = requests.get(s.urls["read"], timeout=60).json()
        assert body == {"weights": f"wwwww {token} 1", "token_in_env": None}  # the build's secret is not kept
        assert "run_function download" in s.output
    with pytest.raises(modal.exception.InvalidError, match="does not support lambda"):
        modal.Image.debian_slim().run_function(lambda: None)
    with pytest.raises(modal.exception.InvalidError, match="must be a function, not int"):
        modal.Image.debian_slim().run_function(3)  # type: ignore[arg-type]


def test_a_link_made_by_a_run_never_leads_a_copy_or_a_workdir_out_of_the_layer(tmp_path: Path) -> None:
    """The server writes COPY sources and WORKDIR directories into the layer itself, on the host: a link a
    RUN made in the same layer, to a host path, must not take those writes there (before, COPY wrote the
    file through it as root, and WORKDIR made the directory)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    context = tmp_path / "context"
    context.mkdir()
    (context / "f.txt").write_text("payload")
    tag = uuid.uuid4().hex  # a fresh recipe: never a cached layer
    for lines in ([f"RUN ln -s {outside} /app # {tag}", "COPY f.txt /app/f.txt"],
                  [f"RUN ln -s {outside} /w # {tag}", "WORKDIR /w/made"]):
        with pytest.raises(ImageBuildError, match="link"):
            build(modal.Image.debian_slim().dockerfile_commands(*lines, context_dir=str(context)))
        assert list(outside.iterdir()) == []
    # a link within the layer is followed as before
    built, _, _, _ = build(modal.Image.debian_slim().dockerfile_commands(
        f"RUN mkdir -p /srv/real && ln -s real /srv/app # {tag}", "COPY f.txt /srv/app/f.txt", "WORKDIR /srv/app/sub",
        context_dir=str(context)))
    diff = next(p for p in (Path(IMAGES_DIR) / "layers").glob("*/diff/srv/real/f.txt"))
    assert diff.read_text() == "payload" and (diff.parent / "sub").is_dir()
