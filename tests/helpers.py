"""Helpers for end-to-end tests: run `sampan serve` as a real process, wait for readiness, clean up.

Every server runs with its own SAMPAN_HOME, port 0 for every listener, and a marker variable
that its containers (and their children) inherit, so a test can prove that nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

# Images are content-addressed, so every test of a run can share them (and build each one once).
IMAGES_DIR = os.environ.get("SAMPAN_TEST_IMAGES") or os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"sampan-test-images-{os.getuid()}"
)
URL_LINE = re.compile(r"Created web function (\S+) => (http://\S+)")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def marker_pids(marker: str) -> list[int]:
    """Processes whose environment carries `marker` (containers and whatever they started)."""
    needles = {f"SAMPAN_SERVER_ID={marker}".encode(), f"SAMPAN_LABEL_SERVER={marker}".encode()}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needles & set(fh.read().split(b"\0")):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def kill_marked(marker: str) -> list[int]:
    pids = marker_pids(marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def gone_after_kill(marker: str, timeout: float = 10.0) -> list[int]:
    """Kill what carries `marker` until nothing does (a process killed while it forks leaves a child; one
    that is exiting takes a moment to unmount a container's root); returns what is left at `timeout`."""
    deadline = time.monotonic() + timeout
    while kill_marked(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return marker_pids(marker)


class Serve:
    """`sampan serve <ref>` in a subprocess, with its output captured line by line."""

    def __init__(self, ref: str, home: Path, cwd: Path | None = None, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, wrapper: list[str] | None = None) -> None:
        self.marker = uuid.uuid4().hex
        self.home = home
        full_env = dict(os.environ)
        full_env.update(
            {
                "SAMPAN_HOME": str(home),
                "SAMPAN_GATEWAY_PORT": "0",
                "SAMPAN_ENDPOINT_PORT_BASE": "0",
                "SAMPAN_WATCH_DEBOUNCE_MS": "150",
                "SAMPAN_SERVER_ID": self.marker,
                "SAMPAN_IMAGES": IMAGES_DIR,
                "SAMPAN_WORKSPACE": "tester",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": SRC + os.pathsep + full_env.get("PYTHONPATH", ""),
            }
        )
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [*(wrapper or []), sys.executable, "-m", "sampan", "serve", *(extra_args or []), ref],
            cwd=str(cwd) if cwd else None,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.urls: dict[str, str] = {}

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                match = URL_LINE.search(line)
                if match:
                    self.urls[match.group(1)] = match.group(2)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30.0, start: int = 0) -> int:
        """Wait until a line containing `text` appears (at or after line `start`); returns its index."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(self.lines)):
                    if text in self.lines[i]:
                        return i
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"serve exited ({self.proc.returncode}) before {text!r}:\n{self.output}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {text!r}:\n{self.output}")
                self._cond.wait(min(remaining, 0.5))

    def count(self, text: str) -> int:
        with self._cond:
            return sum(text in line for line in self.lines)

    def ready(self, timeout: float = 300.0) -> Serve:  # the first build of a run makes the Debian base
        self.wait_for("Serving...", timeout)
        return self

    def interrupt(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"serve did not stop within {timeout}s:\n{self.output}") from None
        self._reader.join(5)
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        kill_marked(self.marker)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.interrupt()
        finally:
            self.kill()


@contextlib.contextmanager
def serve(ref: str | Path, home: Path, **kwargs: object):
    s = Serve(str(ref), home, **kwargs)  # type: ignore[arg-type]
    try:
        s.ready()
        yield s
    finally:
        s.close()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port that is free now, for a server the test starts later (a `web_server` port, a registry).
    Not one from `bind(port 0)`: that is an ephemeral port, which any outgoing connection on the machine
    may take as its local port before the server binds it (it happened: "port … is already in use"). This
    one is below the kernel's ephemeral range, where only servers bind."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = list(range(10000, max(10001, low)))
    for port in random.sample(candidates, min(200, len(candidates))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
