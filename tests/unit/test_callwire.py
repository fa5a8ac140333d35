"""The call protocol (sampan/callwire.py) and the SDK's reading of it (sdk/calls.decode)."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sampan import callwire
from sampan.exception import ExecutionError, FunctionTimeoutError, InputCancellation
from sampan.sdk.calls import decode
from sampan.server.gateway import errors


@given(st.lists(st.binary(max_size=300), max_size=20), st.lists(st.integers(1, 50), min_size=1, max_size=10))
def test_frames_come_out_whole_however_the_stream_is_cut(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(callwire.frame(callwire.ITEM, p) for p in payloads) + callwire.frame(callwire.END, b"")
    reader, out, i, k = callwire.FrameReader(), [], 0, 0
    while i < len(stream):
        step = cuts[k % len(cuts)]
        out += reader.feed(stream[i:i + step])
        i, k = i + step, k + 1
    assert out == [callwire.ITEM + p for p in payloads] + [callwire.END]
    assert reader.pending == 0
    assert [callwire.ends_stream(f) for f in out] == [False] * len(payloads) + [True]


def test_outcomes_become_values_and_exceptions() -> None:
    assert decode(callwire.VALUE + cloudpickle.dumps({"x": 1})) == {"x": 1}
    failure = (ValueError("bad"), "Traceback ...\nValueError: bad", "ValueError('bad')")
    with pytest.raises(ValueError, match="bad"):
        decode(callwire.FAILURE + pickle.dumps(failure))
    with pytest.raises(FunctionTimeoutError, match="ran past"):
        decode(callwire.server_failure("timeout", "ran past 5 s"))
    with pytest.raises(InputCancellation):
        decode(callwire.server_failure("cancelled", "the call was cancelled"))
    with pytest.raises(ExecutionError, match="failed to start"):
        decode(callwire.server_failure("init", "failed to start"))


def test_statuses_are_modals_input_statuses() -> None:
    assert callwire.status(callwire.VALUE + b"x") == "SUCCESS"
    assert callwire.status(callwire.FAILURE + b"x") == "FAILURE"
    assert callwire.status(callwire.server_failure("timeout", "")) == "TIMEOUT"
    assert callwire.status(callwire.server_failure("init", "")) == "INIT_FAILURE"
    assert callwire.is_failure(callwire.server_failure("queue", "")) and not callwire.is_failure(b"O")


def test_a_platform_failure_is_one_fact_rendered_twice() -> None:
    failure = errors.timed_out(2.5)
    assert (failure.gateway_error().status, failure.gateway_error().body) == (500, errors.TIMED_OUT)
    assert callwire.parse_server_failure(failure.outcome()) == ("timeout", "the call ran past the function's "
                                                                           "timeout of 2.5 s")
    full = errors.queue_full("f", 3, "ws")
    assert full.gateway_error().status == 429 and "ws" in full.gateway_error().body
