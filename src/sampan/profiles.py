"""Profiles in `$SAMPAN_HOME/config.toml`, as in Modal's `~/.modal.toml`: one table per profile (a
workspace's token, and optionally the server it lives on), one of them `active = true`. Pure: text in,
text out; config.py reads the file.

    [default]
    workspace = "alice"
    token_id = "tk-..."
    token_secret = "..."
    active = true

    [staging]
    workspace = "alice"
    token_id = "tk-..."
    token_secret = "..."
    server_url = "http://10.0.0.5:8486"

The active profile is `SAMPAN_PROFILE` (or `MODAL_PROFILE`) when set, else the one marked active,
else `default`, else the only one.
"""

from __future__ import annotations

import re

from .exception import InvalidError, NotFoundError

_TABLE = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_PAIR = re.compile(r'^\s*([A-Za-z0-9_.-]+)\s*=\s*(.+?)\s*$')
KEYS = ("workspace", "token_id", "token_secret", "server_url", "environment", "active")
_VALUE = re.compile(r"^[\x20-\x7e]*$")


def parse(text: str) -> dict[str, dict[str, str | bool]]:
    """The profiles of a config file; values outside a table belong to `default` (older files)."""
    profiles: dict[str, dict[str, str | bool]] = {}
    current = "default"
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        table = _TABLE.match(line)
        if table:
            current = table.group(1).strip().strip('"')
            profiles.setdefault(current, {})
            continue
        pair = _PAIR.match(line)
        if pair:
            key, value = pair.group(1), pair.group(2)
            if value in ("true", "false"):
                profiles.setdefault(current, {})[key] = value == "true"
            else:
                profiles.setdefault(current, {})[key] = value.strip().strip('"')
    return profiles


def render(profiles: dict[str, dict[str, str | bool]]) -> str:
    out = []
    for name, values in profiles.items():
        out.append(f"[{name}]")
        for key, value in values.items():
            if isinstance(value, bool):
                out.append(f"{key} = {'true' if value else 'false'}")
            else:
                if not _VALUE.match(value) or '"' in value or "\\" in value:
                    raise InvalidError(f"Invalid value for {key}: {value!r}")
                out.append(f'{key} = "{value}"')
        out.append("")
    return "\n".join(out)


def active(profiles: dict[str, dict[str, str | bool]], chosen: str | None = None) -> str | None:
    """The name of the active profile (module docstring); None when there is none."""
    if chosen:
        if chosen not in profiles:
            raise NotFoundError(f"No profile named '{chosen}' found in config.toml")
        return chosen
    marked = [name for name, values in profiles.items() if values.get("active") is True]
    if len(marked) > 1:
        raise InvalidError("More than one Modal profile is active. Please fix with `sampan profile activate` or by "
                           "editing your config file (config.toml).")
    if marked:
        return marked[0]
    if "default" in profiles:
        return "default"
    return next(iter(profiles)) if len(profiles) == 1 else None


def activate(profiles: dict[str, dict[str, str | bool]], name: str) -> dict[str, dict[str, str | bool]]:
    if name not in profiles:
        raise NotFoundError(f"No profile named '{name}' found in config.toml")
    out = {}
    for other, values in profiles.items():
        values = {k: v for k, v in values.items() if k != "active"}
        if other == name:
            values["active"] = True
        out[other] = values
    return out
