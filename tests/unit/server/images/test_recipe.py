"""Recipes to steps and cache keys: pure functions."""

from __future__ import annotations

import pytest

import sampan as modal
from sampan import mountpaths
from sampan.server.images import recipe
from sampan.server.images.recipe import ImageBuildError


def chain(image: modal.Image, default: str = "3.11") -> list[recipe.Step]:
    return recipe.plan(image.to_json(), default)


def test_keys_chain_and_prefixes_are_shared() -> None:
    a = chain(modal.Image.debian_slim().pip_install("six").env({"A": "1"}))
    b = chain(modal.Image.debian_slim().pip_install("six").env({"A": "2"}))
    assert [s.op for s in a] == ["debian_slim", "pip_install", "env"]
    assert a[0].key == b[0].key and a[1].key == b[1].key and a[2].key != b[2].key
    assert recipe.image_id(a) != recipe.image_id(b)
    assert recipe.image_id(a).startswith("im-")


def test_same_recipe_same_id_and_force_build_does_not_change_it() -> None:
    a = chain(modal.Image.debian_slim().pip_install("six"))
    b = chain(modal.Image.debian_slim(force_build=True).pip_install("six", force_build=True))
    assert recipe.image_id(a) == recipe.image_id(b)


def test_default_python_is_part_of_the_key() -> None:
    img = modal.Image.debian_slim().pip_install("six")
    assert recipe.image_id(chain(img, "3.11")) != recipe.image_id(chain(img, "3.12"))
    explicit = modal.Image.debian_slim(python_version="3.12").pip_install("six")
    assert recipe.image_id(chain(explicit, "3.11")) == recipe.image_id(chain(img, "3.12"))


def test_a_recipe_without_a_base_gets_debian_slim() -> None:
    steps = recipe.plan([{"op": "pip_install", "args": {"packages": ["six"]}}], "3.11")
    assert [s.op for s in steps] == ["debian_slim", "pip_install"]


def test_salts_change_keys() -> None:
    img = modal.Image.debian_slim().pip_install_from_requirements("requirements.txt")
    plain = recipe.plan(img.to_json(), "3.11")
    salted = recipe.plan(img.to_json(), "3.11", {1: "content-hash"})
    assert plain[0].key == salted[0].key and plain[1].key != salted[1].key


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (modal.Image.from_registry("python:3.11"), "`Image.from_registry` needs real images"),
        (modal.Image.from_dockerfile("Dockerfile"), "`Image.from_dockerfile` needs real images"),
        (modal.Image.micromamba(), "`Image.micromamba` needs real images"),
        (modal.Image.debian_slim().dockerfile_commands("RUN x"), "`Image.dockerfile_commands` needs real images"),
    ],
    ids=["registry", "dockerfile", "micromamba", "dockerfile-commands"],
)
def test_unsupported_builders_fail_with_a_clear_message(image: modal.Image, words: str) -> None:
    with pytest.raises(ImageBuildError, match=words.replace("(", r"\(")):
        chain(image)


def test_invalid_python_version() -> None:
    with pytest.raises(ImageBuildError, match="Invalid python_version"):
        chain(modal.Image.debian_slim(python_version="three"))


def test_float_python_version_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        modal.Image.debian_slim(python_version=3.11)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("remote", "expected"),
    [("/root/data.txt", "data.txt"), ("/root", ""), ("/assets/img", "assets/img"), ("/root/a/b/", "a/b")],
)
def test_reroot(remote: str, expected: str) -> None:
    assert mountpaths.reroot(remote) == expected


def test_pip_args() -> None:
    args = {"index_url": "https://i", "extra_index_url": "https://e", "find_links": "/w", "pre": True,
            "extra_options": "--no-deps --upgrade"}
    assert recipe.pip_args(args) == ["--index-url", "https://i", "--extra-index-url", "https://e",
                                     "--find-links", "/w", "--prerelease", "allow", "--no-deps", "--upgrade"]


def test_build_step_after_non_copy_local_files_is_modals_error() -> None:
    with pytest.raises(modal.exception.InvalidError, match="An image tried to run a build step after using"):
        modal.Image.debian_slim().add_local_file(__file__, "/root/x.py").pip_install("six")
    modal.Image.debian_slim().add_local_file(__file__, "/root/x.py", copy=True).pip_install("six")


def test_remote_path_must_be_absolute() -> None:
    with pytest.raises(modal.exception.InvalidError, match="only supports absolute remote_path values"):
        modal.Image.debian_slim().add_local_dir(".", "relative")


def test_recipe_hash_is_stable_and_distinguishes() -> None:
    a = modal.Image.debian_slim().pip_install("six")
    assert a.recipe_hash() == modal.Image.debian_slim().pip_install("six").recipe_hash()
    assert a.recipe_hash() != modal.Image.debian_slim().pip_install("idna").recipe_hash()


def test_imports_swallows_import_errors_outside_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    image = modal.Image.debian_slim().pip_install("a-package-the-host-lacks")
    monkeypatch.delenv("SAMPAN_IMAGE_RECIPE", raising=False)
    with image.imports():
        import a_package_the_host_lacks  # type: ignore[import-not-found]  # noqa: F401
    monkeypatch.setenv("SAMPAN_IMAGE_RECIPE", image.recipe_hash())
    with pytest.raises(ImportError), image.imports():
        import a_package_the_host_lacks  # type: ignore[import-not-found]  # noqa: F401,F811


def test_steps_that_read_the_building_machines_files_are_named() -> None:
    """What a shared server refuses (server/apps.py `check_machine_paths`): every step that would read a
    file at a path the client named, on the server's disk; nothing else."""
    def found(image: modal.Image) -> list[str]:
        return recipe.machine_paths(image.to_json())

    base = modal.Image.debian_slim()
    assert found(base.pip_install("x").apt_install("y").run_commands("true").add_local_dir("/tmp", "/d")) == []
    assert found(base.add_local_file("/etc/shadow", "/x", copy=True)) == ["add_local_file('/etc/shadow', copy=True)"]
    assert found(base.add_local_dir("/var/lib", "/d", copy=True)) == ["add_local_dir('/var/lib', copy=True)"]
    assert found(base.dockerfile_commands("RUN true", "ENV A=1")) == []
    assert found(base.dockerfile_commands("copy a /b")) == ["dockerfile_commands(COPY ...)"]
    assert found(modal.Image.from_dockerfile("/srv/Dockerfile")) == ["from_dockerfile('/srv/Dockerfile')"]
    assert found(base.pip_install_from_requirements("/etc/passwd")) == ["pip_install_from_requirements(...)"]
    assert found(base.uv_pip_install(requirements=["/etc/passwd"])) == ["uv_pip_install(requirements=...)"]
    assert found(base.uv_pip_install("x")) == []
    for image in (base.pip_install_from_pyproject("/p/pyproject.toml"), base.uv_sync("/p"),
                  base.poetry_install_from_file("/p/pyproject.toml")):
        assert len(found(image)) == 1
