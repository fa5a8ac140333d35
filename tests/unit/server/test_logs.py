"""Log lines tagged with the function call their container was running (what FunctionCall.logs reads)."""

from __future__ import annotations

from sampan.server.logs import LATE_S, LogStore


def test_a_line_belongs_to_the_one_call_in_flight() -> None:
    logs = LogStore()
    logs.append("ta-1", "stdout", "before")
    logs.input_started("ta-1", "fc-a")
    logs.append("ta-1", "stdout", "during a")
    logs.input_started("ta-1", "fc-b")  # two at once: which printed what is unknown
    logs.append("ta-1", "stdout", "during both")
    logs.input_ended("ta-1", "fc-a")
    logs.append("ta-1", "stdout", "during b")
    logs.append("ta-2", "stdout", "elsewhere")
    assert [(ln.text, ln.call_id) for ln in logs.tail("ta-1")] == [
        ("before", ""), ("during a", "fc-a"), ("during both", ""), ("during b", "fc-b")]
    assert logs.tail("ta-2")[0].call_id == ""


def test_output_that_arrives_just_after_the_result_still_counts() -> None:
    logs = LogStore()
    logs.input_started("ta-1", "fc-a")
    logs.input_ended("ta-1", "fc-a", now=100.0)
    assert logs.call_of("ta-1", now=100.0 + LATE_S / 2) == "fc-a"
    assert logs.call_of("ta-1", now=100.0 + LATE_S * 2) == ""


def test_a_workspaces_containers_are_listed_by_workspace() -> None:
    logs = LogStore()
    logs.append("ta-1", "stdout", "x", workspace="alice")
    logs.append("ta-2", "stdout", "y", workspace="bob")
    assert logs.containers_of_workspace("alice") == ["ta-1"]
