"""How a `.map`'s inputs are batched to containers (server/mapbatch.py) and the batch frames (callwire.py)."""

from __future__ import annotations

import asyncio

import cloudpickle
import pytest

from sampan import callwire
from sampan.runtime.kinds import call_app
from sampan.server import mapbatch


def test_nothing_known_or_one_waiting_is_a_batch_of_one() -> None:
    assert mapbatch.size(None, 100) == 1
    assert mapbatch.size(0.00001, 1) == 1


def test_a_batch_takes_about_the_target_time() -> None:
    assert mapbatch.size(0.001, 100) == 5, "1 ms inputs: five make 5 ms"
    assert mapbatch.size(0.00001, 1000) == mapbatch.MAX_BATCH, "10 µs inputs: capped"
    assert mapbatch.size(0.00001, 10) == 10, "never more than are waiting"
    assert mapbatch.size(0.004, 100) == 1 and mapbatch.size(2.0, 100) == 1, "slow functions run in parallel"


def test_the_mean_moves_toward_new_measurements() -> None:
    mean = mapbatch.update_mean(None, 0.010, 10)
    assert mean == pytest.approx(0.001)
    mean = mapbatch.update_mean(mean, 0.0, 64)
    assert mean == pytest.approx(0.001 * (1 - mapbatch.ALPHA))


def test_batch_frames_round_trip_and_refuse_anything_else() -> None:
    items = [("fc-1", b"\x80args"), ("fc-2", b""), ("fc-3", b"\0inside\0")]
    assert callwire.split_batch(callwire.batch_body(items)) == items
    with pytest.raises(ValueError):
        callwire.split_batch(callwire.frame(callwire.ITEM, b"x"))
    with pytest.raises(ValueError):
        callwire.split_batch(callwire.batch_body(items)[:-1])


def _ask(app, body: bytes, content_type: bytes) -> tuple[int, dict, bytes]:
    async def main() -> tuple[int, dict, bytes]:
        sent: list[dict] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict:
            return messages.pop(0)

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-type", content_type)]}
        await app(scope, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])

    return asyncio.run(main())


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_container_runs_a_batch_in_order_with_each_inputs_call_id(kind: str) -> None:
    from sampan.callcontext import current_call_id

    def sync_fn(x: int) -> tuple[int, str | None]:
        if x == 2:
            raise ValueError("two")
        return x * 10, current_call_id()

    async def async_fn(x: int) -> tuple[int, str | None]:
        return sync_fn(x)

    app = call_app(sync_fn if kind == "sync" else async_fn, False, 1)
    items = [(f"fc-{i}", cloudpickle.dumps(((i,), {}))) for i in range(4)]
    status, headers, body = _ask(app, callwire.batch_body(items), callwire.CONTENT_BATCH)
    assert status == 200 and headers[b"content-type"] == callwire.CONTENT_FRAMES
    frames = callwire.FrameReader().feed(body)
    assert len(frames) == 5 and frames[-1][:1] == callwire.TIMING and float(frames[-1][1:]) >= 0
    assert cloudpickle.loads(frames[0][1:]) == (0, "fc-0") and cloudpickle.loads(frames[3][1:]) == (30, "fc-3")
    assert frames[2][:1] == callwire.FAILURE
    exc, text, _ = cloudpickle.loads(frames[2][1:])
    assert isinstance(exc, ValueError) and "two" in text


def test_a_single_call_is_unchanged() -> None:
    app = call_app(lambda x: x + 1, False, 1)
    status, headers, body = _ask(app, cloudpickle.dumps(((1,), {})), callwire.CONTENT_VALUE)
    assert status == 200 and body[:1] == callwire.VALUE and cloudpickle.loads(body[1:]) == 2
