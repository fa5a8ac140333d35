"""Settings, read once from the environment. Every knob has a named default here.

| variable                   | default        | meaning                                              |
|----------------------------|----------------|------------------------------------------------------|
| SAMPAN_HOME                | ~/.sampan      | state: bundles, logs, port assignments               |
| SAMPAN_WORKSPACE           | OS user name   | the `<workspace>` part of every URL                  |
| SAMPAN_DOMAIN              | localhost      | Host-routed URLs are `<ws>--<label>.<domain>:<port>` |
| SAMPAN_HOST                | 127.0.0.1      | address the gateway binds and prints                 |
| SAMPAN_GATEWAY_PORT        | 8487           | the Host-routed gateway port (0 = any free port)     |
| SAMPAN_ENDPOINT_PORT_BASE  | 8488           | first port tried for per-endpoint ports (0 = any)    |
| SAMPAN_DEV_SUFFIX          | dev            | suffix of `serve` URLs (also MODAL_DEV_SUFFIX)       |
| SAMPAN_WATCH_DEBOUNCE_MS   | 300            | quiet time before a file change triggers a reload    |
| SAMPAN_SERVER_ID           | random         | tags every container (SAMPAN_LABEL_SERVER) of this server |
| SAMPAN_IMAGES              | $SAMPAN_HOME/images | built image environments (can be shared between homes) |
| SAMPAN_CONSTRAINTS / UV_CONSTRAINT | none     | a pip constraints file applied to every install into an image |
| SAMPAN_IMAGE_BUILDER       | rootfs         | venv: build images as virtual environments even in the sandbox |
| SAMPAN_PROFILE / MODAL_PROFILE | active table | the profile of config.toml the CLI uses (sampan/profiles.py) |
| SAMPAN_IMAGE_CACHE_MAX     | 0 (no cap)     | size cap of built image layers (`20G`); least recently used go first |
| SAMPAN_BUILD_CA_BUNDLE     | SSL_CERT_FILE  | CA bundle that image build steps trust while they run  |
| SAMPAN_MAX_BODY_BYTES      | 4294967296     | largest request body (413 beyond)                     |
| SAMPAN_REDIRECT_AFTER_S    | 150            | a request still running then gets a 303 to its result |
| SAMPAN_RATE_LIMIT          | 200            | requests per second per workspace (0: no limit)       |
| SAMPAN_RATE_BURST_S        | 5              | burst, in seconds of the rate                          |
| SAMPAN_HEAD_TIMEOUT_S      | 60             | a request head must arrive within (also keep-alive idle) |
| SAMPAN_BODY_TIMEOUT_S      | 60             | longest pause while reading a request body            |
| SAMPAN_FORK                | 1              | 0: spawn containers instead of forking templates     |
| SAMPAN_RUNTIME             | sandbox        | process: no container isolation (backends/isolation.py) |
| SAMPAN_CONTAINER_UID       | 100000         | host uid of container root when the server is root    |
| SAMPAN_MAX_CONNECTIONS     | 10000          | open client connections (503 beyond)                  |
| SAMPAN_MAX_CONTAINERS      | 256            | live containers of the server (0: no cap; beyond, starts wait) |
| SAMPAN_MAX_CONTAINERS_PER_WORKSPACE | 128   | live containers of one workspace (0: no cap)          |
| SAMPAN_MAX_POOLS_PER_FUNCTION | 64          | class-parameter combinations live at once (429 beyond) |
| SAMPAN_BACKEND             | local          | where `sampan server` runs containers: local or ray   |
| SAMPAN_RAY_ADDRESS         | auto           | the Ray cluster to join (ray backend)                 |
| SAMPAN_RAY_PLACEMENT       | spread         | spread or pack containers over the Ray nodes          |
| SAMPAN_RAY_VOLUMES         | sync           | Volumes on Ray nodes: sync (via this server) or shared |
| SAMPAN_REQUEST_LOG         | 1              | 0: no request log, no request metrics (the benchmark's baseline) |
| SAMPAN_EPHEMERAL_TIMEOUT_S | 30             | a `serve` session on the server, silent this long, stops |
| SAMPAN_NODE_HOME           | $TMPDIR/sampan-node-<uid> | a Ray node's bundles and templates (on the node) |
| SAMPAN_GPUS                | nvidia-smi -L  | GPUs the local backend hands out as CUDA_VISIBLE_DEVICES |
| MODAL_FORCE_BUILD          | unset          | 1: rebuild every image from its first step (Modal's variable) |
| OTEL_EXPORTER_OTLP_ENDPOINT | none         | export request spans and container logs over OTLP (`sampan[otel]`) |
| SAMPAN_BUCKET_ENDPOINTS_ALLOW | none        | host:port,... bucket endpoints allowed on loopback/private networks |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import profiles
from .naming import slugify, validate_dev_suffix

DEFAULT_GATEWAY_PORT = 8487
DEFAULT_ENDPOINT_PORT_BASE = 8488
DEFAULT_DEBOUNCE_MS = 300


def _default_workspace() -> str:
    try:
        import getpass

        user = getpass.getuser()
    except Exception:  # no passwd entry (some containers)
        user = "sampan"
    return slugify(user) or "sampan"


def _num_env(name: str, default: float, kind: type) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SystemExit(f"Invalid value for {name}: {raw!r} is not a number.") from None
    if value < 0:
        raise SystemExit(f"Invalid value for {name}: {raw!r} must not be negative.")
    return value


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"Invalid value for {name}: {raw!r} is not an integer.") from None
    if not 0 <= value <= 65535:
        raise SystemExit(f"Invalid value for {name}: {value} is out of range.")
    return value


def parse_size(text: str) -> int:
    """A size in bytes, or with a unit (`500M`, `20G`, `1.5T`, `20GiB`); empty or 0: none."""
    text = (text or "").strip().upper().removesuffix("B").removesuffix("I")
    if not text:
        return 0
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        if text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise ValueError(f"Not a size: {text!r} (expected bytes, or a number with K, M, G or T)") from None


GIB = 1 << 30
WS_MAX_MESSAGE = 2 * 1024 * 1024  # the largest WebSocket message the gateway relays


@dataclass
class ProxyLimits:
    """The edge's limits. Defaults are Modal's where it documents one (fact sheet §5, §6)."""

    max_body: int = 4 * GIB  # request bodies up to 4 GiB
    head_timeout: float = 60.0  # a complete request head within this (also the keep-alive idle time)
    body_timeout: float = 60.0  # the longest pause while reading a request body
    redirect_after: float = 150.0  # then 303 to the result URL
    ws_max_message: int = WS_MAX_MESSAGE
    rate: float = 200.0  # requests per second per workspace
    burst_seconds: float = 5.0
    max_connections: int = 10_000  # open client connections, all ports together; beyond: 503 and close


@dataclass(frozen=True)
class Settings:
    home: Path
    workspace: str
    domain: str
    host: str
    gateway_port: int
    endpoint_port_base: int
    dev_suffix: str
    debounce_ms: int
    server_id: str
    images_dir: Path = Path()
    limits: ProxyLimits = field(default_factory=ProxyLimits)
    max_containers: int | None = 256  # live containers of the whole server (0 in the environment: no cap)
    max_containers_per_workspace: int | None = 128
    max_pools_per_function: int = 64  # class-parameter combinations live at once per function
    image_cache_max: int = 0  # bytes of image layers kept (0: no cap)
    image_builder: str = "rootfs"  # "venv": images are virtual environments even where root filesystems work
    backend: str = "local"  # where `sampan server` runs containers: local or ray
    ray_address: str = "auto"
    request_log: bool = True  # every request through the gateway recorded (server/requests.py)
    ephemeral_timeout: float = 30.0  # a `serve` session on the server whose CLI is silent this long is stopped
    # The control API: where it listens, the URL clients and containers are given (needed when it listens
    # on every address, e.g. for Ray nodes on other machines), and its TLS certificate and key (PEM).
    control_host: str = "127.0.0.1"
    control_url: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Whether image steps may read files of this machine (`copy=True` local files, Dockerfiles and their
    # COPY sources, requirements, pyproject, uv and Poetry projects): yes for a `serve` session's own
    # server; `sampan server start`, which builds for every workspace, says no (server/daemon.py).
    local_paths: bool = True

    def __post_init__(self) -> None:
        if self.images_dir == Path():
            object.__setattr__(self, "images_dir", self.home / "images")

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("SAMPAN_HOME") or Path.home() / ".sampan").expanduser()
        suffix = os.environ.get("SAMPAN_DEV_SUFFIX") or os.environ.get("MODAL_DEV_SUFFIX") or "dev"
        return cls(
            home=home,
            workspace=slugify(os.environ.get("SAMPAN_WORKSPACE") or _default_workspace()),
            domain=os.environ.get("SAMPAN_DOMAIN") or "localhost",
            host=os.environ.get("SAMPAN_HOST") or "127.0.0.1",
            gateway_port=_int_env("SAMPAN_GATEWAY_PORT", DEFAULT_GATEWAY_PORT),
            endpoint_port_base=_int_env("SAMPAN_ENDPOINT_PORT_BASE", DEFAULT_ENDPOINT_PORT_BASE),
            dev_suffix=validate_dev_suffix(suffix),
            debounce_ms=_int_env("SAMPAN_WATCH_DEBOUNCE_MS", DEFAULT_DEBOUNCE_MS),
            server_id=os.environ.get("SAMPAN_SERVER_ID") or os.urandom(6).hex(),
            images_dir=Path(os.environ.get("SAMPAN_IMAGES") or home / "images").expanduser(),
            max_containers=_int_env("SAMPAN_MAX_CONTAINERS", 256) or None,
            max_containers_per_workspace=_int_env("SAMPAN_MAX_CONTAINERS_PER_WORKSPACE", 128) or None,
            max_pools_per_function=_int_env("SAMPAN_MAX_POOLS_PER_FUNCTION", 64),
            image_cache_max=parse_size(os.environ.get("SAMPAN_IMAGE_CACHE_MAX", "")),
            image_builder=(os.environ.get("SAMPAN_IMAGE_BUILDER") or "rootfs").strip().lower(),
            backend=os.environ.get("SAMPAN_BACKEND") or "local",
            ray_address=os.environ.get("SAMPAN_RAY_ADDRESS") or "auto",
            ephemeral_timeout=_num_env("SAMPAN_EPHEMERAL_TIMEOUT_S", 30.0, float),
            request_log=os.environ.get("SAMPAN_REQUEST_LOG", "1") not in ("0", "false", "no"),
            control_host=os.environ.get("SAMPAN_CONTROL_HOST") or "127.0.0.1",
            control_url=(os.environ.get("SAMPAN_CONTROL_URL") or "").rstrip("/") or None,
            tls_cert=Path(os.environ["SAMPAN_TLS_CERT"]).expanduser() if os.environ.get("SAMPAN_TLS_CERT") else None,
            tls_key=Path(os.environ["SAMPAN_TLS_KEY"]).expanduser() if os.environ.get("SAMPAN_TLS_KEY") else None,
            limits=ProxyLimits(
                max_body=_num_env("SAMPAN_MAX_BODY_BYTES", ProxyLimits.max_body, int),
                redirect_after=_num_env("SAMPAN_REDIRECT_AFTER_S", ProxyLimits.redirect_after, float),
                rate=_num_env("SAMPAN_RATE_LIMIT", ProxyLimits.rate, float),
                burst_seconds=_num_env("SAMPAN_RATE_BURST_S", ProxyLimits.burst_seconds, float),
                head_timeout=_num_env("SAMPAN_HEAD_TIMEOUT_S", ProxyLimits.head_timeout, float),
                body_timeout=_num_env("SAMPAN_BODY_TIMEOUT_S", ProxyLimits.body_timeout, float),
                max_connections=_num_env("SAMPAN_MAX_CONNECTIONS", ProxyLimits.max_connections, int),
            ),
        )


# -- knobs read where they are used ---------------------------------------------------------------
# Read on each use (tests and the CLI set them per run), but only here, so this file lists them all.
def runtime_choice() -> str:
    """SAMPAN_RUNTIME: "sandbox", "process", or "" (sandbox where the machine can)."""
    return os.environ.get("SAMPAN_RUNTIME", "").strip().lower()


def container_uid(default: int) -> int:
    """SAMPAN_CONTAINER_UID: the host uid of container root on a root server."""
    return int(os.environ.get("SAMPAN_CONTAINER_UID") or default)


def fork_enabled() -> bool:
    """SAMPAN_FORK=0 turns fork templates off (every container is spawned)."""
    return os.environ.get("SAMPAN_FORK", "1") not in ("0", "false", "no")


def configured_gpus() -> str | None:
    """SAMPAN_GPUS: how many GPUs the local backend hands out (None: ask nvidia-smi)."""
    return os.environ.get("SAMPAN_GPUS")


def constraints_file() -> Path | None:
    """SAMPAN_CONSTRAINTS, or uv's own UV_CONSTRAINT: a pip constraints file for every image install."""
    configured = os.environ.get("SAMPAN_CONSTRAINTS") or os.environ.get("UV_CONSTRAINT")
    return Path(configured).expanduser().resolve() if configured else None


def build_ca_bundles() -> list[str]:
    """The CA bundles an image build may trust, best first: SAMPAN_BUILD_CA_BUNDLE, SSL_CERT_FILE."""
    return [p for p in (os.environ.get("SAMPAN_BUILD_CA_BUNDLE"), os.environ.get("SSL_CERT_FILE")) if p]


def ray_placement() -> str:
    """SAMPAN_RAY_PLACEMENT: "spread" (default) or "pack" containers over a Ray cluster's nodes."""
    return (os.environ.get("SAMPAN_RAY_PLACEMENT") or "spread").strip().lower()


def ray_volumes() -> str:
    """SAMPAN_RAY_VOLUMES: "sync" (default: Volumes reach nodes through the server) or "shared"."""
    return (os.environ.get("SAMPAN_RAY_VOLUMES") or "sync").strip().lower()


def bucket_endpoints_allowed() -> set[str]:
    """SAMPAN_BUCKET_ENDPOINTS_ALLOW: `host:port` bucket endpoints allowed on loopback or private networks."""
    return {e.strip() for e in os.environ.get("SAMPAN_BUCKET_ENDPOINTS_ALLOW", "").split(",") if e.strip()}


def otel_endpoint() -> str | None:
    """OTEL_EXPORTER_OTLP_ENDPOINT (OpenTelemetry's own variable): where request spans and container logs go."""
    return os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None


def server_local_paths() -> bool:
    """SAMPAN_SERVER_LOCAL_PATHS=1: a shared server's image builds may read its own files, for an operator
    whose every deploying client works on this machine and may read what the server can."""
    return os.environ.get("SAMPAN_SERVER_LOCAL_PATHS") == "1"


def force_build() -> bool:
    """MODAL_FORCE_BUILD=1 (Modal's variable): rebuild every image from its first step."""
    return os.environ.get("MODAL_FORCE_BUILD") == "1"


def private_home(home: Path) -> Path:
    """`$SAMPAN_HOME`, made if needed, readable by its owner alone (0700): it holds the store, the secret
    key, tokens, every workspace's Volumes and logs."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if home.stat().st_mode & 0o077:
        os.chmod(home, 0o700)
    return home


def config_path(settings: Settings) -> Path:
    return settings.home / "config.toml"


def read_token(settings: Settings) -> tuple[str, str] | None:
    """The API token the CLI uses: SAMPAN_TOKEN_ID/SAMPAN_TOKEN_SECRET, else $SAMPAN_HOME/config.toml."""
    token_id, secret = os.environ.get("SAMPAN_TOKEN_ID"), os.environ.get("SAMPAN_TOKEN_SECRET")
    if token_id and secret:
        return token_id, secret
    values = active_profile(settings)
    if values.get("token_id") and values.get("token_secret"):
        return str(values["token_id"]), str(values["token_secret"])
    return None


def active_profile(settings: Settings) -> dict[str, Any]:
    """The active profile of config.toml (sampan/profiles.py): SAMPAN_PROFILE/MODAL_PROFILE, else the one
    marked active, else `default`; {} when there is none."""
    try:
        text = config_path(settings).read_text()
    except OSError:
        return {}
    data = profiles.parse(text)
    name = profiles.active(data, os.environ.get("SAMPAN_PROFILE") or os.environ.get("MODAL_PROFILE") or None)
    return dict(data.get(name or "", {}))


def write_token_config(settings: Settings, store: Any, workspace: Any, force: bool = False) -> tuple[str, str]:
    """Give the local user a token on first start (kept in config.toml, mode 0600)."""
    existing = read_token(settings)
    if existing and not force and store.authenticate(*existing) is not None:
        return existing
    token_id, secret = store.create_token(workspace)
    path = config_path(settings)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f'[default]\nworkspace = "{workspace.name}"\ntoken_id = "{token_id}"\ntoken_secret = "{secret}"\n')
    return token_id, secret


class Config:
    """`modal.config.config`: Modal's settings, read as Modal reads them: `MODAL_<KEY>` from the
    environment, then the active profile of config.toml, then the default."""

    DEFAULTS: dict[str, Any] = {"loglevel": "WARNING", "log_format": "STRING", "server_url": None,
                                "environment": None, "dev_suffix": "", "force_build": False, "ignore_cache": False,
                                "build_validation": "error", "traceback": False, "image_builder_version": None,
                                "serve_timeout": None, "logs_timeout": 10.0, "payload_format": "pickle"}

    def get(self, key: str, *, profile: str | None = None, use_env: bool = True) -> Any:
        if use_env and f"MODAL_{key.upper()}" in os.environ:
            value: Any = os.environ[f"MODAL_{key.upper()}"]
            default = self.DEFAULTS.get(key)
            if isinstance(default, bool):
                return value.lower() in ("1", "true", "yes")
            return float(value) if isinstance(default, float) else value
        try:
            text = config_path(Settings.from_env()).read_text()
            data = profiles.parse(text)
            name = profiles.active(data, profile)
            if name is not None and key in data.get(name, {}):
                return data[name][key]
        except (OSError, ValueError):
            pass
        return self.DEFAULTS.get(key)

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def to_dict(self, include_internal: bool = False) -> dict[str, Any]:
        return {key: self.get(key) for key in self.DEFAULTS}

    def override_locally(self, key: str, value: str) -> None:
        os.environ[f"MODAL_{key.upper()}"] = value


config = Config()


def __getattr__(name: str) -> Any:
    """`modal.config.logger`, made on first use (logging stays out of `import modal`)."""
    if name == "logger":
        import logging

        return logging.getLogger("modal-client")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
