"""The image builder: turns a recipe (recipe.py) into a uv virtual environment, once.

    $SAMPAN_IMAGES/im-<id>/venv/        the environment (relocatable, so it can seed another image)
    $SAMPAN_IMAGES/im-<id>/fs/          files baked in (`add_local_*(copy=True)`, `run_commands`) at their
                                        absolute container paths: `fs/root/x` is `/root/x`
    $SAMPAN_IMAGES/im-<id>/meta.json    chain keys, env, workdir, python: written last
    $SAMPAN_IMAGES/runtime/<py>-<key>/  Sampan's runtime layer for that Python (see below)

A build happens in a temporary directory renamed into place at the end, so a failed or
interrupted build leaves nothing half-built. Two builds of one recipe coalesce: in one process
through a shared future, across processes through a lock file. A recipe sharing its first steps
with an image already built starts from a copy of that image and runs only the rest.

Sampan's runtime (uvicorn, a2wsgi, and FastAPI for `fastapi_endpoint`) must not change what the
user's packages resolve to. It is installed once per Python version into a separate directory
that the image's environment lists in a `.pth` file. Directories from `.pth` files come after
site-packages on `sys.path`, so a package the user installed (a pinned FastAPI, say) always wins,
and the runtime's copy is only a fallback where the image has none.

Longer than 400 lines because the virtual-environment builder runs every recipe step kind itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import __version__, config
from ..._proc import pid_alive
from .pythons import default_version, find_python
from .recipe import ImageBuildError, Step, image_id, pip_args, plan, seed_packages, step_env

Log = Callable[[str], None]
RUNTIME_REQUIREMENTS = ("uvicorn>=0.29", "httptools>=0.6", "uvloop>=0.19", "websockets>=12", "a2wsgi>=1.10",
                        "fastapi>=0.110", "cloudpickle>=3")
_SAMPAN_PACKAGE = Path(__file__).resolve().parents[2]
# Installed files are compiled to bytecode at build time: a container's cold start then reads .pyc
# files instead of compiling FastAPI and pydantic on every start (where bytecode writing is off,
# it would on every single start).
COMPILE = ("--compile-bytecode",)


def uv_bin() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise ImageBuildError("uv is not installed: `pip install uv` (it is one of Sampan's dependencies).")


@dataclass(frozen=True)
class BuiltImage:
    id: str
    path: Path
    python: str
    python_version: str
    env: dict[str, str]
    workdir: str | None
    has_root: bool
    seconds: float = 0.0
    cached: bool = True
    # A root filesystem image (rootfs.py): its layers' directories, top first; `python` is then a path
    # inside the image. Empty for a virtual environment image.
    layers: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    runtime: str | None = None  # Sampan's runtime layer for the image's Python (root filesystem images)

    @property
    def root(self) -> Path:
        return self.path / "fs"


def _hash_paths(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for base in paths:
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for f in files:
            digest.update(str(f.relative_to(base.parent if base.is_file() else base)).encode())
            with contextlib.suppress(OSError):
                digest.update(hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()


def salts_for(steps: list[dict[str, Any]]) -> dict[int, str]:
    """Content hashes of the local files a recipe reads, so editing them rebuilds the image."""
    salts: dict[int, str] = {}
    offset = 0 if steps and steps[0]["op"] == "debian_slim" else 1
    for i, step in enumerate(steps):
        op, args = step["op"], step.get("args") or {}
        paths: list[Path] = []
        if op.startswith("add_local_") and args.get("copy"):
            paths = [Path(args["local_path"])] if "local_path" in args else []
        elif op == "pip_install_from_requirements":
            paths = [Path(args["requirements_txt"])]
        elif op == "pip_install_from_pyproject":
            paths = [Path(args["pyproject_toml"])]
        elif op == "uv_pip_install" and args.get("requirements"):
            paths = [Path(p) for p in args["requirements"]]
        if paths:
            salts[i + offset] = _hash_paths([p for p in paths if p.exists()])
    return salts


def build_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps that make the image; `add_local_*(copy=False)` are mounted at start instead."""
    return [s for s in steps if not (s["op"].startswith("add_local_") and not (s.get("args") or {}).get("copy"))]


class ImageBuilder:
    def __init__(self, images_dir: Path, default_python: str | None = None,
                 constraints: Path | None = None) -> None:
        self.dir = images_dir
        # A pip constraints file applied to every install into an image (SAMPAN_CONSTRAINTS, or uv's own
        # UV_CONSTRAINT): the way to hold a transitive dependency at a version across all images.
        self.constraints = constraints or config.constraints_file()
        self.default_python = default_python or default_version()
        self._inflight: dict[str, asyncio.Future[BuiltImage]] = {}

    # -- resolving ----------------------------------------------------------------------------
    def chain(self, steps: list[dict[str, Any]]) -> list[Step]:
        steps = build_steps(steps)
        salts = salts_for(steps)
        if self.constraints is not None:  # a user's constraints file shapes every step after the base
            digest = _hash_paths([self.constraints]) if self.constraints.exists() else "missing"
            offset = 0 if steps and steps[0]["op"] == "debian_slim" else 1
            for i in range(1, len(steps) + offset):
                salts[i] = salts.get(i, "") + ";constraints=" + digest
        return plan(steps, self.default_python, salts)

    def lookup(self, iid: str) -> BuiltImage | None:
        """An image already built, or None. The fast path: one small file read."""
        meta = self.dir / iid / "meta.json"
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            return None
        path = self.dir / iid
        return BuiltImage(iid, path, str(path / "venv" / "bin" / "python"), data["python_version"], data["env"],
                          data.get("workdir"), (path / "fs").is_dir())

    # -- building -----------------------------------------------------------------------------
    async def build(self, steps: list[dict[str, Any]], *, force: bool = False, log: Log | None = None,
                    progress: Log | None = None) -> BuiltImage:
        chain = self.chain(steps)
        iid = image_id(chain)
        force = force or any((s.get("args") or {}).get("force_build") for s in steps)
        if not force:
            found = self.lookup(iid)
            if found is not None:
                return found
        return await coalesce(self._inflight, iid,
                              lambda: self._build_locked(iid, chain, force, log or _ignore, progress or _ignore))

    async def _build_locked(self, iid: str, chain: list[Step], force: bool, log: Log, progress: Log) -> BuiltImage:
        lock_dir = self.dir / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_dir / f"{iid}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            if not force:
                found = self.lookup(iid)  # another process built it while we waited
                if found is not None:
                    return found
            return await self._build(iid, chain, force, log, progress)
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _best_prefix(self, chain: list[Step]) -> tuple[int, Path | None]:
        """The built image sharing the longest prefix of steps with `chain` (at least the base)."""
        keys = [s.key for s in chain]
        best, best_path = 0, None
        if not self.dir.is_dir():
            return 0, None
        for meta in self.dir.glob("im-*/meta.json"):
            try:
                other = json.loads(meta.read_text())["chain"]
            except (OSError, ValueError, KeyError):
                continue
            n = 0
            for a, b in zip(keys, other, strict=False):
                if a != b:
                    break
                n += 1
            if n > best and n < len(keys) + 1:
                best, best_path = n, meta.parent
        return best, best_path

    async def _build(self, iid: str, chain: list[Step], force: bool, log: Log, progress: Log) -> BuiltImage:
        start = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._remove_abandoned()
        tmp = Path(tempfile.mkdtemp(prefix=f".{iid}-{os.getpid()}-", dir=self.dir))
        try:
            python_version = chain[0].args["python_version"]
            reuse, source = (0, None) if force else self._best_prefix(chain)
            env: dict[str, str] = {}
            workdir: str | None = None
            if source is not None and reuse >= 1:
                progress(f"Reusing {reuse} of {len(chain)} steps from {source.name}")
                await asyncio.to_thread(_copy_tree, source / "venv", tmp / "venv")
                if (source / "fs").is_dir():
                    await asyncio.to_thread(_copy_tree, source / "fs", tmp / "fs")
                env, workdir = self._settings(chain[:reuse])
            else:
                reuse = 1
                interpreter = find_python(python_version)
                progress(f"Creating environment (Python {python_version})")
                await self._run([uv_bin(), "venv", "--relocatable", "--python", interpreter,
                                 str(tmp / "venv")], env={}, log=log, step=chain[0], cwd=tmp)
                await self._run([uv_bin(), "pip", "install", "--python", str(tmp / "venv" / "bin" / "python"),
                                 *seed_packages(python_version)], env={}, log=log, step=chain[0], cwd=tmp)
            for step in chain[reuse:]:
                progress(step.describe())
                env, workdir = await self._apply(step, tmp, env, workdir, log)
            progress("Adding Sampan's runtime layer")
            await self._link_runtime(tmp / "venv", python_version, log)
            meta = {"id": iid, "chain": [s.key for s in chain], "steps": [s.describe() for s in chain],
                    "env": env, "workdir": workdir, "python_version": python_version, "built_at": time.time(),
                    "sampan": __version__}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            publish_dir(tmp, self.dir / iid)  # force_build: replaces it
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        image = self.lookup(iid)
        assert image is not None
        return BuiltImage(**{**image.__dict__, "seconds": time.perf_counter() - start, "cached": False})

    def _remove_abandoned(self) -> None:
        """Temporary build directories of processes that died mid-build (kill -9) are garbage."""
        for path in self.dir.glob(".im-*-*-*"):
            try:
                pid = int(path.name.split("-")[2])
            except (ValueError, IndexError):
                continue
            if not pid_alive(pid):
                shutil.rmtree(path, ignore_errors=True)

    def _settings(self, steps: list[Step]) -> tuple[dict[str, str], str | None]:
        env: dict[str, str] = {}
        workdir: str | None = None
        for step in steps:
            if step.op == "env":
                env.update(step.args["vars"])
            elif step.op == "workdir":
                workdir = step.args["path"]
        return env, workdir

    async def _apply(self, step: Step, tmp: Path, env: dict[str, str], workdir: str | None,
                     log: Log) -> tuple[dict[str, str], str | None]:
        op, args = step.op, step.args
        venv = tmp / "venv"
        python = str(venv / "bin" / "python")
        build_env = {**env, **step_env(args)}
        if op == "env":
            return {**env, **args["vars"]}, workdir
        if op == "workdir":
            return env, args["path"]
        if op in ("cmd", "entrypoint"):
            log(f"note: `{op}` has no effect on the local backend (containers run Sampan's runtime)")
            return env, workdir
        if op == "apt_install":
            check_apt(args["packages"])
            return env, workdir
        if op in ("pip_install", "uv_pip_install"):
            packages = list(args.get("packages") or [])
            requirements = [x for r in args.get("requirements") or [] for x in ("-r", r)]
            if not packages and not requirements:
                return env, workdir
            await self._run([uv_bin(), "pip", "install", *COMPILE, "--python", python, *pip_args(args), *requirements,
                             *packages], env=build_env, log=log, step=step, cwd=tmp)
            return env, workdir
        if op == "pip_install_from_requirements":
            await self._run([uv_bin(), "pip", "install", *COMPILE, "--python", python, *pip_args(args), "-r",
                             args["requirements_txt"]], env=build_env, log=log, step=step, cwd=tmp)
            return env, workdir
        if op == "pip_install_from_pyproject":
            extras = [x for e in args.get("optional_dependencies") or [] for x in ("--extra", e)]
            await self._run([uv_bin(), "pip", "install", *COMPILE, "--python", python, "-r", args["pyproject_toml"],
                             *extras], env=build_env, log=log, step=step, cwd=tmp)
            return env, workdir
        if op == "run_commands":
            root = tmp / "fs" / "root"  # the container's /root (its working directory)
            root.mkdir(parents=True, exist_ok=True)
            shell_env = {**build_env, "VIRTUAL_ENV": str(venv),
                         "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}
            for command in args.get("commands") or []:
                log(f"$ {command}")
                await self._run(["/bin/sh", "-c", command], env=shell_env, log=log, step=step, cwd=root,
                                inherit_path=False)
            return env, workdir
        if op in ("add_local_dir", "add_local_file"):
            target = tmp / "fs" / args["remote_path"].lstrip("/")  # the absolute path in the container
            source = Path(args["local_path"])
            if op == "add_local_file" and args["remote_path"].endswith("/"):
                target = target / source.name
            await asyncio.to_thread(_copy_in, source, target)
            return env, workdir
        if op == "add_local_python_source":
            raise ImageBuildError(
                "`add_local_python_source(copy=True)` is not supported yet; use `copy=False` (the default)."
            )
        if op == "uv_sync":
            raise ImageBuildError("`Image.uv_sync` is not supported by the local backend yet; use "
                                  "`pip_install_from_pyproject` or `uv_pip_install(requirements=[...])`.")
        raise ImageBuildError(f"Unknown image step {op!r}.")

    async def _run(self, argv: list[str], *, env: dict[str, str], log: Log, step: Step, cwd: Path,
                   inherit_path: bool = True) -> None:
        full_env = {k: os.environ[k] for k in ("HOME", "USER", "LANG", "TMPDIR", "UV_CACHE_DIR",
                                                "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "PIP_INDEX_URL",
                                                "SSL_CERT_FILE") if k in os.environ}
        if inherit_path:
            full_env["PATH"] = os.environ.get("PATH", os.defpath)
        full_env.update({"UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1", "NO_COLOR": "1"})
        if self.constraints is not None:
            full_env["UV_CONSTRAINT"] = str(self.constraints)
        full_env.update(env)
        proc = await asyncio.create_subprocess_exec(*argv, cwd=str(cwd), env=full_env,
                                                    stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        tail = await stream_output(proc, log)
        code = await proc.wait()
        if code != 0:
            output = "\n".join(tail)
            raise ImageBuildError(f"Image build failed at `{step.describe()}` (exit status {code}):\n{output}")

    async def _link_runtime(self, venv: Path, python_version: str, log: Log) -> None:
        layer = await self.runtime_layer(python_version, log)
        site = next((venv / "lib").glob("python*/site-packages"))
        (site / "_sampan_runtime.pth").write_text(str(layer) + "\n")

    async def runtime_layer(self, python_version: str, log: Log) -> Path:
        """Sampan's runtime for one Python version, built once (coalesced across processes)."""
        key = hashlib.sha256(("\n".join(RUNTIME_REQUIREMENTS) + __version__).encode()).hexdigest()[:12]
        layer = self.dir / "runtime" / f"py{python_version}-{key}"
        if (layer / ".complete").exists():
            return layer
        layer.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(layer.parent / f"{layer.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            if (layer / ".complete").exists():
                return layer
            tmp = Path(tempfile.mkdtemp(prefix=f".{layer.name}-", dir=layer.parent))
            try:
                interpreter = find_python(python_version)
                step = Step("runtime", {}, key)
                await self._run([uv_bin(), "pip", "install", *COMPILE, "--python", interpreter, "--target", str(tmp),
                                 *RUNTIME_REQUIREMENTS], env={}, log=log, step=step, cwd=tmp)
                os.symlink(_SAMPAN_PACKAGE, tmp / "sampan")
                (tmp / ".complete").write_text("")
                publish_dir(tmp, layer)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            os.close(fd)
        return layer


def _ignore(line: str) -> None:
    return None


async def coalesce(inflight: dict[str, asyncio.Future[BuiltImage]], key: str,
                   build: Callable[[], Awaitable[BuiltImage]]) -> BuiltImage:
    """One build per key at a time in this process: a second caller awaits the first one's result."""
    pending = inflight.get(key)
    if pending is not None:
        return await asyncio.shield(pending)
    future: asyncio.Future[BuiltImage] = asyncio.get_running_loop().create_future()
    inflight[key] = future
    try:
        image = await build()
        future.set_result(image)
        return image
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()  # mark retrieved
        raise
    finally:
        inflight.pop(key, None)


def publish_dir(tmp: Path, final: Path) -> None:
    """A finished build directory into place (replacing a forced rebuild's), readable by containers."""
    if final.exists():
        shutil.rmtree(final, ignore_errors=True)
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide it from the container's unprivileged uid
    os.rename(tmp, final)


async def stream_output(proc: asyncio.subprocess.Process, log: Log, keep: int = 60) -> list[str]:
    """Relay a process's output line by line to `log`; returns its last `keep` lines (for the error)."""
    tail: list[str] = []
    assert proc.stdout is not None
    async for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        tail = (tail + [line])[-keep:]
        log(line)
    return tail


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True)


def _copy_in(source: Path, target: Path) -> None:
    if not source.exists():
        raise ImageBuildError(f"Local path {str(source)!r} does not exist.")
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, symlinks=False, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target)


def check_apt(packages: list[str]) -> None:
    """`apt_install` cannot install into a venv: the host must already have the packages."""
    if not packages:
        return
    if shutil.which("dpkg-query") is None:
        raise ImageBuildError(
            f"`apt_install({', '.join(packages)})` needs Debian packages, and this host has no dpkg. "
            "Install the equivalent system packages with your package manager."
        )
    missing = []
    for package in packages:
        name = package.split("=")[0]
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
        if out.returncode != 0 or "install ok installed" not in out.stdout:
            missing.append(name)
    if missing:
        raise ImageBuildError(
            f"Missing system packages: {', '.join(missing)}. The local backend uses the host's system packages; "
            f"install them with: sudo apt-get install -y {' '.join(missing)}"
        )


async def build_on_node(recipe: list[dict[str, Any]], images_dir: Path) -> BuiltImage:
    """Build (or find) a recipe's image on a Ray node, in that node's cache: what the Ray backend's
    node actors call (backends/ray.py), given to the backend by the composition root."""
    return await ImageBuilder(images_dir).build(recipe)
