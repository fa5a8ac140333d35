"""Every command of the CLI answers `--help` (a CLI habit Modal users rely on), without a server."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from sampan.cli.main import cli


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += commands(command, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


ALL = commands(cli)


def test_the_tree_is_whole() -> None:
    names = {" ".join(c) for c in ALL}
    for expected in ("serve", "deploy", "run", "app list", "container exec", "secret create", "image prune",
                     "dict list", "queue list", "volume put", "token new", "server start"):
        assert expected in names


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "sampan")
def test_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "--help" in result.output
