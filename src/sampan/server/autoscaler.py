"""Autoscaling decisions for one pool of containers. Pure: observations and a time in, decisions out.

Every rule that changes a container count lives in this file:

1. Demand is the inputs running plus the inputs waiting: `demand = sum(in_flight) + queued`.
2. Containers needed for the demand: `ceil(demand / target_inputs)`. `target_inputs` defaults
   to `max_inputs`; a container may still take up to `max_inputs` while others start.
3. While the pool is active (demand > 0) it keeps `buffer_containers` more.
4. Never fewer than `min_containers`, never more than `max_containers` (requests beyond queue).
5. Start the difference between needed and live (ready + starting) containers.
6. Stop a ready container only when it is idle (no input in flight), has been idle for
   `scaledown_window` seconds, and live containers exceed what is needed: one by one, longest
   idle first, so a pool never drops below `min_containers`.
7. After a container fails to start, the pool starts no other for `start_backoff(failures)`
   seconds (0.5 s doubling to 30 s); requests meanwhile fail fast with the same error. A
   crash-looping app must not turn every request into a new process.

The I/O shell (`pool.py`) calls `decide()` when a request finds no free slot, when an input
finishes, when a container becomes ready or dies, and at `next_check`; it carries the decision out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

STARTING = "starting"
READY = "ready"


@dataclass(frozen=True)
class PoolConfig:
    max_inputs: int = 1
    target_inputs: int | None = None
    min_containers: int = 0
    max_containers: int | None = None
    buffer_containers: int = 0
    scaledown_window: float = 60.0

    @property
    def target(self) -> int:
        target = self.target_inputs or self.max_inputs
        return max(1, min(target, self.max_inputs))


@dataclass(frozen=True)
class ContainerView:
    id: str
    state: str  # STARTING or READY
    in_flight: int = 0
    idle_since: float | None = None  # when in_flight last dropped to 0 (or the container became ready)


@dataclass(frozen=True)
class Decision:
    start: int = 0
    stop: tuple[str, ...] = ()
    next_check: float | None = None  # when to call decide() again if nothing else happens


def needed_containers(config: PoolConfig, demand: int) -> int:
    """Rules 2-4."""
    needed = math.ceil(demand / config.target) if demand > 0 else 0
    if demand > 0:
        needed += config.buffer_containers
    needed = max(needed, config.min_containers)
    if config.max_containers is not None:
        needed = min(needed, config.max_containers)
    return needed


def decide(config: PoolConfig, containers: list[ContainerView], queued: int, now: float) -> Decision:
    """Rules 1-6."""
    demand = sum(c.in_flight for c in containers) + queued
    needed = needed_containers(config, demand)
    live = len(containers)
    start = max(0, needed - live)

    idle = sorted(
        (c for c in containers if c.state == READY and c.in_flight == 0 and c.idle_since is not None),
        key=lambda c: c.idle_since or 0.0,
    )
    surplus = live - needed
    stop: list[str] = []
    next_check: float | None = None
    for c in idle:
        expires = (c.idle_since or 0.0) + config.scaledown_window
        if len(stop) < surplus and expires <= now:
            stop.append(c.id)
        elif len(stop) < surplus:
            next_check = expires if next_check is None else min(next_check, expires)
    return Decision(start=start, stop=tuple(stop), next_check=next_check)


BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0


def start_backoff(failures: int) -> float:
    """Rule 7: seconds to wait before the next start after `failures` failed starts in a row."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (failures - 1))


def override(config: PoolConfig, *, min_containers: int | None = None, max_containers: int | None = None,
             buffer_containers: int | None = None, scaledown_window: float | None = None,
             target_inputs: int | None = None) -> PoolConfig:
    """`Function.update_autoscaler(...)`: the given settings replace the deployed ones (None keeps one),
    checked with Modal's texts. Raises ValueError."""
    def count(name: str, value: Any, positive: bool = False) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if positive else 0):
            kind = "a postive integer" if positive else "a nonnegative integer"  # sic, as Modal spells it
            raise ValueError(f"Invalid argument: `{name}` must be {kind} or `None`.")

    count("min_containers", min_containers)
    count("max_containers", max_containers, positive=True)
    count("buffer_containers", buffer_containers)
    count("target_inputs", target_inputs, positive=True)  # a Server's `target_concurrency`
    if scaledown_window is not None and (isinstance(scaledown_window, bool) or
                                         not isinstance(scaledown_window, (int, float))
                                         or not 2 <= scaledown_window <= 3600):
        raise ValueError("Invalid argument: `scaledown_window` must be between 2 and 3600 (inclusive)")
    changes: dict[str, Any] = {k: v for k, v in (("min_containers", min_containers),
                                                 ("max_containers", max_containers),
                                                 ("buffer_containers", buffer_containers),
                                                 ("scaledown_window", scaledown_window),
                                                 ("target_inputs", target_inputs)) if v is not None}
    updated = replace(config, **changes)
    if updated.max_containers is not None and updated.min_containers > updated.max_containers:
        raise ValueError(f"`min_containers` ({updated.min_containers}) cannot be greater than `max_containers` "
                         f"({updated.max_containers})")
    return updated


def describe(config: PoolConfig) -> dict[str, Any]:
    """What `Function.autoscaler.settings()` reports (Modal's FunctionAutoscalerSettings)."""
    return {"min_containers": config.min_containers, "max_containers": config.max_containers,
            "buffer_containers": config.buffer_containers, "scaledown_window": int(config.scaledown_window)}
