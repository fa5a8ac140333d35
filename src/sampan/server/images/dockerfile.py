"""Dockerfile text into instructions, for `Image.dockerfile_commands` and `Image.from_dockerfile`. Pure.

Modal's builder implements most of the Dockerfile reference but not `ONBUILD`, `STOPSIGNAL` or
`VOLUME`, nor `${VAR:-default}` interpolation (fact sheet, modal-containers.md §2.0); neither does
this. Lines continue with a backslash, also one followed by spaces (Modal's own generated poetry
steps end `&& \\ `). `ARG`s are substituted from `build_args` or their default.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

from .recipe import ImageBuildError

INSTRUCTIONS = {"FROM", "RUN", "ENV", "WORKDIR", "COPY", "ADD", "ARG", "ENTRYPOINT", "CMD", "SHELL", "USER",
                "LABEL", "EXPOSE", "HEALTHCHECK", "MAINTAINER"}
REFUSED = {"ONBUILD", "STOPSIGNAL", "VOLUME"}
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    flags: dict[str, str] = field(default_factory=dict)
    line: int = 0

    def text(self) -> str:
        flags = " ".join(f"--{k}={v}" for k, v in self.flags.items())
        return " ".join(x for x in (self.keyword, flags, self.value) if x)


def logical_lines(lines: list[str]) -> list[tuple[int, str]]:
    """Join continued lines; drop comments and blank lines. Returns (first line number, text)."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if not buf:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            buf.append(stripped[:-1])
            continue
        buf.append(line)
        out.append((start, " ".join(part.strip() for part in buf if part.strip())))
        buf = []
    if buf:
        out.append((start, " ".join(part.strip() for part in buf if part.strip())))
    return out


def parse(lines: list[str]) -> list[Instruction]:
    """The instructions of Dockerfile `lines`. Raises ImageBuildError naming the line."""
    out: list[Instruction] = []
    for number, text in logical_lines(lines):
        keyword, _, rest = text.strip().partition(" ")
        keyword = keyword.upper()
        if keyword in REFUSED:
            raise ImageBuildError(f"Dockerfile line {number}: `{keyword}` is not supported (as on Modal).")
        if keyword not in INSTRUCTIONS:
            raise ImageBuildError(f"Dockerfile line {number}: unknown instruction {keyword!r}.")
        flags: dict[str, str] = {}
        rest = rest.strip()
        while keyword in ("FROM", "COPY", "ADD", "RUN") and rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        out.append(Instruction(keyword, rest, flags, number))
    return out


def substitute(value: str, variables: dict[str, str]) -> str:
    """`$NAME` and `${NAME}` from `variables`; unknown names become empty, as in Docker."""
    if "${" in value and re.search(r"\$\{[^}]*[:?+-]", value):
        raise ImageBuildError(f"Variable defaults such as {value!r} are not supported (as on Modal).")
    return _VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), ""), value)


def exec_form(value: str) -> list[str] | None:
    """A JSON array (`["a", "b"]`) as a list, else None (the shell form)."""
    if not value.startswith("["):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
        return parsed
    return None


def pairs(value: str) -> dict[str, str]:
    """`ENV`/`LABEL`/`ARG` values: `K=V K2="a b"`, or the legacy `K some value`."""
    if "=" not in value.split(" ", 1)[0]:
        key, _, rest = value.partition(" ")
        return {key: rest.strip()}
    out: dict[str, str] = {}
    for token in shlex.split(value, posix=True):
        key, sep, val = token.partition("=")
        out[key] = val if sep else ""
    return out


def copy_sources(value: str) -> tuple[list[str], str]:
    """`COPY a b dest` (or its JSON form) into sources and destination."""
    parts = exec_form(value) or shlex.split(value)
    if len(parts) < 2:
        raise ImageBuildError(f"COPY needs a source and a destination: {value!r}")
    for source in parts[:-1]:
        if source.startswith(("--", "$")):
            raise ImageBuildError(f"COPY source {source!r} is not supported.")
    return parts[:-1], parts[-1]


def split_from(instructions: list[Instruction]) -> tuple[str | None, list[Instruction]]:
    """The image a Dockerfile starts from and the rest. One stage only: a multi-stage Dockerfile (a
    second FROM, or `COPY --from`) is refused with a clear message."""
    froms = [i for i in instructions if i.keyword == "FROM"]
    if len(froms) > 1 or any(i.keyword == "COPY" and "from" in i.flags for i in instructions):
        raise ImageBuildError("Multi-stage Dockerfiles (several FROM, or COPY --from) are not supported.")
    if not froms:
        return None, instructions
    first = instructions.index(froms[0])
    if any(i.keyword != "ARG" for i in instructions[:first]):
        raise ImageBuildError("A Dockerfile must start with FROM (only ARG may come before it).")
    reference = froms[0].value.split()[0] if froms[0].value else ""
    return reference, instructions[:first] + instructions[first + 1:]
