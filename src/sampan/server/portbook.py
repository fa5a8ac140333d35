"""Which port each subdomain had, kept in $SAMPAN_HOME/ports.json: a URL stays the same across runs."""

from __future__ import annotations

import json
from pathlib import Path


class PortBook:
    """Remembers which port each subdomain had, so a URL stays the same across runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.ports: dict[str, int] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.ports = {}

    def candidates(self, subdomain: str, base: int, taken: set[int]) -> list[int]:
        """The port this subdomain had before, then fresh ones (any free port when `base` is 0)."""
        known = self.ports.get(subdomain)
        first = [known] if known and known not in taken else []
        if base == 0:
            return [*first, 0]
        used = set(self.ports.values()) | taken
        return first + [p for p in range(base, min(base + 500, 65536)) if p not in used]

    def record(self, subdomain: str, port: int) -> None:
        if self.ports.get(subdomain) == port:
            return
        self.ports[subdomain] = port
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.ports, indent=1, sort_keys=True))
            tmp.replace(self.path)
        except OSError:
            pass
