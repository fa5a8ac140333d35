"""`sampan`: the command-line interface. One module per command group; this one wires them up."""

from __future__ import annotations

import click

from .. import __version__
from .container import container
from .serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sampan")
def cli() -> None:
    """Sampan: run Modal web functions on your own machines.

    Write your app exactly as for Modal (`import modal`), then `sampan serve app.py`.
    """


cli.add_command(serve)
cli.add_command(container)


def main() -> None:
    cli(prog_name="sampan")
