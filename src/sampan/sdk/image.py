"""`modal.Image`: an immutable recipe. Each builder returns a new Image with one more step.

Building a recipe into an environment is the image builder's job (server side); here it is only
declared. Until images are built, containers run in Sampan's own Python environment and only the
`env` steps take effect: the manifest says which steps were not honoured so the CLI can tell the user.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exception import InvalidError
from ..file_pattern_matcher import recipe_ignore
from ..manifest import recipe_hash
from ..mountpaths import validate_remote_path


def _abs(path: str | Path) -> str:
    """Local paths are relative to where the CLI runs, as in Modal; stored absolute in the recipe."""
    return os.path.abspath(os.path.expanduser(str(path)))


def _secret_args(secrets: Sequence[Any], env: dict[str, str | None] | None) -> dict[str, Any]:
    """A build step's `env=` and `secrets=`, as Modal treats them: variables of that step only. Inline
    Secrets' values join `env`; named ones are looked up by the server when it builds the step."""
    values = {k: v for k, v in (env or {}).items() if v is not None}
    names: list[str] = []
    for secret in secrets or ():
        name = getattr(secret, "name", None)
        if name:
            names.append(str(name))
        else:
            values.update(getattr(secret, "values", None) or {})
    return {"env": values, **({"secret_names": names} if names else {})}


def _python_series(version: str | None) -> str | None:
    if version is None:
        return None
    if not isinstance(version, str) or version.count(".") != 1:
        raise InvalidError(f"Python version must be specified as 'major.minor' for this interface: {version!r}")
    return version


def _flatten(items: Sequence[Any]) -> list[str]:
    out: list[str] = []
    for item in items:
        if isinstance(item, (list, tuple)):
            out.extend(str(x) for x in item)
        elif item is not None:
            out.append(str(item))
    return out


@dataclass(frozen=True)
class Step:
    op: str
    args: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "args": {k: _jsonable(v) for k, v in self.args}}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return repr(value)


class Image:
    """A container image recipe, chained like Modal's: `Image.debian_slim().pip_install("x")`."""

    def __init__(self, steps: tuple[Step, ...] = ()) -> None:
        self._steps = steps

    def __repr__(self) -> str:
        return f"Image({', '.join(s.op for s in self._steps)})"

    @property
    def steps(self) -> tuple[Step, ...]:
        return self._steps

    def _add(self, op: str, **args: Any) -> Image:
        if any(s.op.startswith("add_local_") and not dict(s.args).get("copy") for s in self._steps):
            if not op.startswith("add_local_") and op not in ("env", "workdir", "imports"):
                raise InvalidError(
                    "An image tried to run a build step after using `image.add_local_*` to include local files. "
                    "Run `image.add_local_*` commands last in your image build to avoid rebuilding images with "
                    "every local file change. Modal will then add these files to containers on startup instead, "
                    "saving build time. If you need to run other build steps after adding local files, set "
                    "`copy=True` to copy the files directly into the image, at the expense of some added build time."
                )
        return Image(self._steps + (Step(op, tuple(sorted(args.items()))),))

    def env_vars(self) -> dict[str, str]:
        """The environment variables the recipe sets, in order."""
        out: dict[str, str] = {}
        for step in self._steps:
            if step.op == "env":
                out.update(dict(step.args)["vars"])
        return out

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self._steps]

    # -- base images -------------------------------------------------------------------------
    @staticmethod
    def debian_slim(python_version: str | None = None, force_build: bool = False) -> Image:
        if python_version is not None and not isinstance(python_version, str):
            raise TypeError(f"python_version must be a string, e.g. '3.11', not {python_version!r}")
        return Image().with_base("debian_slim", python_version=python_version, force_build=force_build)

    def with_base(self, op: str, **args: Any) -> Image:
        return Image((Step(op, tuple(sorted(args.items()))),))

    @staticmethod
    def from_registry(tag: str, secret: Any = None, *, setup_dockerfile_commands: Sequence[str] = (),
                      force_build: bool = False, add_python: str | None = None, **kwargs: Any) -> Image:
        return Image().with_base("from_registry", tag=tag, add_python=_python_series(add_python),
                                 setup_dockerfile_commands=list(setup_dockerfile_commands), force_build=force_build,
                                 **_secret_args([secret] if secret is not None else [], None))

    @staticmethod
    def from_dockerfile(path: str | Path, *, force_build: bool = False, context_dir: str | Path | None = None,
                        ignore: Any = None, build_args: dict[str, str] | None = None, registry_secret: Any = None,
                        secrets: Sequence[Any] = (), env: dict[str, str | None] | None = None, gpu: Any = None,
                        add_python: str | None = None, **kwargs: Any) -> Image:
        """The Dockerfile and its COPY sources (from `context_dir`, by default the current directory) are
        read when the image is built, as Modal's client reads them when it loads the image."""
        return Image().with_base("from_dockerfile", path=_abs(path), context_dir=_abs(context_dir or "."),
                                 build_args=dict(build_args or {}), add_python=_python_series(add_python),
                                 force_build=force_build,
                                 **_secret_args([*secrets, *([registry_secret] if registry_secret else [])], env))

    @staticmethod
    def micromamba(python_version: str | None = None, force_build: bool = False) -> Image:
        return Image().with_base("micromamba", python_version=python_version)

    @staticmethod
    def from_aws_ecr(tag: str, secret: Any = None, *, setup_dockerfile_commands: Sequence[str] = (),
                     force_build: bool = False, add_python: str | None = None, **kwargs: Any) -> Image:
        return Image().with_base("from_aws_ecr", tag=tag, add_python=_python_series(add_python),
                                 setup_dockerfile_commands=list(setup_dockerfile_commands), force_build=force_build,
                                 **_secret_args([secret] if secret is not None else [], None))

    @staticmethod
    def from_gcp_artifact_registry(tag: str, secret: Any = None, *, setup_dockerfile_commands: Sequence[str] = (),
                                   force_build: bool = False, add_python: str | None = None,
                                   **kwargs: Any) -> Image:
        return Image().with_base("from_gcp_artifact_registry", tag=tag, add_python=_python_series(add_python),
                                 setup_dockerfile_commands=list(setup_dockerfile_commands), force_build=force_build,
                                 **_secret_args([secret] if secret is not None else [], None))

    # -- packages ----------------------------------------------------------------------------
    def pip_install(self, *packages: str | list[str], find_links: str | None = None, index_url: str | None = None,
                    extra_index_url: str | None = None, pre: bool = False, extra_options: str = "",
                    force_build: bool = False, env: dict[str, str | None] | None = None,
                    secrets: Sequence[Any] = (), gpu: Any = None) -> Image:
        return self._add("pip_install", packages=_flatten(packages), find_links=find_links, index_url=index_url,
                         extra_index_url=extra_index_url, pre=pre, extra_options=extra_options,
                         force_build=force_build, **_secret_args(secrets, env))

    def uv_pip_install(self, *packages: str | list[str], requirements: list[str] | None = None,
                       find_links: str | None = None, index_url: str | None = None,
                       extra_index_url: str | None = None, pre: bool = False, extra_options: str = "",
                       force_build: bool = False, uv_version: str | None = None,
                       env: dict[str, str | None] | None = None, secrets: Sequence[Any] = (),
                       gpu: Any = None) -> Image:
        reqs = [_abs(r) for r in requirements or []]
        return self._add("uv_pip_install", packages=_flatten(packages), requirements=reqs,
                         find_links=find_links, index_url=index_url, extra_index_url=extra_index_url, pre=pre,
                         extra_options=extra_options, force_build=force_build, **_secret_args(secrets, env))

    def pip_install_from_requirements(self, requirements_txt: str, find_links: str | None = None, *,
                                      index_url: str | None = None, extra_index_url: str | None = None,
                                      pre: bool = False, extra_options: str = "", force_build: bool = False,
                                      env: dict[str, str | None] | None = None, secrets: Sequence[Any] = (),
                                      gpu: Any = None) -> Image:
        return self._add("pip_install_from_requirements", requirements_txt=_abs(requirements_txt),
                         find_links=find_links, index_url=index_url, extra_index_url=extra_index_url, pre=pre,
                         extra_options=extra_options, force_build=force_build, **_secret_args(secrets, env))

    def pip_install_from_pyproject(self, pyproject_toml: str, optional_dependencies: list[str] | None = None,
                                   **kwargs: Any) -> Image:
        return self._add("pip_install_from_pyproject", pyproject_toml=_abs(pyproject_toml),
                         optional_dependencies=optional_dependencies or [])

    def uv_sync(self, uv_project_dir: str = "./", *, force_build: bool = False, groups: list[str] | None = None,
                extras: list[str] | None = None, frozen: bool = True, extra_options: str = "",
                uv_version: str | None = None, env: dict[str, str | None] | None = None,
                secrets: Sequence[Any] = (), gpu: Any = None) -> Image:
        return self._add("uv_sync", uv_project_dir=_abs(uv_project_dir), groups=list(groups or []),
                         extras=list(extras or []), frozen=frozen, extra_options=extra_options,
                         force_build=force_build, **_secret_args(secrets, env))

    def poetry_install_from_file(self, poetry_pyproject_toml: str, poetry_lockfile: str | None = None, *,
                                 ignore_lockfile: bool = False, force_build: bool = False,
                                 with_: list[str] | None = None, without: list[str] | None = None,
                                 only: list[str] | None = None, poetry_version: str | None = "latest",
                                 old_installer: bool = False, env: dict[str, str | None] | None = None,
                                 secrets: Sequence[Any] = (), gpu: Any = None) -> Image:
        return self._add("poetry_install_from_file", poetry_pyproject_toml=_abs(poetry_pyproject_toml),
                         poetry_lockfile=_abs(poetry_lockfile) if poetry_lockfile else None,
                         ignore_lockfile=ignore_lockfile, with_=list(with_ or []), without=list(without or []),
                         only=list(only or []), poetry_version=poetry_version, force_build=force_build,
                         **_secret_args(secrets, env))

    def apt_install(self, *packages: str | list[str], force_build: bool = False,
                    env: dict[str, str | None] | None = None, secrets: Sequence[Any] = (), gpu: Any = None) -> Image:
        return self._add("apt_install", packages=_flatten(packages), force_build=force_build,
                         **_secret_args(secrets, env))

    def micromamba_install(self, *packages: str | list[str], **kwargs: Any) -> Image:
        return self._add("micromamba_install", packages=_flatten(packages))

    def run_commands(self, *commands: str | list[str], env: dict[str, str | None] | None = None,
                     secrets: Sequence[Any] = (), volumes: dict[str, Any] | None = None, gpu: Any = None,
                     force_build: bool = False) -> Image:
        return self._add("run_commands", commands=_flatten(commands), force_build=force_build,
                         **_secret_args(secrets, env))

    def dockerfile_commands(self, *dockerfile_commands: str | list[str], context_files: dict[str, str] | None = None,
                            env: dict[str, str | None] | None = None, secrets: Sequence[Any] = (), gpu: Any = None,
                            context_dir: str | Path | None = None, force_build: bool = False, ignore: Any = None,
                            build_args: dict[str, str] | None = None) -> Image:
        return self._add("dockerfile_commands", commands=_flatten(dockerfile_commands),
                         context_dir=_abs(context_dir or "."), build_args=dict(build_args or {}),
                         force_build=force_build, **_secret_args(secrets, env))

    def run_function(self, raw_f: Callable[..., Any], *, env: dict[str, str | None] | None = None,
                     secrets: Sequence[Any] = (), volumes: dict[str, Any] | None = None,
                     network_file_systems: dict[str, Any] | None = None, gpu: Any = None, cpu: Any = None,
                     memory: Any = None, timeout: int = 3600, cloud: str | None = None, region: Any = None,
                     force_build: bool = False, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                     include_source: bool = True) -> Image:
        """Run `raw_f` in a container of this image while building; the files it leaves are the next
        layer. Keyed, as on Modal, by the function's source and its arguments (not by other code)."""
        import base64
        import hashlib
        import inspect

        if not callable(raw_f) or isinstance(raw_f, type):
            raise InvalidError(f"Argument to Image.run_function must be a function, not {type(raw_f).__name__}.")
        if getattr(raw_f, "__name__", "") == "<lambda>":
            raise InvalidError("Image.run_function does not support lambda functions.")
        import cloudpickle

        payload = cloudpickle.dumps((tuple(args), dict(kwargs or {})))
        if len(payload) > 2 * 1024 * 1024:
            raise InvalidError(f"Arguments to `run_function` are too large ({len(payload)} bytes). "
                               "Maximum size is 2097152 bytes.")
        try:
            source = inspect.getsource(raw_f)
        except (OSError, TypeError):
            source = repr(getattr(raw_f, "__code__", raw_f))
        return self._add("run_function", module=raw_f.__module__, qualname=raw_f.__qualname__,
                         source=hashlib.sha256(source.encode()).hexdigest(), args=base64.b64encode(payload).decode(),
                         timeout=int(timeout), force_build=force_build, **_secret_args(secrets, env))

    # -- configuration -----------------------------------------------------------------------
    def env(self, vars: dict[str, str]) -> Image:  # noqa: A002 - Modal's name
        if not isinstance(vars, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in vars.items()):
            raise InvalidError("Image.env expects a dict[str, str] of environment variables.")
        return self._add("env", vars=dict(vars))

    def workdir(self, path: str | Path) -> Image:
        return self._add("workdir", path=str(path))

    def cmd(self, cmd: list[str]) -> Image:
        if not isinstance(cmd, list) or not all(isinstance(x, str) for x in cmd):
            raise InvalidError("Image CMD must be a list of strings.")
        return self._add("cmd", cmd=list(cmd))

    def entrypoint(self, entrypoint_commands: list[str]) -> Image:
        if not isinstance(entrypoint_commands, list) or not all(isinstance(x, str) for x in entrypoint_commands):
            raise InvalidError("entrypoint_commands must be a list of strings.")
        return self._add("entrypoint", commands=list(entrypoint_commands))

    def shell(self, shell_commands: list[str]) -> Image:
        if not isinstance(shell_commands, list) or not all(isinstance(x, str) for x in shell_commands):
            raise InvalidError("shell_commands must be a list of strings.")
        return self._add("shell", shell=list(shell_commands))

    # -- local files -------------------------------------------------------------------------
    def add_local_dir(self, local_path: str | Path, remote_path: str, *, copy: bool = False,
                      ignore: Sequence[str] | Callable[[Path], bool] = ()) -> Image:
        validate_remote_path(remote_path, "add_local_dir")
        return self._add("add_local_dir", local_path=_abs(local_path), remote_path=str(remote_path), copy=copy,
                         **recipe_ignore(ignore, Path(_abs(local_path))))

    def add_local_file(self, local_path: str | Path, remote_path: str, *, copy: bool = False) -> Image:
        validate_remote_path(remote_path, "add_local_file")
        return self._add("add_local_file", local_path=_abs(local_path), remote_path=str(remote_path), copy=copy)

    def add_local_python_source(self, *modules: str, copy: bool = False, ignore: Any = None) -> Image:
        return self._add("add_local_python_source", modules=list(modules), copy=copy)

    def recipe_hash(self) -> str:
        """A hash of the recipe as declared (no file contents): tells a container which image it runs."""
        return recipe_hash(self.to_json())

    def imports(self) -> _ImportsContext:
        """`with image.imports(): import x` — an ImportError is swallowed except inside this image's containers."""
        return _ImportsContext(self)


class _ImportsContext:
    def __init__(self, image: Image) -> None:
        self.image = image

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None or not issubclass(exc_type, ImportError):
            return False
        # Only a container built from this very image must have the package: elsewhere (the CLI
        # reading the script, another function's image) the import is not meant to work.
        return os.environ.get("SAMPAN_IMAGE_RECIPE") != self.image.recipe_hash()
