"""Web URL naming: pure functions, no I/O (fact sheet §2).

    label("demo", "square")                  -> "demo-square"
    label("demo", "files", cls="Server")     -> "demo-server-files"
    subdomain("alice", "demo-square", "dev") -> "alice--demo-square-dev"

A DNS label holds at most 63 characters. A longer subdomain keeps its first 56 characters and
gains `-` plus the first 6 hex digits of the SHA-256 of the whole overlong subdomain, so two long
names that share a prefix still differ. (Modal's docs disagree with themselves about where `-dev`
goes when truncating; Sampan applies the documented rule to the full subdomain, suffix included.)
"""

from __future__ import annotations

import re

from .exception import InvalidError

MAX_DNS_LABEL = 63
_SLUG_BAD = re.compile(r"[^a-z0-9-]")
_LABEL_OK = re.compile(r"^(?![0-9]+$)(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DEV_SUFFIX_OK = re.compile(r"^[a-zA-Z0-9]{1,8}$")


def slugify(name: str) -> str:
    """Lowercase letters, digits and dashes only: `text_to_speech` -> `text-to-speech`."""
    return _SLUG_BAD.sub("-", name.lower())


def label(app_name: str | None, function_name: str, cls: str | None = None, custom: str | None = None) -> str:
    """The label of a web function: `label=` if given, else `<app>-[<cls>-]<function>` slugified."""
    if custom is not None:
        if not _LABEL_OK.match(custom):
            raise InvalidError(
                f"Invalid label {custom!r}: a label may contain only lowercase letters, digits and dashes, "
                "must not start or end with a dash, and must be at most 63 characters."
            )
        return custom
    if cls is not None and function_name == cls:  # a server class: the class is the function
        cls = None
    parts = [p for p in (app_name, cls, function_name) if p]
    return "-".join(slugify(p) for p in parts)


def validate_dev_suffix(suffix: str) -> str:
    if not _DEV_SUFFIX_OK.match(suffix):
        raise InvalidError(
            f"Invalid value for dev_suffix config ({suffix!r}): "
            "Suffix must be an alphanumeric string of no more than 8 characters."
        )
    return suffix


def subdomain(workspace: str, label_: str, dev_suffix: str | None = None) -> tuple[str, bool]:
    """`<workspace>--<label>[-<dev_suffix>]`, truncated with a hash when over 63 characters.

    Returns the subdomain and whether it was truncated.
    """
    full = f"{slugify(workspace)}--{label_}"
    if dev_suffix:
        full = f"{full}-{dev_suffix}"
    if len(full) <= MAX_DNS_LABEL:
        return full, False
    import hashlib

    digest = hashlib.sha256(full.encode()).hexdigest()[:6]
    return f"{full[:56].rstrip('-')}-{digest}", True


def parse_host(host: str, domain: str) -> str | None:
    """The subdomain a Host header names under `domain`, or None.

    `alice--demo-square-dev.localhost:8487` with domain `localhost` -> `alice--demo-square-dev`.
    """
    host = host.strip().lower()
    if host.startswith("["):
        return None
    name = host.rsplit(":", 1)[0] if ":" in host else host
    name = name.rstrip(".")
    suffix = "." + domain.lower()
    if not name.endswith(suffix):
        return None
    sub = name[: -len(suffix)]
    if "--" not in sub or "." in sub:
        return None
    return sub
