"""`modal.runner`: `run_app` (what `App.run` wraps) and `deploy_app` (what `App.deploy` wraps)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .exception import InvalidError
from .sdk.app import App


@dataclass(frozen=True)
class DeployResult:
    app_id: str
    app_page_url: str | None = None
    app_logs_url: str | None = None
    warnings: list[str] = field(default_factory=list)


@contextlib.contextmanager
def run_app(app: App, *, name: str | None = None, client: Any = None, detach: bool = False,
            environment_name: str | None = None, interactive: bool = False, deployment_strategy: str = "rolling",
            stream_output: bool = True) -> Iterator[App]:
    with app.run(name=name, detach=detach, interactive=interactive) as running:
        yield running


def deploy_app(app: App, name: str | None = None, *, environment_name: str | None = None, tag: str = "",
               deployment_strategy: str = "rolling", client: Any = None, staged: bool = False) -> DeployResult:
    if staged and deployment_strategy == "recreate":
        raise InvalidError("Cannot use `recreate` deployment strategy with a staged deployment")
    app.deploy(name=name, tag=tag, strategy=deployment_strategy)
    return DeployResult(app_id=app.app_id or "")


__all__ = ["DeployResult", "deploy_app", "run_app"]
