"""`modal.SchedulerPlacement`: where Modal places containers (regions, zones, spot). Accepted; a
self-hosted server places them on its own machine (or its Ray cluster)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SchedulerPlacement:
    region: str | Sequence[str] | None = None
    zone: str | None = None
    spot: bool | None = None
    instance_type: str | Sequence[str] | None = None


__all__ = ["SchedulerPlacement"]
