"""The image builder for the container sandbox: a recipe becomes a stack of root filesystem layers.

    $SAMPAN_IMAGES/layers/<key>/diff/       what one step changed (an overlayfs upper directory:
                                            whiteouts and opaque directories as `user.overlay.*`)
    $SAMPAN_IMAGES/layers/<key>/meta.json   the step, its parent, and the image's settings after it
                                            (env, workdir, entrypoint, shell, python): written last
    $SAMPAN_IMAGES/cache/                   mmdebstrap's base tarballs, pulled OCI images, uv's cache

`<key>` is the step's chain key (recipe.py), so a layer is shared by every recipe that starts with
the same steps, and an edit rebuilds from the first changed step. An image id names its last layer.

Each step runs in a build sandbox (runtime/buildbox.py) as root of a user namespace whose ids are
host `uid ..`: `debian_slim` is a Debian root filesystem made by mmdebstrap from the mirror this
machine's apt uses and unpacked with its owners shifted; `apt_install` runs apt-get inside the image;
`pip_install` and friends run uv against the image's Python; `from_registry` pulls with skopeo and
unpacks with umoci; `dockerfile_commands` runs a Dockerfile's instructions. A step is built in a
temporary directory renamed into place when it succeeded, so a failed step caches nothing.

Longer than 400 lines because it runs every kind of recipe step in a root filesystem; splitting the steps
into modules of their own is planned (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from secrets import token_hex
from typing import Any
from urllib.parse import urlsplit

from ... import __version__, config
from ..._proc import pid_alive
from ...file_pattern_matcher import from_recipe
from ...runtime import sandbox
from .. import inroot
from . import dockerfile
from .builder import (
    BuiltImage,
    Log,
    _hash_paths,
    _ignore,
    build_steps,
    coalesce,
    publish_dir,
    salts_for,
    stream_output,
    uv_bin,
)
from .pythons import find_python
from .recipe import BASE_OPS, ImageBuildError, Step, image_id, pip_args, plan, seed_packages, step_env

SUITE = "bookworm"
SUITE_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}
# What `debian_slim` has besides Debian's minbase: Python (Debian's, or the libraries a copied-in
# interpreter links), certificates, and what `apt-get` and `pip` need to fetch over HTTPS.
BASE_PACKAGES = ("ca-certificates", "python3", "python3-venv", "libssl3", "libffi8", "zlib1g", "libsqlite3-0",
                 "libbz2-1.0", "liblzma5", "libreadline8", "libncursesw6", "libgdbm6", "libuuid1", "libexpat1",
                 "netbase", "tzdata")
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOOLS = "/run/sampan"  # where a build step finds uv, its cache and its inputs (a tmpfs: never in a layer)
STEP_OUTPUT_LINES = 60
SecretValues = Callable[[str], dict[str, str]]  # a named Secret's values, for the build steps that ask


CA_VARIABLES = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO")


def trust_bundle() -> str | None:
    """The CA bundle this machine trusts (`SAMPAN_BUILD_CA_BUNDLE`, else `SSL_CERT_FILE`, else Debian's),
    which build steps trust too while they run: downloads through a machine's TLS-inspecting proxy
    work in a build as on the host. Nothing of it stays in the image."""
    for path in (*config.build_ca_bundles(), "/etc/ssl/certs/ca-certificates.crt"):
        if path and os.path.isfile(path):
            return path
    return None


def _key_dir(key: str) -> str:
    return key[:20]


def host_mirror(sources: list[Path] | None = None) -> tuple[str | None, str | None]:
    """The Debian mirror and security mirror this machine's apt is configured with (deb822 or
    one-line sources); (None, None) when there are none, and mmdebstrap picks deb.debian.org."""
    paths = sources or [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    mirror = security = None
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        entries: list[tuple[str, str]] = []
        for line in text.splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 3 and parts[0] == "deb":
                uri = next(p for p in parts[1:] if not p.startswith("["))
                entries.append((uri, parts[parts.index(uri) + 1]))
        for block in text.split("\n\n"):
            fields = dict(
                (k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in block.splitlines() if ":" in ln)
                if not k.startswith("#")
            )
            if "URIs" in fields and "Suites" in fields:
                for suite in fields["Suites"].split():
                    entries.append((fields["URIs"].split()[0], suite))
        for uri, suite in entries:
            if "debian" not in uri:
                continue
            if suite.endswith("-security"):
                security = security or uri
            elif "-" not in suite:
                mirror = mirror or uri
    return mirror, security


def python_setup_script(python: str, version: str, uv_version: str) -> str:
    """The shell script that makes a base image's Python look like Modal's `debian_slim`: `python`,
    `python3` and `pip` in /usr/local/bin, pip usable system-wide, pinned pip/setuptools/wheel and uv."""
    pins = " ".join(shlex.quote(p) for p in [*seed_packages(version), f"uv=={uv_version}"])
    return "\n".join([
        "set -e",
        f"[ -e /usr/local/bin/python3 ] || ln -s {shlex.quote(python)} /usr/local/bin/python3",
        "[ -e /usr/local/bin/python ] || ln -s python3 /usr/local/bin/python",
        "rm -f /usr/lib/python3*/EXTERNALLY-MANAGED",
        "if command -v debconf-set-selections >/dev/null; then "
        "echo 'debconf debconf/frontend select Noninteractive' | debconf-set-selections; fi",
        "ldconfig 2>/dev/null || true",
        f"{TOOLS}/uv pip install --python /usr/local/bin/python --system --break-system-packages "
        f"--compile-bytecode {pins}",
        "mkdir -p /root && chmod 0700 /root",
    ])


def apt_command(packages: list[str]) -> str:
    """`apt_install`: Modal's two RUN lines, non-interactive, then the lists cleaned."""
    quoted = " ".join(shlex.quote(p) for p in packages)
    return (f"apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {quoted} && "
            "apt-get clean && rm -rf /var/lib/apt/lists/*")


def uv_install_command(args: list[str]) -> str:
    """A uv install into the image's first `python` on PATH (Modal's `uv_pip_install`)."""
    return (f'{TOOLS}/uv pip install --python "$(command -v python || command -v python3)" --system '
            f"--break-system-packages --compile-bytecode {' '.join(shlex.quote(a) for a in args)}")


def registry_insecure(reference: str) -> bool:
    """A registry on this machine (a test's, or a local mirror) speaks plain HTTP."""
    host = reference.split("/", 1)[0] if "/" in reference else ""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in ("localhost", "127.0.0.1", "[::1]") or name.endswith(".localhost")


_REFERENCE = re.compile(r"^[a-z0-9]+([._:/@-][a-zA-Z0-9_.+-]+)*$")


def check_reference(reference: str) -> str:
    if not reference or len(reference) > 512 or not _REFERENCE.match(reference) or ".." in reference:
        raise ImageBuildError(f"Invalid image reference {reference!r}.")
    return reference


class RootfsBuilder:
    """Builds recipes into layers (module docstring); one per server."""

    def __init__(self, images_dir: Path, uid: int, *, count: int = 65536, slirp: str | None = None,
                 default_python: str | None = None, constraints: Path | None = None,
                 runtimes: Any = None) -> None:
        self.dir = images_dir
        self.layers = images_dir / "layers"
        self.cache = images_dir / "cache"
        self.uid = uid
        self.count = count
        self.slirp = slirp if slirp is not None else shutil.which("slirp4netns")
        self.default_python = default_python or SUITE_PYTHON[SUITE]
        self.constraints = constraints
        self.runtimes = runtimes  # builder.ImageBuilder: Sampan's runtime layer per Python version
        self._inflight: dict[str, asyncio.Future[BuiltImage]] = {}

    # -- keys and lookups ---------------------------------------------------------------------
    def chain(self, steps: list[dict[str, Any]], scope: str | None = None) -> list[Step]:
        """The recipe's steps with their keys. A step that reads a named Secret is keyed by the workspace
        (`scope`) too: two workspaces' Secrets of one name differ, and one must never get a layer built
        with the other's (a private index's packages, say)."""
        steps = build_steps(steps)
        salts = salts_for(steps)
        offset = 0 if steps and steps[0]["op"] in BASE_OPS else 1
        for i, step in enumerate(steps):
            args = step.get("args") or {}
            context = args.get("context_dir")
            if step["op"] == "from_dockerfile":
                lines = read_dockerfile(args)
                salts[i + offset] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
                args = {**args, "commands": lines}
            if step["op"] in ("dockerfile_commands", "from_dockerfile") and context:
                sources = [s for line in dockerfile.parse(list(args.get("commands") or []))
                           if line.keyword in ("COPY", "ADD") for s in dockerfile.copy_sources(line.value)[0]]
                paths = [Path(context) / s for s in sources if (Path(context) / s).exists()]
                salts[i + offset] = salts.get(i + offset, "") + _hash_paths(paths)
            if args.get("secret_names"):
                salts[i + offset] = salts.get(i + offset, "") + f";workspace={scope}"
            if step["op"] == "uv_sync":
                project = Path(args.get("uv_project_dir") or ".")
                salts[i + offset] = _hash_paths([p for p in (project / "pyproject.toml", project / "uv.lock")
                                                 if p.exists()])
        return plan(steps, self.default_python, salts, rootfs=True)

    def _meta(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.layers / _key_dir(key) / "meta.json").read_text())
        except (OSError, ValueError):
            return None

    def lookup(self, iid: str) -> BuiltImage | None:
        meta = self._meta(iid[3:])
        if meta is None or not meta.get("python"):
            return None
        stack: list[str] = []
        key: str | None = meta["key"]
        while key:
            layer = self._meta(key)
            if layer is None:
                return None  # a layer below went missing (removed by hand): rebuild
            if not layer.get("empty"):
                stack.append(str(self.layers / _key_dir(key) / "diff"))
            key = layer.get("parent")
        with contextlib.suppress(OSError):
            os.utime(self.layers / _key_dir(iid[3:]) / "meta.json")  # last use, for `sampan image prune`
        config = meta["config"]
        return BuiltImage(iid, self.layers / _key_dir(iid[3:]), meta["python"], meta["python_version"],
                          config.get("env") or {}, config.get("workdir"), False, layers=tuple(stack),
                          entrypoint=tuple(config.get("entrypoint") or ()))

    # -- building -----------------------------------------------------------------------------
    async def build(self, steps: list[dict[str, Any]], *, force: bool = False, log: Log | None = None,
                    progress: Log | None = None, secrets: SecretValues | None = None,
                    scope: str | None = None, code: tuple[Path, str] | None = None) -> BuiltImage:
        """Build (or find) `steps`' image. `code`: the app's bundle and module, for `run_function`."""
        chain = self.chain(steps, scope)
        iid = image_id(chain)
        forced = [i for i, s in enumerate(build_steps(steps)) if (s.get("args") or {}).get("force_build")]
        if force or config.force_build():
            forced = [0]
        if not forced:
            found = self.lookup(iid)
            if found is not None:
                return await self._with_runtime(found, log or _ignore)
        offset = len(chain) - len(build_steps(steps))

        async def build() -> BuiltImage:
            image = await self._build(iid, chain, min(forced) + offset if forced else None, log or _ignore,
                                      progress or _ignore, secrets, code)
            return await self._with_runtime(image, log or _ignore)

        return await coalesce(self._inflight, iid, build)

    async def _with_runtime(self, image: BuiltImage, log: Log) -> BuiltImage:
        """The image with Sampan's runtime for its Python (built once per version, shared)."""
        if self.runtimes is None:
            return image
        layer = await self.runtimes.runtime_layer(image.python_version, log)
        return BuiltImage(**{**image.__dict__, "runtime": str(layer)})

    async def _build(self, iid: str, chain: list[Step], force_from: int | None, log: Log, progress: Log,
                     secrets: SecretValues | None, code: tuple[Path, str] | None = None) -> BuiltImage:
        start = time.perf_counter()
        self.layers.mkdir(parents=True, exist_ok=True)
        os.chmod(self.layers, 0o755)
        self._remove_abandoned()
        built_any = False
        progress(f"Building image {iid}")
        for i, step in enumerate(chain):
            forced = force_from is not None and i >= force_from
            if not forced and self._meta(step.key) is not None:
                continue
            parent = self._meta(chain[i - 1].key) if i else None
            progress(f"Step {i + 1}/{len(chain)}: {step.describe()}")
            await self._locked(step, parent, forced, log, secrets, code)
            built_any = True
        top = self._meta(chain[-1].key)
        assert top is not None
        if not top.get("python"):
            await self._finish(chain[-1], log)
        image = self.lookup(iid)
        if image is None:
            raise ImageBuildError(f"Image {iid} was built but cannot be read back.")
        if built_any:
            image = BuiltImage(**{**image.__dict__, "seconds": time.perf_counter() - start, "cached": False})
        return image

    async def _locked(self, step: Step, parent: dict[str, Any] | None, forced: bool, log: Log,
                      secrets: SecretValues | None, code: tuple[Path, str] | None = None) -> None:
        locks = self.dir / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(locks / f"layer-{_key_dir(step.key)}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            if not forced and self._meta(step.key) is not None:
                return  # another process built it meanwhile
            await self._build_layer(step, parent, log, secrets, code)
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _remove_abandoned(self) -> None:
        for path in self.layers.glob(".b-*"):
            try:
                pid = int(path.name.rsplit("-", 1)[1])
            except (ValueError, IndexError):
                continue
            if not pid_alive(pid):
                shutil.rmtree(path, ignore_errors=True)

    async def _build_layer(self, step: Step, parent: dict[str, Any] | None, log: Log,
                           secrets: SecretValues | None, code: tuple[Path, str] | None = None) -> None:
        name = f".b-{_key_dir(step.key)}-{os.getpid()}"
        tmp = self.layers / name
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "diff").mkdir(parents=True)
        (tmp / "work").mkdir()
        for path in (tmp, tmp / "diff", tmp / "work"):
            os.chown(path, self.uid, self.uid)
        os.chmod(tmp / "diff", 0o755)
        config = dict(parent["config"]) if parent else {"env": {}, "workdir": None, "entrypoint": None,
                                                          "cmd": None, "shell": None}
        config["env"] = dict(config.get("env") or {})
        below = self._stack(parent)
        try:
            run = _Run(self, step, name, below, config, log, secrets, code)
            await run.apply()
            meta = {"key": step.key, "parent": parent["key"] if parent else None, "op": step.op,
                    "step": step.describe(), "config": config, "built_at": time.time(), "sampan": __version__,
                    "empty": not any((tmp / "diff").iterdir()), "python": None, "python_version": None,
                    "size": _du(tmp / "diff")}
            if run.python is not None:
                meta["base_python"] = run.python
            shutil.rmtree(tmp / "work", ignore_errors=True)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            publish_dir(tmp, self.layers / _key_dir(step.key))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _stack(self, meta: dict[str, Any] | None) -> list[str]:
        """The non-empty layers up to `meta`, top first, relative to the layer store."""
        out: list[str] = []
        while meta:
            if not meta.get("empty"):
                out.append(f"{_key_dir(meta['key'])}/diff")
            meta = self._meta(meta["parent"]) if meta.get("parent") else None
        return out

    async def probe_python(self, lowers: list[str], config: dict[str, Any], step: Step) -> tuple[str, str]:
        """The first `python` on the image's PATH (as Modal's runtime is started) and its version."""
        probe = ("p=$(command -v python || command -v python3) || { echo 'no python'; exit 3; }; "
                 'exec "$p" -c "import sys; print(sys.executable, \'%d.%d\' % sys.version_info[:2])"')
        lines: list[str] = []
        await self.box(["/bin/sh", "-c", probe], lowers, config, lambda line: lines.append(line), step,
                       scratch=True, check=False, net=False)
        found = next((ln.split() for ln in reversed(lines) if ln.startswith("/")), None)
        if not found or len(found) != 2:
            raise ImageBuildError(
                "The image has no Python on its PATH, which Functions need. Use `add_python=\"3.12\"` with "
                "`from_registry`/`from_dockerfile`, or install Python in the image.")
        return found[0], found[1]

    async def _finish(self, top: Step, log: Log) -> None:
        """Record the image's Python in the last layer's metadata: a recipe is an image once it is known."""
        meta = self._meta(top.key)
        assert meta is not None
        meta["python"], meta["python_version"] = await self.probe_python(self._stack(meta), meta["config"], top)
        (self.layers / _key_dir(top.key) / "meta.json").write_text(json.dumps(meta, indent=1))

    # -- the cache: who uses what, and what may go -------------------------------------------------
    def claim(self, iid: str, workspace: str) -> None:
        """Record that `workspace` uses image `iid` now (what `sampan image list` shows it)."""
        path = self.layers / _key_dir(iid[3:]) / "users.json"
        users = _read_json(path)
        users[workspace] = time.time()
        _write_json(path, users)

    def images(self, workspace: str | None = None) -> list[dict[str, Any]]:
        """Images (last layers with a Python) with their size, steps and use; those `workspace` used,
        or all of them."""
        out = []
        for meta_path in self.layers.glob("*/meta.json"):
            meta = _read_json(meta_path)
            if not meta.get("python"):
                continue
            users = _read_json(meta_path.with_name("users.json"))
            if workspace is not None and workspace not in users:
                continue
            chain = self._chain_metas(meta)
            out.append({"id": "im-" + meta_path.parent.name, "python": meta.get("python_version"),
                        "steps": [m.get("step") for m in reversed(chain)],
                        "size": sum(int(m.get("size") or 0) for m in chain),
                        "built_at": meta.get("built_at"),
                        "last_used": max([*users.values(), meta_path.stat().st_mtime]),
                        "workspaces": len(users)})
        return sorted(out, key=lambda i: -i["last_used"])

    def _chain_metas(self, meta: dict[str, Any]) -> list[dict[str, Any]]:
        chain = []
        current: dict[str, Any] | None = meta
        while current:
            chain.append(current)
            current = self._meta(current["parent"]) if current.get("parent") else None
        return chain

    def release(self, iid: str, workspace: str | None) -> bool:
        """`workspace` stops using `iid` (None: every workspace). False if it did not use it."""
        path = self.layers / _key_dir(iid[3:]) / "users.json"
        users = _read_json(path)
        if workspace is None:
            found = path.parent.joinpath("meta.json").exists()
            users = {}
        else:
            found = users.pop(workspace, None) is not None
        if found:
            _write_json(path, users)
        return found

    def collect(self, in_use: set[str], grace: float = 600.0) -> int:
        """Remove every layer that no image still needs; returns the bytes freed. An image is needed while
        a workspace claims it, an app of this server runs it (`in_use`), or anything (another server
        sharing `$SAMPAN_IMAGES`, a build stacking on it) used it within `grace` seconds."""
        now = time.time()
        keep: set[str] = set()
        for meta_path in self.layers.glob("*/meta.json"):
            iid = "im-" + meta_path.parent.name
            meta = _read_json(meta_path)
            recent = now - _mtime(meta_path) < grace
            if iid in in_use or recent or _read_json(meta_path.with_name("users.json")):
                keep.update(_key_dir(m["key"]) for m in self._chain_metas(meta))
        freed = 0
        for layer in self.layers.iterdir():
            if layer.name.startswith(".") or layer.name in keep:
                continue
            freed += _du(layer)
            shutil.rmtree(layer, ignore_errors=True)
        return freed

    def prune(self, workspace: str | None, in_use: set[str], older_than: float = 0.0) -> list[str]:
        """Release `workspace`'s images (every workspace's, for None) not used by a running app and not
        used for `older_than` seconds, then collect. Returns the ids released."""
        now = time.time()
        released = []
        for image in self.images(workspace):
            if image["id"] in in_use or now - image["last_used"] < older_than:
                continue
            if self.release(image["id"], workspace):
                released.append(image["id"])
        self.collect(in_use, grace=0.0 if older_than else 600.0)
        return released

    def enforce_cap(self, cap: int, in_use: set[str]) -> list[str]:
        """Keep the layer store under `cap` bytes: the images used longest ago (and by no running app)
        go first, for every workspace."""
        evicted: list[str] = []
        if cap <= 0:
            return evicted
        while _du(self.layers) > cap:
            candidates = [i for i in self.images() if i["id"] not in in_use]
            if not candidates:
                break
            oldest = min(candidates, key=lambda i: i["last_used"])
            self.release(oldest["id"], None)
            (self.layers / _key_dir(oldest["id"][3:]) / "meta.json").unlink(missing_ok=True)
            evicted.append(oldest["id"])
            self.collect(in_use, grace=0.0)
        return evicted

    # -- the build sandbox --------------------------------------------------------------------
    async def box(self, argv: list[str], lowers: list[str], config: dict[str, Any], log: Log, step: Step, *,
                  upper: str | None = None, chroot: bool = True, env: dict[str, str] | None = None,
                  binds: list[tuple[str, str]] = (), stage: dict[str, str] | None = None,
                  stdin: int | None = None, scratch: bool = False, check: bool = True,
                  net: bool = True) -> int:
        """Run `argv` in a build sandbox over `lowers` with writes into `upper` (a directory of the
        layer store). `binds`: (host path, path under TOOLS). Raises ImageBuildError on failure."""
        fds: list[int] = []
        tmp_upper = None
        try:
            if scratch:
                tmp_upper = f".b-scratch{os.urandom(4).hex()}-{os.getpid()}"
                for d in ("diff", "work"):
                    (self.layers / tmp_upper / d).mkdir(parents=True, exist_ok=True)
                    os.chown(self.layers / tmp_upper / d, self.uid, self.uid)
                upper = tmp_upper
            assert upper is not None
            fds.append(sandbox.open_tree(str(self.layers)))
            names = {"layers": fds[-1]}
            job_binds = []
            for host, inside in binds:
                fds.append(sandbox.open_tree(host))
                names[f"b{len(fds)}"] = fds[-1]
                job_binds.append({"dst": inside, "fd": f"b{len(fds)}", "file": os.path.isfile(host)})
            job_stage = {}
            for where, host in (stage or {}).items():
                fds.append(sandbox.open_tree(host))
                names[f"s{len(fds)}"] = fds[-1]
                job_stage[where] = {"fd": f"s{len(fds)}"}
            outbound = net and self.slirp is not None
            full_env = {"PATH": BASE_PATH, "HOME": "/root", "USER": "root", **(config.get("env") or {}),
                        **(env or {})}
            bundle = trust_bundle()
            if chroot and net and bundle is not None:  # this machine's CAs (a TLS-inspecting proxy's, say)
                fds.append(sandbox.open_tree(bundle))
                names["ca"] = fds[-1]
                job_binds.append({"dst": f"{TOOLS}/ca-certificates.crt", "fd": "ca", "file": True})
                full_env.update({k: f"{TOOLS}/ca-certificates.crt" for k in CA_VARIABLES})
            job = {"uid": self.uid, "count": self.count, "layers": {"fd": "layers"}, "lowers": lowers,
                   "upper": f"{upper}/diff", "work": f"{upper}/work", "binds": job_binds, "stage": job_stage,
                   "argv": argv, "env": full_env, "cwd": config.get("workdir") or "/", "chroot": chroot,
                   "net": outbound, "outbound": outbound,
                   "resolv": "nameserver 10.0.2.3\n" if outbound else None,
                   "fds": {k: v for k, v in names.items()}}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sampan.runtime.buildbox",
                stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, pass_fds=fds,
                env={"SAMPAN_BUILDBOX": json.dumps(job), "PYTHONPATH": str(Path(sandbox.__file__).parents[2])},
                start_new_session=True, limit=1 << 20)
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        slirp = None
        try:
            if outbound:
                slirp = await self._attach(proc.pid)
            tail = await stream_output(proc, log, STEP_OUTPUT_LINES)
            code = await proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            raise
        finally:
            if slirp is not None:
                with contextlib.suppress(ProcessLookupError):
                    slirp.kill()
                await slirp.wait()
            if tmp_upper is not None:
                shutil.rmtree(self.layers / tmp_upper, ignore_errors=True)
        if check and code != 0:
            output = "\n".join(tail)
            raise ImageBuildError(f"Image build failed at `{step.describe()}` (exit status {code}):\n{output}")
        return code

    async def _attach(self, pid: int, timeout: float = 10.0) -> asyncio.subprocess.Process | None:
        """slirp4netns on the build's network namespace, once it has one (module docstring)."""
        assert self.slirp is not None
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/ns/net") != own:
                    return await asyncio.create_subprocess_exec(
                        self.slirp, "--configure", "--mtu=65520", "--disable-host-loopback", str(pid), "tap0",
                        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            await asyncio.sleep(0.005)
        return None

    # -- bases ----------------------------------------------------------------------------------
    async def debian_tarball(self, log: Log) -> Path:
        """A Debian minbase root filesystem as a tarball, made once per machine by mmdebstrap."""
        mirror, security = host_mirror()
        recipe = json.dumps([SUITE, sorted(BASE_PACKAGES), mirror, security])
        path = self.cache / f"debian-{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}.tar"
        if path.exists():
            return path
        tool = shutil.which("mmdebstrap")
        if tool is None:
            raise ImageBuildError("Building `Image.debian_slim()` needs mmdebstrap: `apt-get install mmdebstrap` "
                                  "(Debian/Ubuntu package `mmdebstrap`).")
        self.cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        sources = []
        if mirror:
            sources += [f"deb {mirror} {SUITE} main", f"deb {mirror} {SUITE}-updates main"]
        if security:
            sources.append(f"deb {security} {SUITE}-security main")
        argv = [tool, "--variant=minbase", "--format=tar", f"--include={','.join(BASE_PACKAGES)}",
                "--aptopt=Acquire::Retries \"3\"", SUITE, str(tmp), *sources]
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        tail = await stream_output(proc, log, STEP_OUTPUT_LINES)
        if await proc.wait() != 0:
            tmp.unlink(missing_ok=True)
            raise ImageBuildError("mmdebstrap could not make the Debian base:\n" + "\n".join(tail))
        os.rename(tmp, path)
        return path

    async def unpack_tar(self, tarball: Path | int, upper: str, step: Step, log: Log, into: str = ".") -> None:
        """Unpack a tarball (a path, or a pipe's read end) into a layer as the namespace's root."""
        fd = os.open(tarball, os.O_RDONLY) if isinstance(tarball, Path) else tarball
        try:
            argv = ["tar", "--numeric-owner", "--exclude=./dev/*", "-xpf", "-", "-C", into]
            await self.box(argv, [], {}, log, step, upper=upper, chroot=False, stdin=fd, net=False)
        finally:
            os.close(fd)

    async def find_python(self, version: str, log: Log) -> str:
        """An interpreter of `version` to copy into an image: one of uv's managed (standalone, relocatable)
        Pythons, downloaded where that is possible, else one installed on this machine; else the error
        lists the versions that exist here."""
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "automatic"}
        for argv in ([uv_bin(), "python", "find", "--managed-python", version],
                     [uv_bin(), "python", "install", version]):
            proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT, env=env)
            try:
                out = (await asyncio.wait_for(proc.communicate(), 300))[0].decode(errors="replace")
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                break
            if proc.returncode != 0:
                log(f"uv's managed Python {version}: not available ({out.strip().splitlines()[-1:]})")
                continue
            if argv[2] == "install":
                continue  # installed: found on the next pass
            return out.strip().splitlines()[-1]
        found = await asyncio.create_subprocess_exec(uv_bin(), "python", "find", "--managed-python", version,
                                                     stdout=asyncio.subprocess.PIPE,
                                                     stderr=asyncio.subprocess.DEVNULL)
        path = (await found.communicate())[0].decode().strip()
        return path if found.returncode == 0 and path else find_python(version)

    async def copy_python(self, version: str, upper: str, step: Step, log: Log) -> str:
        """An interpreter of `version` (Debian's release has another), copied into the image's /usr/local
        as Modal's `python:*-slim` images have it. Returns its path in the image."""
        python = await self.find_python(version, log)
        out = await asyncio.create_subprocess_exec(python, "-c", "import sys; print(sys.base_prefix)",
                                                   stdout=asyncio.subprocess.PIPE)
        prefix = (await out.communicate())[0].decode().strip()
        excludes = [f"--exclude=./lib/python{version}/{x}" for x in ("test", "site-packages/*", "idlelib", "tkinter")]
        r, w = os.pipe()
        tar = await asyncio.create_subprocess_exec("tar", "-C", prefix, *excludes, "-cf", "-", "bin", "lib", "include",
                                                   stdout=w, stderr=asyncio.subprocess.DEVNULL)
        os.close(w)
        (self.layers / upper / "usr" / "local").mkdir(parents=True, exist_ok=True)
        await self.unpack_tar(r, upper, step, log, into="./usr/local")
        await tar.wait()
        for sub in ("usr", "usr/local"):
            os.chown(self.layers / upper / sub, self.uid, self.uid)
        return f"/usr/local/bin/python{version}"

    async def pull(self, reference: str, creds: dict[str, str], log: Log) -> Path:
        """`skopeo copy` of a registry image into an OCI layout in the cache (one per reference)."""
        check_reference(reference)
        tool = shutil.which("skopeo")
        if tool is None or shutil.which("umoci") is None:
            raise ImageBuildError("Registry images need skopeo and umoci: `apt-get install skopeo umoci`.")
        ref = reference if "/" in reference.split(":")[0] or "." in reference.split("/")[0] else \
            f"docker.io/library/{reference}" if "/" not in reference else f"docker.io/{reference}"
        digest = hashlib.sha256(ref.encode()).hexdigest()[:16]
        layout = self.cache / "oci" / digest
        tmp = layout.with_name(f"{digest}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        argv = [tool, "copy", "--retry-times", "2", "--override-os", "linux", "--override-arch", "amd64"]
        if registry_insecure(ref):
            argv.append("--src-tls-verify=false")
        if creds.get("username"):
            argv += ["--src-creds", f"{creds['username']}:{creds.get('password', '')}"]
        argv += [f"docker://{ref}", f"oci:{tmp}:image"]
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        output = (await proc.communicate())[0].decode(errors="replace")
        for line in output.splitlines():
            log(line)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ImageBuildError(f"Could not pull {reference!r}:\n{output.strip()}")
        shutil.rmtree(layout, ignore_errors=True)
        os.rename(tmp, layout)
        return layout


SNAPSHOT_ID = re.compile(r"im-[0-9a-f]{32}\Z")


def snapshot_path(cache: Path, workspace: str, snapshot_id: str) -> Path:
    """Where a workspace's Sandbox snapshot lies: a name that cannot lead out of the workspace's directory."""
    if not SNAPSHOT_ID.match(snapshot_id) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", workspace) \
            or workspace in (".", ".."):
        raise ImageBuildError(f"Invalid Sandbox snapshot {snapshot_id!r}.")
    return cache / "snapshots" / workspace / f"{snapshot_id}.tar"


def read_dockerfile(args: dict[str, Any]) -> list[str]:
    """The lines of a `from_dockerfile` step's Dockerfile (read where the server builds, as add_local_* files)."""
    try:
        return Path(args["path"]).read_text().split("\n")
    except OSError as exc:
        raise ImageBuildError(f"Cannot read Dockerfile {args.get('path')!r}: {exc.strerror}") from None


def oci_config(layout: Path) -> dict[str, Any]:
    """The image configuration (Env, WorkingDir, Entrypoint, Cmd) of an OCI layout's only image."""
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs" / Path(*manifest_digest.split(":"))).read_text())
    config = json.loads((layout / "blobs" / Path(*manifest["config"]["digest"].split(":"))).read_text())
    return config.get("config") or {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


class _Run:
    """One step, applied to a layer being built: the sandbox runs, the settings it changes."""

    def __init__(self, builder: RootfsBuilder, step: Step, upper: str, below: list[str], config: dict[str, Any],
                 log: Log, secrets: SecretValues | None, code: tuple[Path, str] | None = None) -> None:
        self.code = code
        self.b = builder
        self.step = step
        self.upper = upper
        self.below = below
        self.config = config
        self.log = log
        self.secrets = secrets
        self.python: str | None = None

    @property
    def diff(self) -> Path:
        return self.b.layers / self.upper / "diff"

    def _step_env(self) -> dict[str, str]:
        env = step_env(self.step.args)
        for name in self.step.args.get("secret_names") or []:
            if self.secrets is None:
                raise ImageBuildError(f"Secret {name!r} of a build step cannot be resolved here.")
            env.update(self.secrets(name))
        return env

    async def sh(self, command: str, env: dict[str, str] | None = None, binds: list[tuple[str, str]] = ()) -> None:
        shell = self.config.get("shell") or ["/bin/sh", "-c"]
        self.log(f"RUN {command}")
        await self.b.box([*shell, command], self.below, self.config, self.log, self.step, upper=self.upper,
                         env={**self._step_env(), **(env or {})}, binds=list(binds))

    def _uv_binds(self) -> list[tuple[str, str]]:
        cache = self.b.cache / "uv"
        cache.mkdir(parents=True, exist_ok=True)
        if cache.stat().st_uid != self.b.uid:  # made by hand, or for another container uid: the builds' own
            for root, dirs, files in os.walk(cache):
                for name in [*dirs, *files]:
                    os.lchown(os.path.join(root, name), self.b.uid, self.b.uid)
            os.chown(cache, self.b.uid, self.b.uid)
        binds = [(uv_bin(), f"{TOOLS}/uv"), (str(cache), f"{TOOLS}/uv-cache")]
        if self.b.constraints is not None and self.b.constraints.is_file():
            binds.append((str(self.b.constraints), f"{TOOLS}/constraints.txt"))
        return binds

    def _uv_env(self) -> dict[str, str]:
        env = {"UV_CACHE_DIR": f"{TOOLS}/uv-cache", "UV_LINK_MODE": "copy", "UV_NO_PROGRESS": "1",
               "UV_PYTHON_DOWNLOADS": "never"}
        if self.b.constraints is not None and self.b.constraints.is_file():
            env["UV_CONSTRAINT"] = f"{TOOLS}/constraints.txt"
        return env

    async def uv(self, args: list[str], binds: list[tuple[str, str]] = ()) -> None:
        await self.sh(uv_install_command(args), self._uv_env(), [*self._uv_binds(), *binds])

    def copy_in(self, source: Path, target: str, ignore: Callable[[str, list[str]], set[str]] | None = None) -> None:
        """Files into the layer at absolute `target`, owned by the image's root. The layer may hold links a
        RUN of the same step made: every write is relative to a descriptor of the layer's directory, a
        link within it is followed and one that leads out is refused (server/inroot.py); a source's own
        links are copied as links."""
        if not source.exists():
            raise ImageBuildError(f"Local path {str(source)!r} does not exist.")
        parts = self._layer_parts(target)
        root = os.open(self.diff, inroot.DIR_FLAGS)
        try:
            if source.is_dir():
                into = self._layer_dir(root, parts, target)
                try:
                    self._copy_dir(source, into, ignore, 0)
                finally:
                    os.close(into)
                return
            if not parts:
                raise ImageBuildError(f"Cannot copy the file {str(source)!r} over the image's root directory.")
            parent = self._layer_dir(root, parts[:-1], target)
            try:
                self._copy_file(source, parent, parts[-1], target)
            finally:
                os.close(parent)
        finally:
            os.close(root)

    @staticmethod
    def _layer_parts(target: str) -> list[str]:
        try:
            return inroot.parts_of(target)
        except inroot.Outside:
            raise ImageBuildError(f"{target!r} leads outside the image.") from None

    def _layer_dir(self, root: int, parts: list[str], target: str) -> int:
        """The layer's directory at `parts`, made if missing (owned by the image's root)."""
        try:
            return inroot.open_dir(root, parts, create=True, owner=(self.b.uid, self.b.uid))
        except inroot.Outside:
            raise ImageBuildError(f"{target!r} goes through a link that leads out of the image's layer (Sampan "
                                  "follows links only within the layer while it builds).") from None
        except OSError as exc:
            raise ImageBuildError(f"{target!r}: {exc.strerror or exc} (a file, or a link, on the way).") from None

    def _copy_file(self, source: Path, parent: int, name: str, target: str) -> None:
        info = source.stat()
        try:
            with source.open("rb") as data:
                inroot.write_new(parent, name, data, f".sampan-copy-{token_hex(8)}", info.st_mtime,
                                 stat.S_IMODE(info.st_mode), (self.b.uid, self.b.uid))
        except IsADirectoryError:
            raise ImageBuildError(f"Cannot copy the file {str(source)!r} over the directory {target!r}.") from None

    def _copy_dir(self, source: Path, into: int, ignore: Callable[[str, list[str]], set[str]] | None,
                  depth: int) -> None:
        """`source`'s contents into the layer directory `into`, as shutil.copytree(symlinks=True) would."""
        if depth > inroot.MAX_DEPTH:
            raise ImageBuildError(f"{str(source)!r} is too deep to copy.")
        names = sorted(os.listdir(source))
        skipped = ignore(str(source), names) if ignore is not None else set()
        owner = (self.b.uid, self.b.uid)
        for name in names:
            if name in skipped:
                continue
            path = source / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                temp = f".sampan-link-{token_hex(8)}"
                os.symlink(os.readlink(path), temp, dir_fd=into)
                os.chown(temp, *owner, dir_fd=into, follow_symlinks=False)
                os.replace(temp, name, src_dir_fd=into, dst_dir_fd=into)
            elif stat.S_ISDIR(info.st_mode):
                child = self._layer_dir(into, [name], str(path))
                try:
                    self._copy_dir(path, child, ignore, depth + 1)
                finally:
                    os.close(child)
            elif stat.S_ISREG(info.st_mode):
                self._copy_file(path, into, name, str(path))

    async def apply(self) -> None:
        op, args = self.step.op, self.step.args
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise ImageBuildError(f"Unknown image step {op!r}.")
        await handler(args)

    # -- base steps -----------------------------------------------------------------------------
    async def op_debian_slim(self, args: dict[str, Any]) -> None:
        version = args["python_version"]
        tarball = await self.b.debian_tarball(self.log)
        await self.b.unpack_tar(tarball, self.upper, self.step, self.log)
        python = "/usr/bin/python3"
        if version != SUITE_PYTHON[SUITE]:
            python = await self.b.copy_python(version, self.upper, self.step, self.log)
        await self.b.box(["/bin/sh", "-c", python_setup_script(python, version, _uv_version())], [], {},
                         self.log, self.step, upper=self.upper, env=self._uv_env(), binds=self._uv_binds())
        self.config["env"] = {"PATH": BASE_PATH, **({"LANG": "C.UTF-8"} if version < "3.13" else {}),
                              "PYTHON_VERSION": version}
        self.python = python

    async def _registry(self, reference: str, creds: dict[str, str], add_python: str | None,
                        setup: list[str]) -> None:
        layout = await self.b.pull(reference, creds, self.log)
        await self.b.box(["umoci", "raw", "unpack", "--image", "/mnt/oci:image", "."], [], {}, self.log,
                         self.step, upper=self.upper, chroot=False, stage={"oci": str(layout)}, net=False)
        image = oci_config(layout)
        env = dict(item.split("=", 1) for item in image.get("Env") or [] if "=" in item)
        self.config.update({"env": env, "workdir": image.get("WorkingDir") or None,
                            "entrypoint": image.get("Entrypoint"), "cmd": image.get("Cmd")})
        if add_python:
            self.python = await self.b.copy_python(add_python, self.upper, self.step, self.log)
            self.config["env"].setdefault("PATH", BASE_PATH)
            self.config["env"]["TERMINFO_DIRS"] = "/etc/terminfo:/lib/terminfo:/usr/share/terminfo:/usr/lib/terminfo"
            await self.b.box(["/bin/sh", "-c", f"ln -sf python{add_python} /usr/local/bin/python3; "
                              "ln -sf python3 /usr/local/bin/python; ldconfig 2>/dev/null || true"],
                             [], self.config, self.log, self.step, upper=self.upper, net=False)
        for line in setup:
            await self._dockerfile([line], None, {})

    def _creds(self, args: dict[str, Any], kind: str) -> dict[str, str]:
        names = list(args.get("secret_names") or [])
        values: dict[str, str] = dict(args.get("env") or {})
        for name in names:
            if self.secrets is None:
                raise ImageBuildError(f"Secret {name!r} cannot be resolved here.")
            values.update(self.secrets(name))
        if not values:
            return {}
        if kind == "gcp" or "SERVICE_ACCOUNT_JSON" in values:
            return {"username": "_json_key", "password": values.get("SERVICE_ACCOUNT_JSON", "")}
        if kind == "aws" or "AWS_ACCESS_KEY_ID" in values:
            raise ImageBuildError("Pulling from AWS ECR needs a short-lived token from AWS, which this server "
                                  "cannot fetch (no AWS access). Give REGISTRY_USERNAME=AWS and "
                                  "REGISTRY_PASSWORD=$(aws ecr get-login-password) in the Secret instead.")
        if "REGISTRY_USERNAME" in values and "REGISTRY_PASSWORD" in values:
            return {"username": values["REGISTRY_USERNAME"], "password": values["REGISTRY_PASSWORD"]}
        raise ImageBuildError("The registry Secret must hold REGISTRY_USERNAME and REGISTRY_PASSWORD.")

    async def op_sandbox_snapshot(self, args: dict[str, Any]) -> None:
        """A Sandbox's filesystem as it was (`sb.snapshot_filesystem()`): its tar, taken by the server into
        the workspace's snapshot directory, unpacked as this image's only layer."""
        tarball = snapshot_path(self.b.cache, str(args.get("workspace") or ""), str(args.get("id") or ""))
        if not tarball.is_file():
            raise ImageBuildError(f"Sandbox snapshot {args.get('id')!r} is not on this server (expired, or "
                                  "another workspace's).")
        await self.b.unpack_tar(tarball, self.upper, self.step, self.log)
        self.config["env"] = dict(args.get("env") or {})
        self.config["workdir"] = args.get("workdir")

    async def op_from_registry(self, args: dict[str, Any]) -> None:
        await self._registry(args["tag"], self._creds(args, "static"), args.get("add_python"),
                             list(args.get("setup_dockerfile_commands") or []))

    async def op_from_aws_ecr(self, args: dict[str, Any]) -> None:
        await self._registry(args["tag"], self._creds(args, "aws"), args.get("add_python"),
                             list(args.get("setup_dockerfile_commands") or []))

    async def op_from_gcp_artifact_registry(self, args: dict[str, Any]) -> None:
        await self._registry(args["tag"], self._creds(args, "gcp"), args.get("add_python"),
                             list(args.get("setup_dockerfile_commands") or []))

    async def op_from_dockerfile(self, args: dict[str, Any]) -> None:
        instructions = dockerfile.parse(read_dockerfile(args))
        reference, rest = dockerfile.split_from(instructions)
        build_args = {k: str(v) for k, v in (args.get("build_args") or {}).items()}
        variables = dict(build_args)
        for line in instructions:  # the ARGs before FROM are what FROM may use
            if line.keyword == "FROM":
                break
            for key, value in dockerfile.pairs(line.value).items():
                variables.setdefault(key, value)
        if reference is None:
            raise ImageBuildError("The Dockerfile has no FROM line.")
        reference = dockerfile.substitute(reference, variables)
        if reference == "scratch":
            self.config.update({"env": {}, "workdir": None})
        else:
            await self._registry(reference, self._creds(args, "static"), None, [])
        await self._run_instructions(rest, args.get("context_dir"), build_args)
        if args.get("add_python"):
            self.python = await self.b.copy_python(args["add_python"], self.upper, self.step, self.log)

    async def op_micromamba(self, args: dict[str, Any]) -> None:
        raise ImageBuildError("`Image.micromamba` needs a micromamba binary, which is not packaged for Debian "
                              "and cannot be downloaded here. Use `debian_slim()` with `pip_install`.")

    async def op_micromamba_install(self, args: dict[str, Any]) -> None:
        await self.op_micromamba(args)

    # -- steps ----------------------------------------------------------------------------------
    async def op_apt_install(self, args: dict[str, Any]) -> None:
        if args.get("packages"):
            await self.sh(apt_command(list(args["packages"])))

    async def op_run_commands(self, args: dict[str, Any]) -> None:
        for command in args.get("commands") or []:
            await self.sh(command)

    async def op_pip_install(self, args: dict[str, Any]) -> None:
        packages = sorted(args.get("packages") or [])
        if packages:
            await self.uv([*pip_args(args), *packages])

    async def op_uv_pip_install(self, args: dict[str, Any]) -> None:
        requirements = [Path(r) for r in args.get("requirements") or []]
        binds = [(str(r), f"{TOOLS}/req/{i}/{r.name}") for i, r in enumerate(requirements)]
        req_args = [x for i, r in enumerate(requirements) for x in ("-r", f"{TOOLS}/req/{i}/{r.name}")]
        packages = sorted(args.get("packages") or [])
        if packages or req_args:
            await self.uv([*pip_args(args), *req_args, *packages], binds)

    async def op_pip_install_from_requirements(self, args: dict[str, Any]) -> None:
        path = Path(args["requirements_txt"])
        if not path.is_file():
            raise ImageBuildError(f"Requirements file {str(path)!r} does not exist.")
        await self.uv([*pip_args(args), "-r", f"{TOOLS}/requirements.txt"],
                      [(str(path), f"{TOOLS}/requirements.txt")])

    async def op_pip_install_from_pyproject(self, args: dict[str, Any]) -> None:
        import tomllib

        path = Path(args["pyproject_toml"])
        try:
            project = tomllib.loads(path.read_text()).get("project") or {}
        except (OSError, ValueError) as exc:
            raise ImageBuildError(f"Cannot read {str(path)!r}: {exc}") from None
        if "dependencies" not in project:
            raise ValueError("No [project.dependencies] section in pyproject.toml file. If your pyproject.toml "
                             "instead declares [tool.poetry.dependencies], use `Image.poetry_install_from_file()`. "
                             "See https://packaging.python.org/en/latest/guides/writing-pyproject-toml for further "
                             "file format guidelines.")
        packages = list(project["dependencies"])
        for group in args.get("optional_dependencies") or []:
            packages += list((project.get("optional-dependencies") or {}).get(group) or [])
        if packages:
            await self.uv([*pip_args(args), *sorted(packages)])

    async def op_uv_sync(self, args: dict[str, Any]) -> None:
        project = Path(args.get("uv_project_dir") or ".")
        if not (project / "pyproject.toml").is_file():
            raise ImageBuildError(f"Expected {str(project / 'pyproject.toml')!r} to exist for `uv_sync`.")
        self.copy_in(project / "pyproject.toml", "/.uv/pyproject.toml")
        frozen = (project / "uv.lock").is_file() and args.get("frozen", True)
        if (project / "uv.lock").is_file():
            self.copy_in(project / "uv.lock", "/.uv/uv.lock")
        flags = [f"--group={g}" for g in args.get("groups") or []] + [f"--extra={e}" for e in args.get("extras") or []]
        command = (f'{TOOLS}/uv sync --project=/.uv --no-install-workspace --compile-bytecode '
                   f'--python "$(command -v python || command -v python3)" {" ".join(flags)}'
                   f'{" --frozen" if frozen else ""} {args.get("extra_options") or ""}')
        await self.sh(command, {**self._uv_env(), "UV_PROJECT_ENVIRONMENT": "/.uv/.venv"}, self._uv_binds())
        path = self.config["env"].get("PATH", BASE_PATH)
        self.config["env"]["PATH"] = f"/.uv/.venv/bin:{path}"

    async def op_poetry_install_from_file(self, args: dict[str, Any]) -> None:
        pyproject = Path(args["poetry_pyproject_toml"])
        lock = Path(args.get("poetry_lockfile") or pyproject.with_name("poetry.lock"))
        self.copy_in(pyproject, "/tmp/poetry/pyproject.toml".replace("/tmp", "/.poetry"))
        if lock.is_file() and not args.get("ignore_lockfile"):
            self.copy_in(lock, "/.poetry/poetry.lock")
        version = args.get("poetry_version", "latest")
        if version is not None:
            await self.uv(["poetry" if version == "latest" else f"poetry=={version}"])
        groups = [f"--with {','.join(args['with_'])}"] if args.get("with_") else []
        groups += [f"--without {','.join(args['without'])}"] if args.get("without") else []
        groups += [f"--only {','.join(args['only'])}"] if args.get("only") else []
        await self.sh(f"cd /.poetry && poetry config virtualenvs.create false && poetry install --no-root "
                      f"{' '.join(groups)} --compile")

    async def op_run_function(self, args: dict[str, Any]) -> None:
        """The function, imported from the app's code, run once in the image as its root; what it writes
        (outside /tmp and /run) is the layer. Its Secrets and `env=` are its environment."""
        code = self.code
        if code is None or self.b.runtimes is None:
            raise ImageBuildError("`Image.run_function` needs the app's code, which this build was not given.")
        bundle, app_module = code
        module = args["module"] if args.get("module") not in (None, "__main__") else app_module
        _, version = await self.b.probe_python(self.below, self.config, self.step)
        runtime = await self.b.runtimes.runtime_layer(version, self.log)
        boot = "; ".join([
            "import sys, base64, importlib",
            f"sys.path[:0] = [{TOOLS + '/code'!r}]",
            f"sys.path += [{TOOLS + '/pkg'!r}, {TOOLS + '/deps'!r}]",
            "from sampan import modal_alias; modal_alias.install()",
            "import cloudpickle",
            f"f = importlib.import_module({module!r})",
            *[f"f = getattr(f, {part!r})" for part in str(args["qualname"]).split(".") if part != "<locals>"],
            "f = getattr(f, 'raw_f', f)",
            f"a, kw = cloudpickle.loads(base64.b64decode({args['args']!r}))",
            "f(*a, **kw)",
        ])
        binds = [(str(bundle), f"{TOOLS}/code"), (str(runtime), f"{TOOLS}/deps"),
                 (str(Path(sandbox.__file__).resolve().parents[1]), f"{TOOLS}/pkg/sampan")]
        env = {"MODAL_IS_REMOTE": "1", "PYTHONUNBUFFERED": "1", **self._step_env()}
        self.log(f"run_function {args['qualname']} (from module {module})")
        shell = ["/bin/sh", "-c", 'exec "$(command -v python || command -v python3)" -c "$0"', boot]
        old_workdir = self.config.get("workdir")
        self.config["workdir"] = old_workdir or "/root"
        try:
            await asyncio.wait_for(
                self.b.box(shell, self.below, self.config, self.log, self.step, upper=self.upper, env=env,
                           binds=binds),
                timeout=float(args.get("timeout") or 3600))
        except asyncio.TimeoutError:
            raise ImageBuildError(f"Image build failed at `{self.step.describe()}`: the function ran longer "
                                  f"than its timeout ({args.get('timeout')} s).") from None
        finally:
            self.config["workdir"] = old_workdir

    async def op_env(self, args: dict[str, Any]) -> None:
        self.config["env"].update(args["vars"])

    async def op_workdir(self, args: dict[str, Any]) -> None:
        self.config["workdir"] = str(args["path"])
        self.make_dir(self.config["workdir"])

    def make_dir(self, path: str) -> None:
        """`WORKDIR` makes its directory, as Docker does (owned by the image's root; within the layer,
        never through a link out of it)."""
        if not path.startswith("/") or ".." in path.split("/"):
            raise ImageBuildError(f"WORKDIR must be an absolute path without '..': {path!r}")
        root = os.open(self.diff, inroot.DIR_FLAGS)
        try:
            os.close(self._layer_dir(root, self._layer_parts(path), path))
        finally:
            os.close(root)

    async def op_entrypoint(self, args: dict[str, Any]) -> None:
        self.config["entrypoint"] = list(args.get("commands") or [])

    async def op_cmd(self, args: dict[str, Any]) -> None:
        self.config["cmd"] = list(args.get("cmd") or [])

    async def op_shell(self, args: dict[str, Any]) -> None:
        self.config["shell"] = list(args.get("shell") or [])

    async def op_add_local_dir(self, args: dict[str, Any]) -> None:
        source = Path(args["local_path"])
        rule = from_recipe(args)

        def ignore(directory: str, names: list[str]) -> set[str]:  # shutil.copytree's `ignore=`
            if rule is None:
                return set()
            rel = Path(os.path.relpath(directory, source))
            return {n for n in names if not os.path.isdir(os.path.join(directory, n)) and rule(rel / n)}

        self.copy_in(source, args["remote_path"], ignore=ignore)

    async def op_add_local_file(self, args: dict[str, Any]) -> None:
        source = Path(args["local_path"])
        remote = args["remote_path"]
        self.copy_in(source, remote + source.name if remote.endswith("/") else remote)

    async def op_add_local_python_source(self, args: dict[str, Any]) -> None:
        raise ImageBuildError("`add_local_python_source(copy=True)` is not supported yet; use `copy=False` "
                              "(the default).")

    async def op_dockerfile_commands(self, args: dict[str, Any]) -> None:
        await self._dockerfile(list(args.get("commands") or []), args.get("context_dir"),
                               {k: str(v) for k, v in (args.get("build_args") or {}).items()})

    async def _dockerfile(self, lines: list[str], context: str | None, build_args: dict[str, str]) -> None:
        instructions = dockerfile.parse(lines)
        if any(i.keyword == "FROM" for i in instructions):
            raise ImageBuildError("`dockerfile_commands` cannot contain FROM; use `Image.from_dockerfile` or "
                                  "`Image.from_registry`.")
        await self._run_instructions(instructions, context, build_args)

    async def _run_instructions(self, instructions: list[dockerfile.Instruction], context: str | None,
                                build_args: dict[str, str]) -> None:
        variables = {**self.config["env"], **build_args}
        for line in instructions:
            value = line.value
            if line.keyword == "ARG":
                for key, default in dockerfile.pairs(value).items():
                    variables[key] = build_args.get(key, dockerfile.substitute(default, variables))
            elif line.keyword == "RUN":
                form = dockerfile.exec_form(value)
                if form is not None:
                    value = shlex.join(form)
                await self.sh(value, {k: v for k, v in build_args.items()})
            elif line.keyword == "ENV":
                for key, v in dockerfile.pairs(value).items():
                    self.config["env"][key] = dockerfile.substitute(v, variables)
                    variables[key] = self.config["env"][key]
            elif line.keyword == "WORKDIR":
                path = dockerfile.substitute(value, variables)
                base = self.config.get("workdir") or "/"
                self.config["workdir"] = path if path.startswith("/") else os.path.join(base, path)
                self.make_dir(self.config["workdir"])
            elif line.keyword in ("COPY", "ADD"):
                sources, dest = dockerfile.copy_sources(dockerfile.substitute(value, variables))
                if context is None:
                    raise ImageBuildError(f"Dockerfile line {line.line}: COPY needs a context directory.")
                root = Path(context).resolve()
                workdir = self.config.get("workdir") or "/"
                dest = dest if dest.startswith("/") else os.path.join(workdir, dest)
                for source in sources:
                    if urlsplit(source).scheme:
                        raise ImageBuildError(f"Dockerfile line {line.line}: ADD of a URL is not supported.")
                    path = (root / source).resolve()
                    if path != root and root not in path.parents:
                        raise ImageBuildError(f"COPY source {source!r} is outside the context directory.")
                    target = dest
                    if path.is_file() and (dest.endswith("/") or len(sources) > 1):
                        target = os.path.join(dest, path.name)
                    self.copy_in(path, target)
            elif line.keyword == "ENTRYPOINT":
                self.config["entrypoint"] = dockerfile.exec_form(value) or ["/bin/sh", "-c", value]
            elif line.keyword == "CMD":
                self.config["cmd"] = dockerfile.exec_form(value) or ["/bin/sh", "-c", value]
            elif line.keyword == "SHELL":
                form = dockerfile.exec_form(value)
                if not form:
                    raise ImageBuildError(f"Dockerfile line {line.line}: SHELL must be a JSON array.")
                self.config["shell"] = form
            elif line.keyword == "USER" and value.strip() not in ("root", "0", "0:0"):
                raise ImageBuildError(f"Dockerfile line {line.line}: USER {value} is not supported; Functions run "
                                      "as root, as on Modal.")
            # LABEL, EXPOSE, HEALTHCHECK, MAINTAINER: nothing to do for a Function's image


def _uv_version() -> str:
    import subprocess

    out = subprocess.run([uv_bin(), "--version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"(\d+\.\d+\.\d+)", out.stdout)
    return match.group(1) if match else "0.8.0"
