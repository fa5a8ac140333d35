"""Calling functions through the Sampan server: `.remote()`, `.remote_gen()`, `.spawn()`, `.map()`.

The handles (`Function`, a class's bound methods, `Function.from_name`) name their target with a
`CallTarget`; this module pickles the arguments (cloudpickle, as Modal does), sends them to the
control API (`POST /v1/calls`, server/invoke.py) and turns the outcome back into a value or the
exception the function raised, with the container's traceback attached as a note.

Where the server is: SAMPAN_SERVER_URL with SAMPAN_SERVER_TOKEN (set in containers and for
`sampan run`), else the server found in $SAMPAN_HOME with the CLI's API token (sdk/lookup.py).
Nothing here runs at import time.
"""

from __future__ import annotations

import base64
import builtins
import contextvars
import enum
import itertools
import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import callwire
from ..api import default_client
from ..callcontext import current_call_id
from ..exception import (
    ExecutionError,
    FunctionTimeoutError,
    InputCancellation,
    InvalidError,
    OutputExpiredError,
    RemoteError,
)
from .logs import LogsManager

MAP_BATCH = 250  # inputs of one `.map` request (server/control/calls.py streams their outcomes back)
MAP_LANES = 4  # batches in flight at once; the server runs every input of them as its own call


@dataclass(frozen=True)
class Retries:
    """`retries=modal.Retries(...)`: how often and how patiently a failed call is tried again."""

    max_retries: int
    backoff_coefficient: float = 2.0
    initial_delay: float = 1.0
    max_delay: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.max_retries <= 10:
            raise InvalidError(
                f"Invalid retries number: {self.max_retries}. Function retries must be between 0 and 10."
            )
        if not 1.0 <= self.backoff_coefficient <= 10.0:
            raise InvalidError("Invalid backoff_coefficient: must be between 1.0 and 10.0.")
        if not 0.0 <= self.initial_delay <= 60.0 or not 1.0 <= self.max_delay <= 60.0:
            raise InvalidError("Invalid retry delays: initial_delay must be 0-60 s and max_delay 1-60 s.")


@dataclass(frozen=True)
class CallTarget:
    """What a call names: an app (by name, or by key for an ephemeral app), a function tag, class params."""

    app: str | None
    tag: str
    params: dict[str, Any] = field(default_factory=dict)
    app_key: str | None = None
    variant: dict[str, Any] = field(default_factory=dict)  # `.with_options(...)` and friends (sdk/variants.py)

    def body(self, args: tuple[Any, ...], kwargs: dict[str, Any], mode: str) -> dict[str, Any]:
        import cloudpickle

        params = {k: (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in self.params.items()}
        return {"app": self.app, "app_key": self.app_key, "function": self.tag, "params": params, "mode": mode,
                "args": base64.b64encode(cloudpickle.dumps((args, kwargs))).decode(),
                "parent": current_call_id(),  # inside a container: the input this call is made from
                "parent_function": os.environ.get("SAMPAN_LABEL_FUNCTION"),
                **({"variant": self.variant} if self.variant else {})}


def local_target(app: Any, tag: str, params: dict[str, Any] | None = None,
                 variant: dict[str, Any] | None = None) -> CallTarget:
    """The target of a handle defined in this process: inside a container or `sampan run`, the
    running app is named by its key (ephemeral apps have no deployed name)."""
    return CallTarget(getattr(app, "name", None), tag, dict(params or {}), os.environ.get("SAMPAN_APP_KEY"),
                      dict(variant or {}))


def decode(outcome: bytes) -> Any:
    """A call's outcome (server/invoke.py): its value, or raise what it raised."""
    marker, rest = outcome[:1], outcome[1:]
    if marker == callwire.VALUE or marker == callwire.ITEM:
        return pickle.loads(rest)
    if marker == callwire.FAILURE:
        exc, tb, text = pickle.loads(rest)
        note = "Traceback from the container:\n" + tb.rstrip()
        if exc is None:
            raise RemoteError(f"{text}\n{note}")
        if hasattr(exc, "add_note"):
            exc.add_note(note)
        else:  # Python 3.10: no notes; chain a RemoteError that carries the container's traceback
            raise exc from RemoteError(note)
        raise exc
    if marker == callwire.SERVER_FAILURE:
        kind, text = callwire.parse_server_failure(outcome)
        kinds: dict[str, type[BaseException]] = {"timeout": FunctionTimeoutError, "cancelled": InputCancellation}
        raise kinds.get(kind, ExecutionError)(text)
    raise RemoteError(f"unexpected outcome from the server ({marker!r})")


# -- the verbs ----------------------------------------------------------------------------------
def remote(target: CallTarget, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    answer = default_client().call("POST", "/v1/calls", target.body(args, kwargs, "call"), timeout=None)
    return decode(base64.b64decode(answer["result"]))


def remote_gen(target: CallTarget, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Any]:
    for event in default_client().stream_json("POST", "/v1/calls", target.body(args, kwargs, "gen")):
        frame = base64.b64decode(event["frame"])
        if frame[:1] == callwire.END:
            return
        yield decode(frame)


def spawn(target: CallTarget, args: tuple[Any, ...], kwargs: dict[str, Any]) -> FunctionCall:
    answer = default_client().call("POST", "/v1/calls", target.body(args, kwargs, "spawn"), timeout=None)
    return FunctionCall(answer["call_id"])


def map_calls(target: CallTarget, inputs: Iterable[tuple[tuple[Any, ...], dict[str, Any]]],
              order_outputs: bool = True, return_exceptions: bool = False) -> Iterator[Any]:
    """Run every input in parallel: batches of MAP_BATCH inputs, each one request whose outcomes stream
    back as they end, MAP_LANES batches at a time (the server runs each input as its own call, scaling
    and queueing the pool). Inputs are read lazily, a batch at a time; outputs come in input order, or
    as they end with `order_outputs=False`."""
    import queue
    import threading

    import cloudpickle

    numbered = enumerate(inputs)
    lock = threading.Lock()
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    stop = threading.Event()
    done = object()

    def lane() -> None:
        try:
            while not stop.is_set():
                with lock:
                    batch = list(itertools.islice(numbered, MAP_BATCH))
                if not batch:
                    return
                body = target.body((), {}, "map")
                del body["args"]
                body["inputs"] = [base64.b64encode(cloudpickle.dumps(item)).decode() for _, item in batch]
                for event in default_client().stream_json("POST", "/v1/calls", body, timeout=None):
                    results.put((batch[event["i"]][0], base64.b64decode(event["result"])))
        except BaseException as exc:  # noqa: BLE001 - the caller's thread raises it
            results.put((None, exc))
        finally:
            results.put((done, None))

    # Each lane carries the caller's context (inside a container: the input these calls are made from).
    lanes = [threading.Thread(target=contextvars.copy_context().run, args=(lane,), daemon=True,
                              name="sampan-map") for _ in range(MAP_LANES)]
    for thread in lanes:
        thread.start()

    def settle(outcome: bytes) -> Any:
        try:
            return decode(outcome)
        except Exception as exc:  # noqa: BLE001 - returned or re-raised, in order
            if return_exceptions:
                return exc
            raise

    pending: dict[int, bytes] = {}
    following, ended = 0, 0
    try:
        while ended < len(lanes):
            index, value = results.get()
            if index is done:
                ended += 1
            elif index is None:
                raise value
            elif not order_outputs:
                yield settle(value)
            else:
                pending[index] = value
                while following in pending:
                    yield settle(pending.pop(following))
                    following += 1
    finally:
        stop.set()


class _Verb:
    """`f.remote(...)` and `await f.remote.aio(...)`: one callable with an async twin."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    async def aio(self, *args: Any, **kwargs: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(self._fn, *args, **kwargs)


class CallMixin:
    """`.remote`, `.remote_gen`, `.spawn`, `.map`, `.starmap`, `.for_each`, `.spawn_map` for a handle
    that can say what it targets (`_call_target()`) and whether it is a web function."""

    def _call_target(self) -> CallTarget:
        raise NotImplementedError

    def _check_callable(self, verb: str) -> None:
        """Raise where this handle cannot be called remotely (web functions)."""

    @property
    def remote(self) -> _Verb:
        self._check_callable("remote")
        return _Verb(lambda *a, **k: remote(self._call_target(), a, k))

    @property
    def remote_gen(self) -> _Verb:
        self._check_callable("remote_gen")
        return _Verb(lambda *a, **k: remote_gen(self._call_target(), a, k))

    @property
    def spawn(self) -> _Verb:
        self._check_callable("spawn")
        return _Verb(lambda *a, **k: spawn(self._call_target(), a, k))

    def map(self, *iterables: Iterable[Any], kwargs: dict[str, Any] | None = None, order_outputs: bool = True,
            return_exceptions: bool = False, wrap_returned_exceptions: bool = True) -> Iterator[Any]:
        self._check_callable("map")
        inputs = ((args, dict(kwargs or {})) for args in zip(*iterables, strict=False))
        return map_calls(self._call_target(), inputs, order_outputs, return_exceptions)

    def starmap(self, input_iterator: Iterable[Iterable[Any]], *, kwargs: dict[str, Any] | None = None,
                order_outputs: bool = True, return_exceptions: bool = False,
                wrap_returned_exceptions: bool = True) -> Iterator[Any]:
        self._check_callable("starmap")
        inputs = ((tuple(args), dict(kwargs or {})) for args in input_iterator)
        return map_calls(self._call_target(), inputs, order_outputs, return_exceptions)

    def for_each(self, *iterables: Iterable[Any], kwargs: dict[str, Any] | None = None,
                 ignore_exceptions: bool = False) -> None:
        self._check_callable("for_each")
        for _ in self.map(*iterables, kwargs=kwargs, return_exceptions=ignore_exceptions):
            pass

    def spawn_map(self, *iterables: Iterable[Any], kwargs: dict[str, Any] | None = None) -> None:
        self._check_callable("spawn_map")
        for args in zip(*iterables, strict=False):
            spawn(self._call_target(), args, dict(kwargs or {}))


@dataclass(frozen=True)
class FunctionAutoscalerSettings:
    min_containers: int | None = None
    max_containers: int | None = None
    buffer_containers: int | None = None
    scaledown_window: int | None = None


class AutoscalerMixin:
    """`update_autoscaler` and `autoscaler` of a deployed function (a handle or a `from_name` lookup)."""

    def update_autoscaler(self, *, min_containers: int | None = None, max_containers: int | None = None,
                          buffer_containers: int | None = None, scaledown_window: int | None = None
                          ) -> FunctionAutoscalerSettings:
        """Override the function's autoscaler until its next deploy; None keeps a setting."""
        target: CallTarget = self._call_target()  # type: ignore[attr-defined]
        if "." in target.tag:
            raise InvalidError("Cannot call .update_autoscaler() on a method. Call it on the class instance instead.")
        return self._update(min_containers=min_containers, max_containers=max_containers,
                            buffer_containers=buffer_containers, scaledown_window=scaledown_window)

    def _update(self, **settings: Any) -> FunctionAutoscalerSettings:
        target: CallTarget = self._call_target()  # type: ignore[attr-defined]
        body = {"app": target.app, "app_key": target.app_key, "function": target.tag,
                "settings": {k: v for k, v in settings.items() if v is not None}}
        return FunctionAutoscalerSettings(**default_client().post("/v1/autoscaler", body))

    @property
    def autoscaler(self) -> _Autoscaler:
        """`f.autoscaler.settings()` and `f.autoscaler.update(...)` (Modal 1.6)."""
        return _Autoscaler(self)


class _Autoscaler:
    def __init__(self, function: AutoscalerMixin) -> None:
        self.function = function

    def settings(self) -> FunctionAutoscalerSettings:
        return self.function.update_autoscaler()

    def update(self, **settings: Any) -> FunctionAutoscalerSettings:
        return self.function.update_autoscaler(**settings)


class FunctionCall:
    """A spawned call: `.get(timeout=)` its result, `.cancel()` it. `FunctionCall.from_id(id)` finds it
    again, from any process that reaches the same server."""

    def __init__(self, object_id: str) -> None:
        self.object_id = object_id

    def __repr__(self) -> str:
        return f"FunctionCall({self.object_id!r})"

    @staticmethod
    def from_id(function_call_id: str, client: Any = None) -> FunctionCall:
        return FunctionCall(function_call_id)

    def _state(self, timeout: float | None) -> dict[str, Any]:
        query = "none" if timeout is None else f"{max(0.0, timeout):g}"
        return default_client().get(f"/v1/calls/{self.object_id}?timeout={query}",
                                    timeout=None if timeout is None else timeout + 30)

    def get(self, timeout: float | None = None) -> Any:
        """The call's result; raises the built-in TimeoutError if it is still running after `timeout` s."""
        state = self._state(timeout)
        if state.get("expired"):
            raise OutputExpiredError(f"The result of {self.object_id} has expired.")
        if state["result"] is None:
            raise builtins.TimeoutError(f"{self.object_id} is still running")
        return decode(base64.b64decode(state["result"]))

    def cancel(self, terminate_containers: bool = False) -> None:
        default_client().post(f"/v1/calls/{self.object_id}/cancel")

    def num_inputs(self) -> int:
        return 1  # a `.spawn()`: one input

    @property
    def logs(self) -> LogsManager:
        """`call.logs.fetch(since=)`, `.tail()`, `.stream()`: what its containers printed while running it."""
        return LogsManager(None, object_id=self.object_id, call_id=self.object_id)

    @staticmethod
    def gather(*function_calls: FunctionCall) -> list[Any]:
        """Wait for every call; their results in argument order. The first failure is raised."""
        return [call.get() for call in function_calls]

    def get_call_graph(self) -> list[InputInfo]:
        """The tree this call belongs to, from its root: the input made from outside (a web request, a
        local client's call), whose children are the calls made while it ran, and so on down, with
        their status. As on Modal, a call spawned by a web handler is `graph[0].children[0]`."""

        def info(node: dict[str, Any]) -> InputInfo:
            return InputInfo(node.get("input_id", ""), node["function_call_id"], "", InputStatus[node["status"]],
                             node["function"], "", [info(c) for c in node["children"]])

        return [info(self._state(0)["graph"])]


class InputStatus(enum.IntEnum):
    """The states of an input, as Modal's call graph reports them."""

    PENDING = 0
    SUCCESS = 1
    FAILURE = 2
    TERMINATED = 3
    TIMEOUT = 4
    INIT_FAILURE = 5

    @classmethod
    def _missing_(cls, value: object) -> InputStatus:
        return cls.PENDING


@dataclass
class InputInfo:
    """One input of a call graph, with Modal's fields (`task_id`, `module_name`: not tracked here, empty)."""

    input_id: str
    function_call_id: str
    task_id: str
    status: InputStatus
    function_name: str
    module_name: str
    children: list[InputInfo]
