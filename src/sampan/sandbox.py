"""`modal.sandbox`: `Sandbox`, `SandboxSnapshot`, `Probe`. Importable so that scripts load; the Sandbox
itself is its own piece of work (the Sandbox issue) and each use says so."""

from __future__ import annotations

from ._not_built import NotBuilt


class Sandbox(NotBuilt):
    _name = "Sandbox"
    _issue = "run commands in a container with `sampan run` or a function for now"


class SandboxSnapshot(NotBuilt):
    _name = "SandboxSnapshot"
    _issue = "it comes with modal.Sandbox"


class Probe(NotBuilt):
    _name = "Probe"
    _issue = "it comes with modal.Sandbox"


__all__ = ["Probe", "Sandbox", "SandboxSnapshot"]
