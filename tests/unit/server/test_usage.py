"""A container's CPU time and memory: /proc's counters summed over its process tree."""

from __future__ import annotations

import os
import subprocess
import sys

from sampan.server.usage import parse_stat_cpu_ticks, parse_statm_rss_pages, tree_usage


def test_the_stat_line_is_read_past_a_name_with_spaces_and_parentheses() -> None:
    stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12 1000 200"
    assert parse_stat_cpu_ticks(stat) == 300
    assert parse_statm_rss_pages("1000 256 100 1 0 300 0") == 256


def test_a_tree_counts_its_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(64 << 20); time.sleep(30)"])
    try:
        for _ in range(200):
            alone = tree_usage(child.pid)
            if alone is not None and alone.rss_bytes > 64 << 20:
                break
            os.sched_yield()
            subprocess.run(["sleep", "0.02"])
        mine = tree_usage(os.getpid())
        assert alone is not None and mine is not None
        assert alone.rss_bytes > 64 << 20 and mine.rss_bytes > alone.rss_bytes and mine.cpu_s > 0
    finally:
        child.kill()
        child.wait()
    assert tree_usage(child.pid) is None
