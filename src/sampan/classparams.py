"""Class parameters (`x: int = modal.parameter()`): their types, defaults and coercion. Pure.

Both sides need these rules: the SDK when a class is declared or instantiated, the server when a
request's query string or a call names an instance (server/apps.py), the container when it builds
the user's object. So they live here, below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .exception import InvalidError


class _NoDefault:
    def __repr__(self) -> str:
        return "<no default>"


NO_DEFAULT: Any = _NoDefault()

PARAMETER_TYPES = {"int": int, "str": str, "bytes": bytes, "bool": bool}


@dataclass(frozen=True)
class ClassParam:
    name: str
    type: str
    default: Any = NO_DEFAULT

    @property
    def required(self) -> bool:
        return self.default is NO_DEFAULT

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required}
        if not self.required:
            default = self.default
            out["default"] = default.decode("latin-1") if isinstance(default, bytes) else default
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClassParam:
        """The manifest's form back (bytes defaults travel as latin-1 text)."""
        default = data.get("default", NO_DEFAULT) if not data.get("required") else NO_DEFAULT
        if data["type"] == "bytes" and isinstance(default, str):
            default = default.encode("latin-1")
        return cls(data["name"], data["type"], default)


def coerce_param(param: ClassParam, value: Any) -> Any:
    """Turn a value (from Python or from a URL query string) into the parameter's declared type."""
    kind = PARAMETER_TYPES[param.type]
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if isinstance(value, str):
        if kind is str:
            return value
        if kind is bytes:
            return value.encode()
        if kind is bool:
            lowered = value.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
        if kind is int:
            try:
                return int(value)
            except ValueError:
                pass
    raise InvalidError(f"Invalid value {value!r} for parameter `{param.name}` of type {param.type}.")


def resolve_class_params(declared: tuple[ClassParam, ...], given: dict[str, Any],
                         allow_missing: bool = False) -> dict[str, Any]:
    """Defaults filled in, types checked, unknown names rejected."""
    names = {p.name for p in declared}
    unknown = sorted(set(given) - names)
    if unknown:
        raise InvalidError(f"Unknown class parameter(s): {', '.join(unknown)}.")
    out: dict[str, Any] = {}
    for p in declared:
        if p.name in given:
            out[p.name] = coerce_param(p, given[p.name])
        elif not p.required:
            out[p.name] = p.default
        elif not allow_missing:
            raise InvalidError(f"Missing required class parameter `{p.name}`.")
    return out
