"""From an `Image` recipe to build steps and cache keys. Pure: no I/O, no clock.

A recipe is the manifest's list of steps (`Image.to_json()`); each step's key is the hash of
the previous key and the step, so a chain of keys names every prefix of a recipe:

    steps:  debian_slim(3.11)  ->  pip_install("six")  ->  env({"A": "1"})
    keys:   k0 = H("", s0)         k1 = H(k0, s1)          k2 = H(k1, s2)
    image id: "im-" + k2[:20]

Building a recipe whose first steps match an image already built reuses that image's
environment and runs only the remaining steps ("rebuild only what changed").

Why uv and not Docker: no container engine is assumed on a developer's machine, and uv builds a
virtual environment in about a second from its cache. What a venv cannot honour (system
packages, registry images, conda) fails the build with a clear message instead of being skipped.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

# Steps that change the environment's files; the others only change its settings.
FILE_STEPS = {
    "debian_slim", "pip_install", "uv_pip_install", "pip_install_from_requirements",
    "pip_install_from_pyproject", "run_commands", "add_local_dir", "add_local_file",
    "add_local_python_source", "uv_sync",
}
SETTING_STEPS = {"env", "workdir", "cmd", "entrypoint"}
UNSUPPORTED = {
    "from_registry": "pulls a container image from a registry",
    "from_dockerfile": "builds a Dockerfile",
    "from_aws_ecr": "pulls a container image from AWS ECR",
    "from_gcp_artifact_registry": "pulls a container image from GCP Artifact Registry",
    "micromamba": "creates a conda environment",
    "sandbox_snapshot": "restores a Sandbox's filesystem snapshot",
    "micromamba_install": "installs conda packages",
    "dockerfile_commands": "runs Dockerfile commands",
    "run_function": "runs a function during the build",
    "shell": "sets the shell of later build steps",
    "poetry_install_from_file": "installs a Poetry project",
}
CHECKED_ON_HOST = {"apt_install"}
# What every environment starts with, pinned so that images do not drift with each day's releases
# (`uv venv --seed` took the newest setuptools, and packages that import `pkg_resources` broke).
# The versions are those of the `python:3.X-slim` images Modal's builders start from: pip 24.0;
# setuptools 65.5.1 (what ensurepip bundles) only before Python 3.12, which ships none; wheel.
SEED_PIP, SEED_SETUPTOOLS, SEED_WHEEL = "pip==24.0", "setuptools==65.5.1", "wheel==0.43.0"


def seed_packages(python_version: str) -> list[str]:
    """The packages a new environment of `python_version` ("3.11", "3.12.3") is seeded with."""
    minor = int(python_version.split(".")[1])
    return [SEED_PIP, *([SEED_SETUPTOOLS] if minor < 12 else []), SEED_WHEEL]


# Built images keep baked files at their absolute container paths (`fs/assets/x` for `/assets/x`), and
# start from the seed above; both are part of every key, so images made otherwise are never reused.
LAYOUT = f"fs-absolute-1;seed={SEED_PIP},{SEED_SETUPTOOLS},{SEED_WHEEL}"
_VERSION = re.compile(r"^3\.\d{1,2}(\.\d+)?$")


class ImageBuildError(Exception):
    """A recipe that cannot be built; the message says why and what to do."""


@dataclass(frozen=True)
class Step:
    op: str
    args: dict[str, Any]
    key: str

    @property
    def changes_files(self) -> bool:
        return self.op in FILE_STEPS

    def describe(self) -> str:
        a = self.args
        if self.op in ("pip_install", "uv_pip_install", "apt_install"):
            return f"{self.op}({', '.join(map(repr, a.get('packages', [])))})"
        if self.op == "run_commands":
            return f"run_commands({', '.join(map(repr, a.get('commands', [])))})"
        if self.op == "debian_slim":
            return f"debian_slim(python_version={a.get('python_version')!r})"
        if self.op.startswith("add_local_"):
            return f"{self.op}({a.get('local_path') or a.get('modules')!r} -> {a.get('remote_path', '')!r})"
        return self.op


def _canonical(op: str, args: dict[str, Any]) -> str:
    return json.dumps({"op": op, "args": args}, sort_keys=True, separators=(",", ":"))


def _step_key(previous: str, op: str, args: dict[str, Any], salt: str = "") -> str:
    digest = hashlib.sha256()
    digest.update(previous.encode())
    digest.update(_canonical(op, args).encode())
    digest.update(salt.encode())
    digest.update(LAYOUT.encode())
    return digest.hexdigest()


def base_python(steps: list[dict[str, Any]], default: str) -> str:
    """The `python_version` the recipe asks for (`debian_slim(python_version=)`), else `default`."""
    for step in steps:
        if step["op"] == "debian_slim" and step["args"].get("python_version"):
            version = str(step["args"]["python_version"])
            if not _VERSION.match(version):
                raise ImageBuildError(f"Invalid python_version {version!r}: expected a version like '3.11'.")
            return ".".join(version.split(".")[:2])
    return default


BASE_OPS = {"debian_slim", "from_registry", "from_aws_ecr", "from_gcp_artifact_registry", "from_dockerfile",
            "micromamba", "sandbox_snapshot"}
# What only the venv builder (the process runtime, or a server that is not root) cannot do.
ROOTFS_ONLY = {"from_registry", "from_aws_ecr", "from_gcp_artifact_registry", "from_dockerfile", "micromamba",
               "micromamba_install", "dockerfile_commands", "shell", "poetry_install_from_file", "sandbox_snapshot"}
ROOTFS_UNSUPPORTED: dict[str, str] = {}
ROOTFS_LAYOUT = "rootfs-1"


def plan(steps: list[dict[str, Any]], default_python: str, salts: dict[int, str] | None = None,
         rootfs: bool = False) -> list[Step]:
    """Validate a recipe and give each step its chain key.

    `salts` mixes content hashes into steps whose inputs live outside the recipe (a requirements
    file, a local directory copied in), so editing those files changes the key. `rootfs`: the recipe
    is built into a root filesystem (rootfs.py), not a virtual environment, and keyed apart.
    """
    if not steps or steps[0]["op"] not in BASE_OPS:
        steps = [{"op": "debian_slim", "args": {"python_version": None, "force_build": False}}, *steps]
    python = base_python(steps, default_python)
    out: list[Step] = []
    previous = ""
    for i, raw in enumerate(steps):
        op, args = raw["op"], dict(raw.get("args") or {})
        if rootfs and op in ROOTFS_UNSUPPORTED:
            raise ImageBuildError(f"`Image.{op}` is not supported: it {ROOTFS_UNSUPPORTED[op]}.")
        if not rootfs and op in UNSUPPORTED:
            raise ImageBuildError(
                f"`Image.{op}` needs real images: it {UNSUPPORTED[op]}, which this server builds only in its "
                "container sandbox as root, with Debian's mmdebstrap, skopeo and umoci installed (see `sampan "
                "server status`). Use `Image.debian_slim()` with `pip_install`/`uv_pip_install`/`run_commands`, "
                "or run the server as root."
            )
        if i > 0 and op in BASE_OPS:
            raise ImageBuildError(f"`Image.{op}` starts an image; it cannot follow other steps.")
        if op == "debian_slim":
            args = {"python_version": python}
        args.pop("force_build", None)
        key = _step_key(previous, op, args, (salts or {}).get(i, "") + (ROOTFS_LAYOUT if rootfs else ""))
        out.append(Step(op, args, key))
        previous = key
    return out


def image_id(chain: list[Step]) -> str:
    return "im-" + chain[-1].key[:20]


def machine_paths(steps: list[dict[str, Any]], staged: bool = False) -> list[str]:
    """The steps of a recipe that read files of the machine that builds the image (the paths a client
    named are read where the server runs): `add_local_*` with `copy=True`, a Dockerfile and its COPY
    sources, requirement files, pyproject, uv and Poetry projects. A shared server refuses them, except
    (`staged`) those whose files a client sends with the app (localfiles.py `upload_slots`)."""
    found = []
    for step in steps:
        op, args = step["op"], step.get("args") or {}
        if staged and op in ("add_local_file", "add_local_dir", "pip_install_from_requirements",
                             "pip_install_from_pyproject", "uv_pip_install", "uv_sync", "poetry_install_from_file"):
            continue  # their files came with the app (server/apps.py `stage_uploads`)
        if op.startswith("add_local_") and args.get("copy"):
            found.append(f"{op}({args.get('local_path') or ', '.join(args.get('modules') or [])!r}, copy=True)")
        elif op == "from_dockerfile":
            found.append(f"from_dockerfile({args.get('path')!r})")
        elif op == "dockerfile_commands" and any(
                line.split(None, 1)[:1] and line.split(None, 1)[0].upper() in ("COPY", "ADD")
                for line in args.get("commands") or []):
            found.append("dockerfile_commands(COPY ...)")
        elif op in ("pip_install_from_requirements", "pip_install_from_pyproject", "uv_sync",
                    "poetry_install_from_file"):
            found.append(f"{op}(...)")
        elif op == "uv_pip_install" and args.get("requirements"):
            found.append("uv_pip_install(requirements=...)")
    return found


def pip_args(args: dict[str, Any]) -> list[str]:
    """The installer options of a pip_install/uv_pip_install step, as uv arguments."""
    out: list[str] = []
    if args.get("index_url"):
        out += ["--index-url", args["index_url"]]
    if args.get("extra_index_url"):
        out += ["--extra-index-url", args["extra_index_url"]]
    if args.get("find_links"):
        out += ["--find-links", args["find_links"]]
    if args.get("pre"):
        out += ["--prerelease", "allow"]
    if args.get("extra_options"):
        out += str(args["extra_options"]).split()
    return out


def step_env(args: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (args.get("env") or {}).items() if v is not None}


