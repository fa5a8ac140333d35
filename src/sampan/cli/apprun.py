"""`App.run()` from plain Python: `python -m sampan.cli.apprun FILE[::APP]`, started by the SDK.

It publishes the script's app as an ephemeral app exactly as `sampan run` does (on the running
server, else an embedded one), writes where it lives (the variables `.remote()` reads) as one JSON
line to the descriptor `SAMPAN_APP_RUN_FD`, and keeps it live until its stdin closes, when the
`with app.run():` block ends (or its process dies), then stops it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from ..config import Settings
from .run import RunSession


class AppRunSession(RunSession):
    async def _serve_until_stopped(self, banner: str) -> None:
        fd = int(os.environ.pop("SAMPAN_APP_RUN_FD"))
        with os.fdopen(fd, "w") as handshake:
            handshake.write(json.dumps(self._call_env()) + "\n")
        loop = asyncio.get_running_loop()
        closed = asyncio.Event()

        def on_stdin() -> None:
            if not os.read(0, 65536):
                loop.remove_reader(0)
                closed.set()

        loop.add_reader(0, on_stdin)
        stopper = asyncio.create_task(self.stop.wait())
        waiter = asyncio.create_task(closed.wait())
        await asyncio.wait({stopper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopper, waiter):
            task.cancel()


def main() -> None:
    ref = sys.argv[1]
    session = AppRunSession(ref, None, [], False, Settings.from_env(), os.environ.get("SAMPAN_APP_RUN_NAME") or None,
                            False, False)
    sys.exit(asyncio.run(session.run()))


if __name__ == "__main__":
    main()
