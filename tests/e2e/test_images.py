"""Images built for real with uv from PyPI (small packages), and containers running inside them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import requests

import sampan as modal
from sampan.server.images.builder import ImageBuilder
from sampan.server.images.pythons import host_pythons
from sampan.server.images.recipe import ImageBuildError
from tests.helpers import serve
from tests.server_helpers import running

pytestmark = pytest.mark.slow
SRC = str(Path(__file__).resolve().parents[2] / "src")


def build(images: Path, image: modal.Image, **kw: object):  # noqa: ANN201
    progress: list[str] = []
    log: list[str] = []
    built = asyncio.run(ImageBuilder(images).build(image.to_json(), progress=progress.append, log=log.append, **kw))
    return built, progress, log


def run_in(image_python: str, code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([image_python, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_packages_absent_from_the_host_are_in_the_image_only(tmp_path: Path) -> None:
    image = modal.Image.debian_slim().pip_install("tomli-w==1.0.0").env({"GREETING": "hello"})
    built, progress, log = build(tmp_path, image)
    assert not built.cached and built.env == {"GREETING": "hello"}
    assert run_in(built.python, "import tomli_w; print(tomli_w.__name__)").stdout.strip() == "tomli_w"
    host = subprocess.run([sys.executable, "-c", "import tomli_w"], capture_output=True)
    assert host.returncode != 0  # the host never got it
    # host packages do not leak in (pytest is installed where the tests run, not in the image)
    assert run_in(built.python, "import pytest").returncode != 0


def test_cache_hit_and_rebuild_of_only_what_changed(tmp_path: Path) -> None:
    base = modal.Image.debian_slim().pip_install("tomli-w==1.0.0")
    first, _, _ = build(tmp_path, base)
    again, progress, _ = build(tmp_path, base)
    assert again.cached and again.id == first.id and progress == []
    changed, progress, _ = build(tmp_path, base.env({"X": "1"}).run_commands("echo built > marker.txt"))
    assert progress[0].startswith("Reusing 2 of 4 steps")
    assert "debian_slim" not in " ".join(progress[1:]) and "pip_install" not in " ".join(progress[1:])
    assert (changed.root / "root" / "marker.txt").read_text() == "built\n"  # run in /root
    assert run_in(changed.python, "import tomli_w").returncode == 0


def test_run_commands_use_the_environments_python_and_pip(tmp_path: Path) -> None:
    image = modal.Image.debian_slim().run_commands(
        "pip install --quiet pyjokes==0.6.0", "python -c 'import sys; print(sys.prefix)' > prefix.txt"
    )
    built, _, _ = build(tmp_path, image)
    assert run_in(built.python, "import pyjokes").returncode == 0
    assert (built.root / "root" / "prefix.txt").read_text().strip().endswith("venv")


def test_concurrent_builds_coalesce(tmp_path: Path) -> None:
    image = modal.Image.debian_slim().pip_install("tomli-w==1.0.0").env({"COALESCE": "1"})

    async def main() -> list[object]:
        builder = ImageBuilder(tmp_path)
        starts: list[str] = []
        results = await asyncio.gather(*(builder.build(image.to_json(), progress=starts.append) for _ in range(3)))
        assert sum(s.startswith("Creating environment") for s in starts) == 1
        return results

    results = asyncio.run(main())
    assert len({r.id for r in results}) == 1  # type: ignore[attr-defined]
    assert [p.name for p in tmp_path.glob("im-*")] == [results[0].id]  # type: ignore[attr-defined]


def test_concurrent_builds_in_two_processes_coalesce(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import asyncio, json, sys
        sys.path.insert(0, {SRC!r})
        import sampan
        from pathlib import Path
        from sampan.server.images.builder import ImageBuilder
        image = sampan.Image.debian_slim().pip_install("tomli-w==1.0.0").env({{"TWO": "1"}})
        built = asyncio.run(ImageBuilder(Path({str(tmp_path)!r})).build(image.to_json()))
        print(json.dumps({{"id": built.id, "cached": built.cached}}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert outs[0]["id"] == outs[1]["id"]
    assert sorted(o["cached"] for o in outs) == [False, True]  # one built, the other found it built


def test_failed_install_shows_the_installer_error_and_caches_nothing(tmp_path: Path) -> None:
    image = modal.Image.debian_slim().pip_install("sampan-this-package-does-not-exist-xyz")
    with pytest.raises(ImageBuildError) as info:
        build(tmp_path, image)
    text = str(info.value)
    assert "Image build failed at `pip_install('sampan-this-package-does-not-exist-xyz')`" in text
    assert "sampan-this-package-does-not-exist-xyz" in text.split("\n", 1)[1]  # uv's own words
    assert list(tmp_path.glob("im-*")) == [] and list(tmp_path.glob(".im-*")) == []


def test_missing_apt_packages_fail_with_the_install_command(tmp_path: Path) -> None:
    image = modal.Image.debian_slim().apt_install("sampan-no-such-deb-package")
    with pytest.raises(ImageBuildError, match="Missing system packages: sampan-no-such-deb-package") as info:
        build(tmp_path, image)
    assert "apt-get install -y sampan-no-such-deb-package" in str(info.value)


def test_missing_python_version_names_the_installed_ones(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="Python 3.99 is not installed on this machine") as info:
        build(tmp_path, modal.Image.debian_slim(python_version="3.99"))
    for version in host_pythons():
        assert version in str(info.value)


def test_unsupported_builder_fails_at_build_time(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="needs real images.*mmdebstrap"):
        build(tmp_path, modal.Image.from_registry("nvidia/cuda:12.2.0-base-ubuntu22.04", add_python="3.11"))


def test_requirements_and_pyproject_installs(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("tomli-w==1.0.0\n")
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""
        [project]
        name = "demo"
        version = "0"
        dependencies = ["pyjokes==0.6.0"]
    """))
    image = (modal.Image.debian_slim().pip_install_from_requirements(str(tmp_path / "requirements.txt"))
             .pip_install_from_pyproject(str(tmp_path / "pyproject.toml")))
    built, _, _ = build(tmp_path / "images", image)
    assert run_in(built.python, "import tomli_w, pyjokes").returncode == 0
    # editing the requirements file changes the image
    (tmp_path / "requirements.txt").write_text("tomli-w==1.1.0\n")
    rebuilt, _, _ = build(tmp_path / "images", image)
    assert rebuilt.id != built.id
    assert run_in(rebuilt.python, "import importlib.metadata as m; print(m.version('tomli-w'))").stdout.strip() \
        == "1.1.0"


def test_user_pin_of_fastapi_is_the_one_the_endpoint_runs_with(tmp_path: Path) -> None:
    async def main() -> None:
        server, version, logs, *_ = await running(tmp_path, """
            import os
            import modal

            image = modal.Image.debian_slim().pip_install("fastapi==0.110.0").env({"FROM_IMAGE": "yes"})
            app = modal.App("pinned", image=image)

            @app.function()
            @modal.fastapi_endpoint()
            def info():
                import fastapi
                return {
                    "fastapi": fastapi.__version__,
                    "from_image": os.environ.get("FROM_IMAGE"),
                    "leaked": os.environ.get("SAMPAN_TEST_LEAK"),
                    "image_id": os.environ.get("MODAL_IMAGE_ID"),
                }
        """)
        try:
            async with httpx.AsyncClient(timeout=60) as client:
                body = (await client.get(version.infos[0].url)).json()
            assert body["fastapi"] == "0.110.0"
            assert body["from_image"] == "yes"
            assert body["leaked"] is None
            assert body["image_id"].startswith("im-")
        finally:
            await server.close()

    os.environ["SAMPAN_TEST_LEAK"] = "from the CLI's environment"
    try:
        asyncio.run(main())
    finally:
        del os.environ["SAMPAN_TEST_LEAK"]


def test_local_files_are_visible_and_reload_under_serve(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "greeting.txt").write_text("hello")
    (tmp_path / "baked.txt").write_text("baked")
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(f"""
        import pathlib
        import modal

        image = (
            modal.Image.debian_slim()
            .pip_install("tomli-w==1.0.0")
            .add_local_file({str(tmp_path / "baked.txt")!r}, "/root/baked.txt", copy=True)
            .add_local_dir({str(tmp_path / "data")!r}, "/root/data")
        )
        app = modal.App("files", image=image)

        with image.imports():
            import tomli_w  # in the image, not on the host: swallowed only where the CLI reads this file

        @app.function()
        @modal.fastapi_endpoint()
        def read():
            text = pathlib.Path("data/greeting.txt").read_text() + " " + pathlib.Path("baked.txt").read_text()
            return text + " " + tomli_w.__name__
    """))
    with serve(app, tmp_path / "home") as s:
        url = s.urls["read"]
        assert requests.get(url, timeout=60).json() == "hello baked tomli_w"
        (tmp_path / "data" / "greeting.txt").write_text("bonjour")
        s.wait_for("App updated")
        assert requests.get(url, timeout=60).json() == "bonjour baked tomli_w"


def test_a_failing_build_under_serve_keeps_the_last_good_version(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    source = textwrap.dedent("""
        import modal

        image = modal.Image.debian_slim().pip_install({pkg!r})
        app = modal.App("builds", image=image)

        @app.function()
        @modal.fastapi_endpoint()
        def version():
            return {v}
    """)
    app.write_text(source.format(pkg="tomli-w==1.0.0", v=1))
    with serve(app, tmp_path / "home") as s:
        url = s.urls["version"]
        assert requests.get(url, timeout=60).json() == 1
        mark = len(s.lines)
        app.write_text(source.format(pkg="sampan-this-package-does-not-exist-xyz", v=2))
        s.wait_for("Still serving the last good version", start=mark)
        assert "Image build failed" in s.output
        assert requests.get(url, timeout=60).json() == 1


def test_seed_packages_are_pinned_and_a_constraints_file_holds_versions(tmp_path: Path) -> None:
    """Finding 6: `uv venv --seed` put the day's newest setuptools into every image (pkg_resources broke);
    a user's constraints file had no say in image builds."""
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("tomli-w==1.0.0\n")
    image = modal.Image.debian_slim(python_version="3.11").pip_install("tomli-w")
    builder = ImageBuilder(tmp_path / "images", constraints=constraints)
    built = asyncio.run(builder.build(image.to_json()))
    probe = ("import pkg_resources, setuptools, pip, importlib.metadata as m; "
             "print(setuptools.__version__, pip.__version__, m.version('tomli-w'))")
    assert run_in(built.python, probe).stdout.split() == ["65.5.1", "24.0", "1.0.0"]
    # Another constraint is another image: the file's content is part of the key.
    constraints.write_text("tomli-w==1.1.0\n")
    again = asyncio.run(ImageBuilder(tmp_path / "images", constraints=constraints).build(image.to_json()))
    assert again.id != built.id
    assert run_in(again.python, "import importlib.metadata as m; print(m.version('tomli-w'))").stdout.strip() == "1.1.0"
