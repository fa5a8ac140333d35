"""`add_local_*(copy=True)` on a shared server: the client sends the sources in the bundle
(localfiles.image_uploads) and the server builds from its copy of them, never from the path the client
named (server/apps.py `stage_uploads`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import sampan as modal
from sampan.exception import InvalidError
from sampan.localfiles import image_uploads
from sampan.manifest import Manifest
from sampan.server.apps import stage_uploads
from sampan.server.bundle import write_bundle
from tests import fakes


def manifest_with(image: modal.Image) -> Manifest:
    base = fakes.manifest()
    return replace(base, functions=(replace(base.functions[0], image=tuple(image.to_json())),), calls=())


def test_a_client_sends_the_sources_of_copy_true_steps_and_only_those(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "a.txt").write_text("a")
    (tmp_path / "d" / "skip.log").write_text("no")
    (tmp_path / "f.txt").write_text("f")
    image = (modal.Image.debian_slim().add_local_file(tmp_path / "f.txt", "/x/", copy=True)
             .add_local_dir(tmp_path / "d", "/d", copy=True, ignore=["*.log"])
             .add_local_file(tmp_path / "f.txt", "/y"))  # copy=False: mounted at start, not sent for the build
    sent = image_uploads(image.to_json())
    assert sorted(Path(p).name for p in sent) == ["a.txt", "f.txt"]
    assert all(p.startswith(".sampan-uploads/") for p in sent)
    with pytest.raises(InvalidError, match="does not exist"):
        image_uploads(modal.Image.debian_slim().add_local_file(tmp_path / "nope", "/n", copy=True).to_json())


def test_the_server_builds_from_its_copy_of_what_was_sent(tmp_path: Path) -> None:
    client = tmp_path / "client.txt"
    client.write_text("sent")
    image = modal.Image.debian_slim().add_local_file(client, "/root/baked.txt", copy=True)
    files = {"app.py": b"", **{t: Path(lc).read_bytes() for t, lc in image_uploads(image.to_json()).items()}}
    client.write_text("what the server's disk holds at that path now: never read")
    home = tmp_path / "home"
    first = stage_uploads(manifest_with(image), write_bundle(home, files), home, "alice")
    step = next(s for s in first.functions[0].image if s["op"] == "add_local_file")
    staged = Path(step["args"]["local_path"])
    assert staged.read_text() == "sent" and staged.name == "client.txt"
    assert staged.is_relative_to(home / "image-uploads" / "alice")
    # the same bytes in another bundle (the app's code changed): the same copy, so the layer is cached
    again = stage_uploads(manifest_with(image), write_bundle(home, {**files, "app.py": b"# v2"}), home, "alice")
    assert next(s for s in again.functions[0].image if s["op"] == "add_local_file") == step
    with pytest.raises(InvalidError, match="did not come with the app"):  # a client that only names the path
        stage_uploads(manifest_with(image), write_bundle(home, {"app.py": b""}), home, "alice")


def test_requirement_files_and_projects_travel_the_same_way(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("tomli-w==1.0.0\n")
    (tmp_path / "uvproj").mkdir()
    (tmp_path / "uvproj" / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (tmp_path / "uvproj" / "uv.lock").write_text("lock")
    (tmp_path / "poetry").mkdir()
    (tmp_path / "poetry" / "pyproject.toml").write_text("[tool.poetry]\n")
    (tmp_path / "poetry" / "poetry.lock").write_text("plock")
    image = (modal.Image.debian_slim().pip_install_from_requirements(str(tmp_path / "requirements.txt"))
             .uv_pip_install(requirements=[str(tmp_path / "requirements.txt")])
             .uv_sync(str(tmp_path / "uvproj"))
             .poetry_install_from_file(str(tmp_path / "poetry" / "pyproject.toml")))
    files = {"app.py": b"", **{t: Path(lc).read_bytes() for t, lc in image_uploads(image.to_json()).items()}}
    home = tmp_path / "home"
    staged = {s["op"]: s["args"] for s in stage_uploads(manifest_with(image), write_bundle(home, files), home,
                                                         "alice").functions[0].image}
    base = home / "image-uploads" / "alice"
    assert Path(staged["pip_install_from_requirements"]["requirements_txt"]).read_text() == "tomli-w==1.0.0\n"
    assert Path(staged["uv_pip_install"]["requirements"][0]).is_relative_to(base)
    assert sorted(p.name for p in Path(staged["uv_sync"]["uv_project_dir"]).iterdir()) == ["pyproject.toml", "uv.lock"]
    poetry = staged["poetry_install_from_file"]
    assert Path(poetry["poetry_pyproject_toml"]).is_relative_to(base)
    assert Path(poetry["poetry_lockfile"]).read_text() == "plock"
