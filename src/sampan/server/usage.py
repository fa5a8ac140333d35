"""CPU time and memory of a container: the sum over its process tree, read from /proc.

A container is a process (its supervisor, or the forked child of a template) and everything under it;
the kernel's per-process counters are summed over that tree. The parsers are pure; `tree_usage` is
the thin reader. A tree that vanishes while read counts what was read (containers end at any time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MAX_PROCESSES = 4096  # a fork bomb inside a container must not make the reader walk forever


@dataclass(frozen=True)
class Usage:
    cpu_s: float  # user + system time, the whole tree, since it started
    rss_bytes: int


def parse_stat_cpu_ticks(stat: str) -> int:
    """utime + stime from /proc/<pid>/stat (fields 14 and 15; the name in parentheses may hold spaces)."""
    rest = stat[stat.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])


def parse_statm_rss_pages(statm: str) -> int:
    return int(statm.split()[1])


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except (OSError, ValueError):
        pass
    return out


def tree_usage(pid: int) -> Usage | None:
    """The usage of `pid` and all its descendants; None when `pid` is gone."""
    ticks, pages, seen = 0, 0, 0
    todo = [pid]
    while todo and seen < MAX_PROCESSES:
        p = todo.pop()
        try:
            ticks += parse_stat_cpu_ticks(Path(f"/proc/{p}/stat").read_text())
            pages += parse_statm_rss_pages(Path(f"/proc/{p}/statm").read_text())
        except (OSError, ValueError, IndexError):
            if p == pid:
                return None
            continue
        seen += 1
        todo += _children(p)
    return Usage(ticks / os.sysconf("SC_CLK_TCK"), pages * os.sysconf("SC_PAGE_SIZE"))


def human_size(n: int | None) -> str:
    """Bytes as people read them: `512 B`, `1.5 MiB` (the CLI's image sizes, the dashboard's memory)."""
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
