"""Modal's public surface: every module path a script imports resolves, legacy names still work, and
wrong arguments get Modal's texts (fact sheet modal-surface.md)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sampan as modal
from sampan.exception import InvalidError

MODULES = ["app", "functions", "cls", "partial_function", "image", "secret", "volume", "dict", "queue",
           "exception", "schedule", "retries", "call_graph", "types", "output", "gpu"]


@pytest.mark.parametrize("name", MODULES)
def test_module_paths_resolve_under_import_modal(name: str) -> None:
    code = textwrap.dedent(f"""
        from sampan import modal_alias
        modal_alias.install()
        import modal.{name} as m
        assert m.__name__ == "sampan.{name}", m.__name__
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_names_of_the_index_that_exist_now() -> None:
    for name in ("App", "Cls", "Cron", "Period", "Dict", "Error", "Function", "FunctionCall", "Image", "Queue",
                 "Retries", "Secret", "Volume", "asgi_app", "batched", "concurrent", "enable_output", "enter",
                 "exit", "fastapi_endpoint", "is_local", "method", "parameter", "web_endpoint", "web_server",
                 "wsgi_app", "current_function_call_id", "current_input_id", "call_graph", "exception", "gpu"):
        assert hasattr(modal, name), name
    from sampan.call_graph import InputInfo, InputStatus
    from sampan.functions import FunctionCall, gather

    assert InputStatus(99) is InputStatus.PENDING and InputInfo and FunctionCall and gather
    assert importlib.import_module("sampan.schedule").Cron is modal.Cron


def test_enable_output_yields_none() -> None:
    with modal.enable_output() as value:
        assert value is None


def test_legacy_gpu_objects_are_the_strings_of_today() -> None:
    from sampan.resources import Resources

    with pytest.warns(modal.exception.DeprecationError, match='Use `gpu="H100:2"` instead'):
        parsed = Resources.parse(gpu=modal.gpu.H100(count=2))
    assert [(g.type, g.count) for g in parsed.gpus] == [("H100", 2)]
    assert str(modal.gpu.A100(size="80GB")) == "A100-80GB" and str(modal.gpu.T4()) == "T4"
    with pytest.raises(ValueError, match="A100s can only have memory values of 40GB or 80GB"):
        modal.gpu.A100(size="20GB")


@pytest.mark.parametrize("kwargs, message", [
    ({"max_batch_size": 0, "wait_ms": 1}, "max_batch_size must be a positive integer."),
    ({"max_batch_size": 1001, "wait_ms": 1}, "max_batch_size cannot be greater than 1000."),
    ({"max_batch_size": 2, "wait_ms": -1}, "wait_ms must be a non-negative integer."),
    ({"max_batch_size": 2, "wait_ms": 600001}, "wait_ms cannot be greater than 600000."),
])
def test_batched_arguments(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidError, match=message):
        modal.batched(**kwargs)


def test_batched_combinations() -> None:
    app = modal.App("b")
    with pytest.raises(InvalidError, match="Callable decorators cannot be combined with web interface decorators."):
        @app.function()
        @modal.batched(max_batch_size=2, wait_ms=10)
        @modal.fastapi_endpoint()
        def web(x):  # noqa: ANN001, ANN202
            return x
    with pytest.raises(InvalidError, match="does not accept default arguments"):
        @app.function()
        @modal.batched(max_batch_size=2, wait_ms=10)
        def defaults(x=1):  # noqa: ANN001, ANN202
            return [x]
    with pytest.raises(InvalidError, match="cannot return generators"):
        @app.function()
        @modal.batched(max_batch_size=2, wait_ms=10)
        def gen(x):  # noqa: ANN001, ANN202
            yield x
    with pytest.raises(InvalidError, match="Cannot stack `@modal.batched` on top of `@app.function`"):
        @modal.batched(max_batch_size=2, wait_ms=10)
        @app.function(serialized=True)
        def above(x):  # noqa: ANN001, ANN202
            return [x]
    with pytest.raises(InvalidError, match="can only have one batched function"):
        @app.cls()
        class Two:
            @modal.batched(max_batch_size=2, wait_ms=10)
            def a(self, x):  # noqa: ANN001, ANN202
                return x

            @modal.batched(max_batch_size=2, wait_ms=10)
            def b(self, x):  # noqa: ANN001, ANN202
                return x


def test_the_batcher_gathers_concurrent_inputs_and_checks_outputs() -> None:
    import asyncio

    from sampan.runtime.kinds import Batcher, InvalidBatch

    seen: list[int] = []

    async def run(fn, lists):  # noqa: ANN001, ANN202
        return fn(**lists)

    def double(x, y):  # noqa: ANN001, ANN202
        seen.append(len(x))
        return [a * 2 + b for a, b in zip(x, y, strict=True)]

    async def scenario() -> list[int]:
        batcher = Batcher(double, 4, 50, run)
        return list(await asyncio.gather(*(batcher.submit((i,), {"y": 1}) for i in range(6))))

    assert asyncio.run(scenario()) == [1, 3, 5, 7, 9, 11] and seen == [4, 2]

    async def bad() -> None:
        batcher = Batcher(lambda x: "nope", 2, 10, run)
        await asyncio.gather(batcher.submit((1,), {}), batcher.submit((2,), {}))

    with pytest.raises(InvalidBatch, match="must be a list."):
        asyncio.run(bad())

    async def too_many() -> None:
        await Batcher(double, 2, 10, run).submit((1, 2, 3), {})

    with pytest.raises(InvalidBatch, match="takes 2 positional arguments, but one invocation in the batch has 3"):
        asyncio.run(too_many())


def test_app_run_refuses_global_scope_and_nesting(tmp_path: Path) -> None:
    script = tmp_path / "lib.py"
    script.write_text("import sampan as modal\napp = modal.App('x')\nwith app.run():\n    pass\n")
    out = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import lib"],
                         capture_output=True, text=True, timeout=60)
    assert "`App.run()` cannot be called in global scope" in out.stderr


def test_tables_piped_to_another_program_never_cut_ids() -> None:
    code = textwrap.dedent("""
        from rich.table import Table
        from sampan.cli import output
        table = Table(title="Apps")
        for column in ("App ID", "Name", "State", "Version", "Containers", "Created at", "Stopped at"):
            table.add_column(column)
        table.add_row("ap-3ac8c0d1e2f3a4b5c6d7e8f9", "acc-simple-with-a-long-name", "deployed", "3", "1",
                      "2026-12-02 03:00", "-")
        output.print_table(table)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"COLUMNS": "40", "PATH": "/usr/bin:/bin"})
    assert "ap-3ac8c0d1e2f3a4b5c6d7e8f9" in out.stdout and "acc-simple-with-a-long-name" in out.stdout, out.stdout
    assert "…" not in out.stdout


def test_log_windows_take_iso_times_and_durations() -> None:
    import datetime as dt

    import click

    from sampan.cli.app import point_in_time

    now = 1_000_000.0
    assert point_in_time("90", now) == now - 90 and point_in_time("15m", now) == now - 900
    assert point_in_time("2h", now) == now - 7200 and point_in_time("1d", now) == now - 86400
    iso = point_in_time("2026-12-01T09:00:00+00:00", now)
    assert iso == dt.datetime(2026, 12, 1, 9, tzinfo=dt.timezone.utc).timestamp()
    with pytest.raises(click.BadParameter, match="expected an ISO time"):
        point_in_time("yesterday", now)
