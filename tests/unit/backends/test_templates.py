"""Which containers may share a template (backends/templates.py): a pure decision on their environment."""

from __future__ import annotations

from sampan.backends.templates import TemplateKey

PY = "/venv/bin/python"
BASE = {"PATH": "/venv/bin:/usr/bin", "PYTHONUNBUFFERED": "1", "HOME": "/root", "SAMPAN_SERVER_PID": "42",
        "SAMPAN_LABEL_SERVER": "srv"}


def key(env: dict[str, str], cwd: str = "/bundle/a", snapshot: dict | None = None) -> TemplateKey:
    return TemplateKey.for_container(PY, env, cwd, snapshot, "/home/templates")


def test_functions_of_one_image_share_a_template_whatever_their_secrets_and_directories() -> None:
    a = key({**BASE, "API_KEY": "one", "MODAL_TASK_ID": "ta-1", "SAMPAN_LABEL_FUNCTION": "f"}, "/bundle/a")
    b = key({**BASE, "API_KEY": "two", "MODAL_TASK_ID": "ta-2", "SAMPAN_LABEL_FUNCTION": "g"}, "/bundle/b")
    assert a == b
    assert a.cwd == "/home/templates"
    assert dict(a.env) == {k: v for k, v in BASE.items() if k != "HOME"}, "secrets never reach a shared template"


def test_what_the_interpreter_reads_at_start_up_separates_templates() -> None:
    assert key(BASE) != key({**BASE, "PYTHONPATH": "/extra"})
    assert key(BASE) != key({**BASE, "PATH": "/other/bin"})
    assert key(BASE) != TemplateKey.for_container("/other/python", BASE, "/bundle/a", None, "/home/templates")


def test_a_memory_snapshot_template_belongs_to_its_function_and_keeps_its_environment() -> None:
    spec = {"container_id": "ta-1", "entry": {"tag": "Model.info"}, "class_params": {"size": 1}}
    one = key({**BASE, "API_KEY": "one", "MODAL_TASK_ID": "ta-1"}, "/bundle/a", spec)
    same = key({**BASE, "API_KEY": "one", "MODAL_TASK_ID": "ta-2"}, "/bundle/a", {**spec, "container_id": "ta-2"})
    assert one == same, "container ids do not matter"
    assert one.cwd == "/bundle/a" and ("API_KEY", "one") in one.env
    assert one != key({**BASE, "API_KEY": "one"}, "/bundle/a", {**spec, "class_params": {"size": 2}})
    assert one != key({**BASE, "API_KEY": "one"}, "/bundle/b", spec)
    assert one != key(BASE, "/bundle/a")
