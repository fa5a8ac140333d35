"""Names of Modal's surface that Sampan accepts but has not built yet (the Sandbox): importable, so a
script loads; using one raises with what to do instead."""

from __future__ import annotations

from typing import Any, NoReturn

from .exception import InvalidError


def not_built(name: str, issue: str) -> NoReturn:
    raise InvalidError(f"`modal.{name}` is not built into Sampan yet ({issue}).")


class NotBuilt:
    """A class whose every use says it is not built yet."""

    _name = "?"
    _issue = "it is on Sampan's roadmap"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        not_built(self._name, self._issue)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr in ("create", "from_id", "from_name", "list", "from_snapshot"):
            setattr(cls, attr, classmethod(_refuse(attr)))


def _refuse(attr: str) -> Any:
    def refuse(cls: Any, *args: Any, **kwargs: Any) -> NoReturn:
        not_built(f"{cls._name}.{attr}", cls._issue)

    return refuse
