"""`sampan`: the command-line interface. One module per command group; this one wires them up."""

from __future__ import annotations

import click

from .. import __version__
from .app import app
from .container import container, shell
from .dashboard import dashboard
from .deploy import deploy
from .image import image
from .objects import dict_group, queue_group
from .run import run
from .secret import secret
from .serve import serve
from .server import server
from .settings import config, curl, environment, launch, nfs, profile, setup
from .token import token
from .volume import volume
from .workspace import workspace


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sampan")
def cli() -> None:
    """Sampan: run Modal web functions on your own machines.

    Write your app exactly as for Modal (`import modal`), then `sampan serve app.py`.
    """


for command in (serve, deploy, run, server, app, secret, token, workspace, container, volume, image, dict_group,
                queue_group, config, profile, environment, setup, launch, nfs, curl, shell, dashboard):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="sampan")
