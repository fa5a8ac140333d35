"""What `sampan run` runs on the local machine: the user's `@app.local_entrypoint()`, or a function.

Runs in its own process (`python -m sampan.cli.runner REF NAME -- ARGS`), started by `sampan run`
once the ephemeral app is live, with SAMPAN_SERVER_URL, SAMPAN_SERVER_TOKEN and SAMPAN_APP_KEY
pointing at it and SAMPAN_WEB_URLS holding the app's URLs, so that `.remote()`, `.map()` and
`.get_web_url()` work as they do under `modal run`. An entrypoint's parameters become `--flags`
(underscores as hyphens; `bool` as `--x/--no-x`); naming a function calls it with `.remote()`.
The exit status is 0 when it returns, 1 when it raises (with the user's traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import sys
from typing import Any

from .. import modal_alias
from .importer import LoadError, _user_traceback, find_app, import_ref, parse_ref

_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": bool}


def _parser(name: str, f: Any) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"sampan run ...::{name}", allow_abbrev=False)
    for p in inspect.signature(f).parameters.values():
        annotation = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "str")
        kind = _TYPES.get(annotation, str)
        flag = "--" + p.name.replace("_", "-")
        required = p.default is inspect.Parameter.empty
        if kind is bool:
            parser.add_argument(flag, dest=p.name, action=argparse.BooleanOptionalAction,
                                default=None if required else p.default, required=required)
        else:
            parser.add_argument(flag, dest=p.name, type=kind, required=required,
                                default=argparse.SUPPRESS if required else p.default)
    return parser


def _hydrate(app: Any) -> None:
    urls: dict[str, str] = json.loads(os.environ.get("SAMPAN_WEB_URLS") or "{}")
    for tag, url in urls.items():
        if tag in app.functions:
            app.functions[tag]._web_url = url
        elif "." in tag and tag.split(".", 1)[0] in app.classes:
            cls_name, method = tag.split(".", 1)
            app.classes[cls_name]._web_urls[method] = url
        elif tag in app.classes:  # a server class (`@app.server`)
            app.classes[tag]._web_urls[""] = url


def choose(app: Any, name: str | None) -> tuple[str, Any, bool]:
    """(name, callable, is an entrypoint) for `name`, or the only thing there is to run."""
    if name:
        if name in app.local_entrypoints:
            return name, app.local_entrypoints[name], True
        if name in app.functions:
            return name, app.functions[name], False
        raise LoadError(f"Nothing called {name!r} to run in this app: its local entrypoints are "
                        f"{sorted(app.local_entrypoints) or 'none'} and its functions {sorted(app.functions)}.", 2)
    if len(app.local_entrypoints) == 1:
        only = next(iter(app.local_entrypoints))
        return only, app.local_entrypoints[only], True
    plain = [tag for tag, f in app.functions.items() if f.spec.web is None]
    if not app.local_entrypoints and len(plain) == 1:
        return plain[0], app.functions[plain[0]], False
    choices = sorted(app.local_entrypoints) or plain
    raise LoadError("Specify a function or local entrypoint to run, e.g. `sampan run app.py::name`. "
                    f"Choices: {', '.join(choices) or 'none'}.", 2)


def _whole_lines() -> None:
    """Write each printed line at once. The entrypoint shares its terminal (or pipe) with the session's
    container log lines; unbuffered (PYTHONUNBUFFERED=1), `print("a", b)` is four writes, and a log
    line of a container could land inside the entrypoint's line."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True, write_through=False)


def main(argv: list[str] | None = None) -> int:
    _whole_lines()
    argv = list(sys.argv[1:] if argv is None else argv)
    module_mode = argv[:1] == ["-m"]
    if module_mode:
        argv = argv[1:]
    ref, name, rest = argv[0], argv[1] or None, argv[3:] if argv[2:3] == ["--"] else argv[2:]
    modal_alias.install()
    try:
        parsed = parse_ref(ref, module_mode)
        module, _, _ = import_ref(parsed)
        app, _ = find_app(module, parsed.app_var)
        _hydrate(app)
        name, target, entrypoint = choose(app, name)
    except LoadError as exc:
        sys.stderr.write(str(exc).rstrip("\n") + "\n")
        return 2
    raw = target if entrypoint else target.get_raw_f()
    kwargs = vars(_parser(name, raw).parse_args(rest))
    try:
        if entrypoint:
            result = target(**kwargs)
            if inspect.isawaitable(result):
                import asyncio

                asyncio.run(result)
        else:
            value = target.remote(**kwargs)
            if value is not None:
                print(value)
    except Exception as exc:  # noqa: BLE001 - shown as the user's traceback, exit status 1
        sys.stderr.write(_user_traceback(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
