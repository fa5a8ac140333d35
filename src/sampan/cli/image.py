"""`sampan image list|rm|prune`: the root filesystem images a Sampan server built for this workspace.

Images are shared by every workspace of a server (a layer is content-addressed), but each workspace
sees only the images it built or used, and removing one only ends this workspace's use of it: its
layers go once no image needs them. `SAMPAN_IMAGE_CACHE_MAX` caps the whole cache on the server.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import click
from rich.table import Table

from ..config import Settings
from ..server.usage import human_size
from . import output
from .client import Client

human = human_size  # image sizes, as server/usage.py writes them


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"


@click.group()
def image() -> None:
    """Manage built images (root filesystems)."""


@image.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_images(as_json: bool) -> None:
    """List this workspace's images: id, Python, size, steps and last use."""
    items = Client.connect(Settings.from_env(), start=True).get("/v1/images")
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    table = Table(title="Images")
    for column in ("Image", "Python", "Size", "Built", "Last used", "Steps"):
        table.add_column(column, overflow="fold")
    for item in items:
        steps = [s for s in item["steps"] if s]
        table.add_row(item["id"], item.get("python") or "-", human(item["size"]), _when(item.get("built_at")),
                      _when(item.get("last_used")), " → ".join(steps))
    output.print_table(table)
    total = sum(item["size"] for item in items)
    output.console.print(f"{len(items)} image(s), {human(total)} (layers shared between images count in each).")


@image.command("rm")
@click.argument("image_ids", nargs=-1, required=True)
def remove(image_ids: tuple[str, ...]) -> None:
    """Stop using images (their layers are removed once no image needs them)."""
    client = Client.connect(Settings.from_env(), start=True)
    for image_id in image_ids:
        client.delete(f"/v1/images/{quote(image_id, safe='')}")
        output.console.print(f"[green]✓[/green] Removed image {image_id}.")


@image.command("prune")
@click.option("--older-than", default="0", show_default=True,
              help="Only images not used for this long: seconds, or with a unit (30m, 12h, 7d).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def prune(older_than: str, as_json: bool) -> None:
    """Remove this workspace's images that no running app uses."""
    seconds = parse_duration(older_than)
    answer = Client.connect(Settings.from_env(), start=True).post("/v1/images/prune", {"older_than": seconds})
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    for image_id in answer["deleted"]:
        output.console.print(f"[green]✓[/green] Removed image {image_id}.")
    if not answer["deleted"]:
        output.console.print("Nothing to prune.")


def parse_duration(text: str) -> float:
    """`90`, `30m`, `12h`, `7d` into seconds."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise click.BadParameter(f"not a duration: {text!r} (try 90, 30m, 12h or 7d)") from None


__all__ = ["image", "human", "parse_duration"]
