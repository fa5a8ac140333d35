"""`modal.Secret`: environment variables injected into containers.

Inline secrets (`from_dict`, `from_dotenv`, `from_local_environ`) are resolved when the app is
loaded; named secrets (`from_name`) are looked up by the server when the app is published.
Values never appear in a repr.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exception import InvalidError


@dataclass(frozen=True)
class Secret:
    name: str | None = None
    values: dict[str, str] = field(default_factory=dict, repr=False)
    required_keys: tuple[str, ...] = ()
    environment_name: str | None = None

    def __repr__(self) -> str:
        if self.name is not None:
            return f"Secret.from_name({self.name!r})"
        return f"Secret(<{len(self.values)} keys>)"

    @staticmethod
    def from_name(name: str, *, environment_name: str | None = None, required_keys: list[str] | None = None,
                  client: Any = None) -> Secret:
        if not isinstance(name, str) or not name:
            raise InvalidError(f"Invalid Secret name: {name!r}.")
        return Secret(name=name, required_keys=tuple(required_keys or ()), environment_name=environment_name)

    @staticmethod
    def from_dict(env_dict: dict[str, str | None] | None = None) -> Secret:
        env_dict = env_dict or {}
        if not isinstance(env_dict, dict):
            raise InvalidError("Secret.from_dict expects a dict[str, str].")
        values: dict[str, str] = {}
        for k, v in env_dict.items():
            if v is None:
                continue
            if not isinstance(k, str) or not isinstance(v, str):
                raise InvalidError("Secret.from_dict expects a dict[str, str]: every key and value must be a str.")
            values[k] = v
        return Secret(values=values)

    @staticmethod
    def from_local_environ(env_keys: list[str]) -> Secret:
        missing = [k for k in env_keys if k not in os.environ]
        if missing:
            raise InvalidError(f"Environment variables {', '.join(missing)} not found in the local environment.")
        return Secret(values={k: os.environ[k] for k in env_keys})

    @staticmethod
    def from_dotenv(path: str | Path | None = None, *, filename: str = ".env", client: Any = None) -> Secret:
        found = _find_dotenv(Path(path) if path is not None else Path.cwd(), filename)
        return Secret(values=_parse_dotenv(found) if found else {})


def _find_dotenv(start: Path, filename: str) -> Path | None:
    start = start if start.is_dir() else start.parent
    for directory in [start, *start.resolve().parents]:
        candidate = directory / filename
        if candidate.is_file():
            return candidate
    return None


def _parse_dotenv(path: Path) -> dict[str, str]:
    """A small `.env` reader: KEY=VALUE lines, `export` prefix, quotes, comments; missing values → ''."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not key:
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value if sep else ""
    return values
