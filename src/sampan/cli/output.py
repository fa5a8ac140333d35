"""What the CLI prints: Modal's habits (a tree of created objects, ✓ marks), with rich.

Container log lines are printed plainly with a short prefix (`square ta-1a2b3c │ ...`): they can
be many, and a plain write keeps them cheap and greppable.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from types import SimpleNamespace
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.tree import Tree

from ..server.endpoints import EndpointInfo
from ..server.images.service import BuildHooks

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_table(table: Any) -> None:
    """A table whose IDs and names are never cut: on a terminal it fits the screen (long cells fold onto
    the next line); piped to another program it is as wide as its content."""
    for column in table.columns:
        column.overflow = "fold"
    if console.is_terminal:
        console.print(table)
    else:  # Rich never renders wider than its console: a console as wide as any table needs
        Console(highlight=False, width=100_000, file=console.file, color_system=None).print(table)


def created_tree(infos: Iterable[EndpointInfo], other_functions: Iterable[str]) -> Tree:
    tree = Tree("[green]✓[/green] Created objects.", guide_style="dim")
    for info in infos:
        marks = ""
        if info.requires_proxy_auth:
            marks += " 🔑"
        if info.truncated:
            marks += " (label truncated)"
        tree.add(f"🔨 Created web function {info.tag} => [link={info.url}]{info.url}[/link]{marks}")
    for tag in other_functions:
        tree.add(f"🔨 Created function {tag}.")
    return tree


def print_created_dicts(infos: list[dict], other_functions: Iterable[str]) -> None:
    """The same tree from the control API's JSON."""
    print_created([EndpointInfo(i["tag"], "", i["url"], i.get("host_url", ""), "", i.get("truncated", False),
                                i.get("requires_proxy_auth", False)) for i in infos], other_functions)


def print_created(infos: list[EndpointInfo], other_functions: Iterable[str]) -> None:
    console.print(created_tree(infos, other_functions))


@contextlib.contextmanager
def transfer(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar of bytes moved (`advance(n)` after each piece), on stderr and only on a terminal:
    piped or redirected output stays clean."""
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True,
                  disable=not err_console.is_terminal) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def print_notes(notes: Iterable[str]) -> None:
    for note in notes:
        console.print(f"[yellow]⚠[/yellow] {note}")


class BuildDisplay:
    """While images build: a spinner naming the current step, the installer's output dimmed above it,
    and `Built image im-<id> in N s` for each image that was not already built."""

    def __init__(self) -> None:
        self._status = None

    def __enter__(self) -> BuildDisplay:
        self._wait("Publishing: starting containers...")
        return self

    def _wait(self, text: str) -> None:
        """A spinner while nothing is printed (transient: it leaves no line; nothing when not a terminal)."""
        if self._status is None:
            self._status = console.status(text, spinner="dots")
            self._status.start()
        else:
            self._status.update(text)

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def hooks(self) -> BuildHooks:
        return BuildHooks(progress=self._progress, log=self._log, built=self._built)

    def follow(self, events: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
        """Show a deploy's NDJSON events (server/control/apps.py) as they come; its result, or None
        when the stream ended without one. A build or publish error raises, with the server's text."""
        for event in events:
            if "progress" in event:
                self._progress(event["progress"])
            elif "log" in event:
                self._log(event["log"])
            elif "built" in event:
                self._built(SimpleNamespace(**event["built"]))
            elif "error" in event:
                raise click.ClickException(event["error"])
            elif "result" in event:
                return dict(event["result"])
        return None

    def _progress(self, step: str) -> None:
        # Each step stays on screen (as Modal prints `=> Step 2/5: RUN ...`); the spinner says which runs.
        if step.startswith("Building image "):
            console.print(escape(step))
        else:
            console.print(f"[bold]=>[/bold] {escape(step)}")
        self._wait(f"Building image: {step}")

    def _log(self, line: str) -> None:
        console.print(f"  [dim]│ {escape(line)}[/dim]")

    def _built(self, image) -> None:  # noqa: ANN001 - a BuiltImage
        if not image.cached:
            console.print(f"[green]✓[/green] Built image {image.id} in {image.seconds:.1f} s")
        self._wait("Publishing: starting containers...")


class LogPrinter:
    """Prints container output with a prefix naming the function and container."""

    def __init__(self, timestamps: bool = False) -> None:
        self.timestamps = timestamps
        self.color = sys.stdout.isatty()

    def __call__(self, tag: str, container_id: str, stream: str, line: str) -> None:
        prefix = f"{tag} {container_id}"
        if self.timestamps:
            prefix = time.strftime("%H:%M:%S ") + prefix
        if self.color:
            style = "\x1b[2m" if stream != "stderr" else "\x1b[2;31m"
            text = f"{style}{prefix} │\x1b[0m {line}\n"
        else:
            text = f"{prefix} │ {line}\n"
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass
