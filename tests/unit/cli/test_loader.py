"""The warm loader of `sampan serve` (cli/loader.py): a fork per load, each from a fresh state, the
importer's exit code and stderr passed back; a dead loader makes serve fall back, never fail."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

from sampan.cli.loader import WarmLoader
from sampan.cli.serve import load_app

APP = """
    import modal
    app = modal.App("loaded")
    COUNT = {count}

    @app.function()
    @modal.fastapi_endpoint()
    def hello():
        return {{"count": COUNT}}
"""


def test_each_load_is_a_fresh_fork_and_failures_come_back(tmp_path: Path) -> None:
    script = tmp_path / "app.py"

    async def main() -> None:
        loader = WarmLoader()
        await loader.start()
        try:
            for count in (1, 2):
                script.write_text(textwrap.dedent(APP.format(count=count)))
                out = tmp_path / f"out{count}.json"
                code, err = await loader.load([str(script), "--out", str(out)])  # type: ignore[misc]
                assert code == 0, err
                manifest = json.loads(out.read_text())["manifest"]
                assert manifest["app_name"] == "loaded" and [f["tag"] for f in manifest["functions"]] == ["hello"]
            script.write_text("import modal\nraise RuntimeError('broken edit')\n")
            code, err = await loader.load([str(script), "--out", str(tmp_path / "bad.json")])  # type: ignore[misc]
            assert code != 0 and "broken edit" in err
            script.write_text(textwrap.dedent(APP.format(count=3)))
            loaded = await load_app(str(script), False, loader)  # the loader survived its child's failure
            assert loaded.manifest.app_name == "loaded"
            assert loader.proc is not None
            loader.proc.kill()
            await loader.proc.wait()
            assert await loader.load([str(script), "--out", str(tmp_path / "x.json")]) is None
            again = await load_app(str(script), False, loader)  # falls back to a fresh interpreter
            assert again.manifest.app_name == "loaded"
        finally:
            await loader.close()

    asyncio.run(main())
