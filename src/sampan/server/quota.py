"""Caps on live containers: per workspace and for the whole server.

Without them, one anonymous client could start a container per class-parameter value until the
machine gave out. A pool asks before each start; past a cap the start waits, as it would at
`max_containers` (requests queue, then the pending-input limit answers 429), and every pool that
waited is woken when any container of the server goes away. So that idle containers do not hold the
caps forever (they live for their `scaledown_window`), a pool that must wait asks the others to stop
one idle container: of its own workspace at the workspace's cap, of any at the server's. Pure
bookkeeping, no I/O: pools register a callback that stops one of their idle containers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ContainerQuota:
    per_workspace: int | None = None  # live containers of one workspace (None: no cap)
    total: int | None = None  # live containers of the whole server
    live: Counter[str] = field(default_factory=Counter)
    _waiting: dict[int, tuple[str, Callable[[], None]]] = field(default_factory=dict)
    _idle: dict[int, tuple[str, Callable[[], bool]]] = field(default_factory=dict)

    def register(self, key: int, workspace: str, stop_one_idle: Callable[[], bool]) -> None:
        """A pool that can give an idle container back (`stop_one_idle` returns whether it did)."""
        self._idle[key] = (workspace, stop_one_idle)

    def unregister(self, key: int) -> None:
        self._idle.pop(key, None)

    def reclaim(self, workspace: str, asking: int) -> bool:
        """Stop one idle container of another pool: of `workspace` when it is at its own cap, else of
        any workspace. Returns whether one was stopped (its `give_back` wakes the waiters)."""
        at_workspace_cap = self.per_workspace is not None and self.live[workspace] >= self.per_workspace
        for key, (owner, stop_one_idle) in list(self._idle.items()):
            if key == asking or (at_workspace_cap and owner != workspace):
                continue
            if stop_one_idle():
                return True
        return False

    def take(self, workspace: str) -> bool:
        """Count a container about to start, if the caps allow one more."""
        if self.total is not None and sum(self.live.values()) >= self.total:
            return False
        if self.per_workspace is not None and self.live[workspace] >= self.per_workspace:
            return False
        self.live[workspace] += 1
        return True

    def give_back(self, workspace: str) -> None:
        """A container counted by `take` is gone: wake whatever waited for room."""
        if self.live[workspace] > 0:
            self.live[workspace] -= 1
        waiting, self._waiting = self._waiting, {}
        for _, wake in waiting.values():
            wake()

    def wait(self, wake: Callable[[], None], workspace: str = "") -> None:
        """Call `wake` (once) when a container goes away."""
        self._waiting[id(wake.__self__) if hasattr(wake, "__self__") else id(wake)] = (workspace, wake)

    def wants_room(self, workspace: str, offering: int) -> bool:
        """Whether a pool other than `offering` waits for room that an idle container of `workspace`
        would make: one of the same workspace, or any, when only the server's cap binds it."""
        for key, (waiting_ws, _) in self._waiting.items():
            if key == offering:
                continue
            own_cap = self.per_workspace is not None and self.live[waiting_ws] >= self.per_workspace
            if waiting_ws == workspace or not own_cap:
                return True
        return False
