"""The Ray backend: containers on the nodes of a Ray cluster, started by one agent per node.

    server                                     Ray node (any of the cluster)
    RayBackend.start(spec): choose a node ──►  NodeAgent (node_agent.py, one long-lived actor per node):
    (placement.py, the books kept here)        the code bundle from Ray's object store, the image built
                                               from its recipe, the container forked from the node's
                                               warm template, serving TCP on the node's address
    gateway ──HTTP──► (node address, port)

Placement: the function's `cpu=`, `memory=` and `gpu=` (requests; resources.py) must fit some node's
totals, or the start fails at once saying what the largest node has; then a node with room now is
chosen, `spread` (default) or `pack` (SAMPAN_RAY_PLACEMENT), and `region=`/`cloud=` keep to nodes
labelled so. The books are kept here, not by Ray: containers are the agents' children, not actors.
Nothing assumes a shared filesystem: code and images reach a node through Ray, Volumes through the
control API (node_agent.py). A node that dies takes its agent and containers with it: `wait()`
returns, the pool replaces the container elsewhere (a new agent is made for a node that comes back),
and the requests that were in flight there get Modal's "terminated" 500 from the gateway.

Ray is an optional dependency (`pip install "sampan[ray]"`); it is imported only here, and
`sampan` must be importable on the nodes (installed in the Python the cluster runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .. import config
from ..exception import InvalidError
from ..resources import Resources, choose
from . import placement
from .base import Backend, Container, ContainerSpec, ContainerStartError, LogSink
from .node_agent import VOLUME_MODES, NodeAgentImpl

# (recipe, images directory of the node) -> the built image (its .python and .env); from the server.
BuildImage = Callable[[list[dict[str, Any]], Path], Awaitable[Any]]

NODES_TTL_S = 1.0  # how long the list of live nodes is trusted before asking Ray again
WAIT_FOR_ROOM_S = 0.25
PREPARE_WAIT_S = 30.0


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ContainerStartError('The Ray backend needs Ray: pip install "sampan[ray]"') from None
    return ray


def read_root(root: Path) -> dict[str, bytes]:
    """The files of a container's root (code bundle and baked image files), to ship to a node."""
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


@dataclasses.dataclass
class Agent:
    """The server's handle on one node's agent."""
    node_id: str
    actor: Any
    info: dict[str, Any]
    pump: asyncio.Task[None] | None = None


class RayContainer(Container):
    def __init__(self, container_id: str, agent: Agent, address: tuple[str, int],
                 on_exit: Callable[[], None]) -> None:
        self.id = container_id
        self.agent = agent
        self.node_id = agent.node_id
        self.address = address
        self._on_exit = on_exit
        self._exit: asyncio.Task[int] = asyncio.create_task(self._wait())

    async def _wait(self) -> int:
        try:
            return int(await self.agent.actor.wait.remote(self.id))
        except Exception:  # noqa: BLE001 - the agent or its node died: the container is gone
            return -1
        finally:
            self._on_exit()

    @property
    def alive(self) -> bool:
        return not self._exit.done()

    async def stop(self, grace: float = 30.0) -> None:
        if self.alive:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.agent.actor.stop.remote(self.id, grace), grace + 5)
        if self.alive:
            self.kill()
        await self.wait()

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.agent.actor.kill.remote(self.id)

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when a `host:port` address does not answer (ray.init would
    retry for a long time); "auto" and `ray://` addresses are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ContainerStartError(f"Could not reach the Ray cluster at {address}: {exc.strerror or exc}. "
                                  "Start one with `ray start --head`, or pass the address it printed.") from None


class RayBackend(Backend):
    name = "ray"

    def __init__(self, address: str | None = None, home: Path | None = None, build_image: BuildImage | None = None,
                 placement_policy: str | None = None, volumes: str | None = None, **_: Any) -> None:
        self.address = address or "auto"
        self.build_image = build_image  # runs on a node: a module-level function, which Ray ships by reference
        self.policy = placement_policy or config.ray_placement()
        if self.policy not in placement.POLICIES:
            raise ContainerStartError(f"Unknown placement policy {self.policy!r}: use "
                                      f"{' or '.join(placement.POLICIES)} (SAMPAN_RAY_PLACEMENT).")
        self.volume_mode = volumes or config.ray_volumes()
        if self.volume_mode not in VOLUME_MODES:
            raise ContainerStartError(f"Unknown Volume mode {self.volume_mode!r}: use "
                                      f"{' or '.join(VOLUME_MODES)} (SAMPAN_RAY_VOLUMES).")
        self._agent_cls: Any = None
        self._roots: dict[str, tuple[str, Any]] = {}  # container root path -> (id, ObjectRef of its files)
        self._lock = threading.Lock()
        self._agents: dict[str, Agent] = {}
        self._agent_starts: dict[str, asyncio.Task[Agent]] = {}
        self._sinks: dict[str, LogSink] = {}
        self._used: dict[str, dict[str, float]] = {}  # node id -> what its containers asked for
        self._pools: dict[tuple[str, ...], dict[str, int]] = {}  # pool -> node id -> its containers there
        self._bare: set[str] = set()  # nodes whose agent runs containers without the sandbox
        self._nodes: tuple[float, list[placement.NodeInfo]] = (0.0, [])
        self._warming: asyncio.Task[None] | None = None

    def connect(self) -> None:
        """Join the cluster (blocking). Raises ContainerStartError with the reason when it cannot."""
        ray = _ray()
        with self._lock:  # starts run in threads at once; ray.init must happen once
            self._connect(ray)

    def _connect(self, ray: Any) -> None:
        if self._agent_cls is not None:
            return
        _probe(self.address)
        try:
            if not ray.is_initialized():
                ray.init(address=self.address, namespace="sampan", log_to_driver=False, logging_level="ERROR",
                         configure_logging=False)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds here; all mean "not reachable"
            raise ContainerStartError(f"Could not reach the Ray cluster at {self.address}: {exc}") from None
        self._agent_cls = ray.remote(NodeAgentImpl)

    def nodes(self) -> list[dict[str, float]]:
        return [dict(n.resources) for n in self.node_infos()]

    def node_infos(self, fresh: bool = False) -> list[placement.NodeInfo]:
        """The cluster's live nodes (asked of Ray at most every NODES_TTL_S)."""
        at, known = self._nodes
        if fresh or time.monotonic() - at > NODES_TTL_S:
            known = [placement.NodeInfo(n["NodeID"], dict(n.get("Resources") or {}), dict(n.get("Labels") or {}))
                     for n in _ray().nodes() if n.get("Alive")]
            self._nodes = (time.monotonic(), known)
        return known

    def _files(self, root: Path) -> tuple[str, Any]:
        key = str(root)
        if key not in self._roots:
            files = read_root(root)
            digest = hashlib.sha256()
            for rel in sorted(files):
                digest.update(rel.encode() + b"\0" + hashlib.sha256(files[rel]).digest())
            self._roots[key] = (digest.hexdigest()[:24], _ray().put(files))
        return self._roots[key]

    # -- agents -----------------------------------------------------------------------------------
    async def _agent(self, node_id: str) -> Agent:
        agent = self._agents.get(node_id)
        if agent is not None:
            return agent
        task = self._agent_starts.get(node_id)
        if task is None or task.done() and task.exception() is not None:
            task = asyncio.create_task(self._start_agent(node_id))
            self._agent_starts[node_id] = task
        return await asyncio.shield(task)

    async def _start_agent(self, node_id: str) -> Agent:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        actor = self._agent_cls.options(
            num_cpus=0, max_concurrency=10_000, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(self.volume_mode)
        try:
            info = await asyncio.wait_for(actor.describe.remote(), 120)
        except Exception as exc:  # noqa: BLE001 - the node cannot run an agent: no container goes there
            with contextlib.suppress(Exception):
                _ray().kill(actor)
            raise ContainerStartError(f"The agent of Ray node {node_id} did not start: {exc}") from None
        agent = Agent(node_id, actor, info)
        if not info.get("sandboxed"):
            self._bare.add(node_id)
        agent.pump = asyncio.create_task(self._pump(agent))
        self._agents[node_id] = agent
        return agent

    async def _pump(self, agent: Agent) -> None:
        """One long poll per node for every container's output; ends when the agent (node) is gone."""
        try:
            while True:
                for cid, stream, line in await agent.actor.logs.remote():
                    sink = self._sinks.get(cid)
                    if sink is not None:
                        sink(cid, stream, line)
        except Exception:  # noqa: BLE001 - the agent died with its node: a later start makes a new one
            pass
        finally:
            if self._agents.get(agent.node_id) is agent:
                del self._agents[agent.node_id]
                self._agent_starts.pop(agent.node_id, None)

    # -- starting a container --------------------------------------------------------------------
    def _choose(self, spec: ContainerSpec) -> tuple[dict[str, Any], Resources, list[placement.NodeInfo]]:
        resources = Resources.from_json(spec.entry.get("resources"))
        nodes = [n for n in self.node_infos() if placement.located(n, resources.regions, resources.cloud)]
        if not nodes:
            where = ", ".join(filter(None, ["region=" + " or ".join(resources.regions) if resources.regions
                                            else "", f"cloud={resources.cloud}" if resources.cloud else ""]))
            raise ContainerStartError(f"No node of the Ray cluster is labelled {where} (a node label or custom "
                                      "resource, e.g. `ray start --labels region=us-east`).")
        try:
            _, options = choose(resources, [dict(n.resources) for n in nodes])
        except InvalidError as exc:
            raise ContainerStartError(str(exc)) from None
        return options, resources, nodes

    def _avoid(self, spec: ContainerSpec, siblings: dict[str, int]) -> set[str]:
        """Nodes without the sandbox where a container of this web_server pool already listens on the
        node's own network (its port is taken there)."""
        if spec.entry.get("kind") != "web_server":
            return set()
        return {node for node, count in siblings.items() if count and node in self._bare}

    async def start(self, spec: ContainerSpec, log: LogSink) -> Container:
        # Off the event loop only what may block: joining the cluster, asking Ray for its nodes, reading a
        # root's files (each once, or once a second); a warm start makes no thread hop.
        if self._agent_cls is None:
            await asyncio.to_thread(self.connect)
        if time.monotonic() - self._nodes[0] > NODES_TTL_S:
            await asyncio.to_thread(self.node_infos)
        options, resources, _ = self._choose(spec)
        need = placement.demand(options)
        pool = (spec.env.get("SAMPAN_APP_KEY", ""), spec.labels.get("function", ""), repr(spec.class_params))
        siblings = self._pools.setdefault(pool, {})
        deadline = time.monotonic() + spec.startup_timeout
        while True:  # as a Ray actor would pend: wait for room on some node, up to the startup timeout
            nodes = self.node_infos() if time.monotonic() - self._nodes[0] <= NODES_TTL_S else \
                await asyncio.to_thread(self.node_infos)
            node_id = placement.place(options, nodes, self._used, self.policy, self._avoid(spec, siblings),
                                      resources.regions, resources.cloud, siblings)
            if node_id is not None:
                break
            if time.monotonic() > deadline:
                raise ContainerStartError(f"No node of the Ray cluster had room for a container with "
                                          f"{resources.describe()} within {spec.startup_timeout:g} s.")
            await asyncio.sleep(WAIT_FOR_ROOM_S)
        placement.add(self._used, node_id, need)
        siblings[node_id] = siblings.get(node_id, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                placement.add(self._used, node_id, need, -1)
                siblings[node_id] -= 1
                if not any(siblings.values()):
                    self._pools.pop(pool, None)
                self._sinks.pop(spec.container_id, None)

        try:
            agent = await self._agent(node_id)
            root = spec.workdir or spec.bundle_dir
            root_id, files = self._roots.get(str(root)) or await asyncio.to_thread(self._files, root)
            self._sinks[spec.container_id] = log
            address = await asyncio.wait_for(
                agent.actor.start.remote(self._fields(spec), [files], root_id, self.build_image,
                                         list(spec.volumes)),
                spec.startup_timeout + 60)
        except BaseException as exc:
            release()
            if isinstance(exc, (ContainerStartError, asyncio.CancelledError)):
                raise
            if isinstance(exc, asyncio.TimeoutError):
                raise ContainerStartError(f"The container did not start on Ray node {node_id} in time.") from None
            cause = getattr(exc, "cause", None) or exc
            text = str(cause).strip()
            raise ContainerStartError(text.splitlines()[-1] if text else type(cause).__name__) from None
        container = RayContainer(spec.container_id, agent, (address[0], int(address[1])), release)
        if len(address) > 2:  # the container's call line, on the same node address
            container.calls_address = (address[0], int(address[2]))
        return container

    @staticmethod
    def _fields(spec: ContainerSpec) -> dict[str, Any]:
        fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
        fields.update(bundle_dir=str(spec.bundle_dir), workdir=None)
        return fields

    async def prepare(self, specs: list[ContainerSpec]) -> None:
        """Every live node gets its agent, which warms a template per live pool's image and stops the
        rest, so that the first container of a pool on any node is a fork. Waited for up to
        PREPARE_WAIT_S (as the local backend waits for its templates); a node still building an image
        then goes on in the background rather than hold up a deploy."""
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
        self._warming = asyncio.create_task(self._prepare(specs))
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._warming), PREPARE_WAIT_S)

    async def _prepare(self, specs: list[ContainerSpec]) -> None:
        try:
            await asyncio.to_thread(self.connect)
            items = []
            for spec in specs:
                root_id, files = await asyncio.to_thread(self._files, spec.workdir or spec.bundle_dir)
                items.append((self._fields(spec), [files], root_id, self.build_image))
            nodes = await asyncio.to_thread(self.node_infos, True)
            agents = await asyncio.gather(*(self._agent(n.id) for n in nodes), return_exceptions=True)
            await asyncio.gather(*(agent.actor.prepare.remote(items) for agent in agents if isinstance(agent, Agent)),
                                 return_exceptions=True)
        except Exception:  # noqa: BLE001 - warming is an optimisation; a start reports what is wrong
            pass

    def describe_nodes(self) -> list[dict[str, Any]]:
        """The agents' nodes as the server sees them (for `server status` and the tests)."""
        return [{**agent.info, "used": dict(self._used.get(node, {}))} for node, agent in self._agents.items()]

    async def close(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
        for agent in list(self._agents.values()):
            if agent.pump is not None:
                agent.pump.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(agent.actor.close.remote(), 15)
            with contextlib.suppress(Exception):
                _ray().kill(agent.actor)
        self._agents.clear()
        if self._agent_cls is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(_ray().shutdown)
