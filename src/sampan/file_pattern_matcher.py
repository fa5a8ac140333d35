"""`modal.FilePatternMatcher`: `.dockerignore` patterns, the `ignore=` of `Image.add_local_dir`. Pure.

Rules (as Modal's port of moby/patternmatcher): a pattern is stripped of surrounding `/` and
normalised; `*` and `?` do not cross `/`, `**` does; a pattern that matches a directory matches
everything under it; `!pattern` re-includes, and the last pattern that matches decides; `.` is never
excluded. The matcher is called with a path relative to the directory being added.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path


def _regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern[i:i + 2] == "**":
                i += 2
                if pattern[i:i + 1] == "/":  # `**/` also matches nothing at all
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end].replace("\\", "\\\\")
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


class FilePatternMatcher:
    """`FilePatternMatcher("*.pyc", "!keep.pyc")(Path("x.pyc")) -> True` (excluded)."""

    def __init__(self, *pattern: str) -> None:
        self._source: str | None = None
        self._patterns: list[tuple[bool, str, re.Pattern[str]]] | None = None
        self._raw = list(pattern)
        self._inverted = False
        if pattern:
            self._compile()

    @classmethod
    def from_file(cls, file_path: str | Path) -> FilePatternMatcher:
        """Patterns from a file (one per line, `#` comments), read lazily on first use."""
        matcher = cls()
        matcher._source = str(file_path)
        matcher._patterns = None
        return matcher

    def _compile(self) -> list[tuple[bool, str, re.Pattern[str]]]:
        if self._patterns is None or self._source is not None and not self._raw:
            if self._source is not None:
                text = Path(self._source).read_text()
                self._raw = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
                self._source = None
            compiled = []
            for raw in self._raw:
                exclusion = raw.startswith("!")
                body = raw[1:].strip() if exclusion else raw.strip()
                if exclusion and not body:
                    raise ValueError('Illegal exclusion pattern: "!"')
                body = os.path.normpath(body.strip("/")) if body.strip("/") else "."
                compiled.append((exclusion, body, _regex(body)))
            self._patterns = compiled
        return self._patterns

    def _matches(self, path: str) -> bool:
        path = os.path.normpath(str(path)).lstrip("/")
        if path in (".", ""):
            return False
        parts = path.split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        matched = False
        for exclusion, _body, regex in self._compile():
            if any(regex.match(c) for c in candidates):
                matched = not exclusion
        return matched

    def __call__(self, file_path: str | Path) -> bool:
        result = self._matches(str(file_path))
        return not result if self._inverted else result

    def __invert__(self) -> FilePatternMatcher:
        other = FilePatternMatcher()
        other._raw, other._source, other._patterns = self._raw, self._source, self._patterns
        other._inverted = not self._inverted
        return other

    def can_prune_directories(self) -> bool:
        """A directory that matches can be skipped whole only when no pattern re-includes something."""
        return not self._inverted and not any(exclusion for exclusion, _, _ in self._compile())


def as_matcher(ignore: Sequence[str] | Callable[[Path], bool] | None) -> Callable[[Path], bool] | None:
    """`ignore=` as Modal takes it: patterns, or a callable given paths relative to the directory."""
    if ignore is None or (not callable(ignore) and not list(ignore)):
        return None
    if callable(ignore):
        return ignore
    return FilePatternMatcher(*ignore)


def excluded_files(root: Path, ignore: Callable[[Path], bool]) -> list[str]:
    """The files under `root` that `ignore` excludes, relative to it (how a callable travels in a recipe)."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            rel = Path(os.path.relpath(os.path.join(dirpath, name), root))
            if ignore(rel):
                out.append(str(rel))
    return sorted(out)


def recipe_ignore(ignore: Sequence[str] | Callable[[Path], bool] | None, root: Path) -> dict[str, list[str]]:
    """How an `ignore=` travels in a recipe (JSON): patterns as they are; a callable as the files it
    excludes under `root`, decided where the script runs, as Modal's client decides."""
    if ignore is None or (not callable(ignore) and not list(ignore)):
        return {}
    if callable(ignore) and not isinstance(ignore, FilePatternMatcher):
        return {"ignore_files": excluded_files(root, ignore) if root.is_dir() else []}
    if isinstance(ignore, FilePatternMatcher):
        return {"ignore_files": excluded_files(root, ignore) if root.is_dir() else []}
    for pattern in ignore:
        if pattern.strip() == "!":
            raise ValueError('Illegal exclusion pattern: "!"')
    return {"ignore": [str(p) for p in ignore]}


def from_recipe(args: dict[str, object]) -> Callable[[Path], bool] | None:
    """The exclusion rule of an `add_local_dir` step (recipe_ignore's inverse); None: nothing ignored."""
    if args.get("ignore"):
        return FilePatternMatcher(*list(args["ignore"]))  # type: ignore[call-overload]
    if args.get("ignore_files"):
        files = set(args["ignore_files"])  # type: ignore[call-overload]
        return lambda rel: str(rel) in files
    return None


NON_PYTHON_FILES = ~FilePatternMatcher("**/*.py")

__all__ = ["FilePatternMatcher", "NON_PYTHON_FILES"]
