"""The call protocol between a container, the server and the SDK: outcomes and frames. Pure bytes, no I/O.

An outcome is one marker byte and a payload. The server never unpickles what user code made: it
reads the marker.

    O  the function returned        cloudpickle of the value
    E  the function raised          cloudpickle of (exception or None, traceback text, repr)
    I  one item of a generator      cloudpickle of the item
    Z  a generator's end            empty
    X  the server failed the call   JSON {"kind", "text"}, kind one of SERVER_KINDS

A generator's answer is a stream of frames: a 4-byte big-endian length (of marker and payload),
then the marker and the payload. `FrameReader` cuts a byte stream into frames as it arrives (the
way h11 cuts HTTP: feed bytes, take events).

A batch of a `.map`'s inputs (server/mapbatch.py) is one request of frames, `C` + call id + NUL +
pickled arguments each, answered by one outcome frame per input, in order, then a `T` frame: the
seconds the container spent running them (what sizes the next batch).

Used by runtime/kinds.py (the container makes O, E, I, Z), server/invoke.py (relays them, makes X)
and sdk/calls.py (turns them back into values and exceptions).
"""

from __future__ import annotations

import json

VALUE = b"O"
FAILURE = b"E"
ITEM = b"I"
END = b"Z"
SERVER_FAILURE = b"X"

CONTENT_VALUE = b"application/x-sampan-pickle"  # the answer to a call: one outcome
CONTENT_FRAMES = b"application/x-sampan-frames"  # the answer to a generator call: frames
CONTENT_BATCH = b"application/x-sampan-batch"  # several inputs in one request; answered with frames
CALL = b"C"  # one input of a batch
TIMING = b"T"  # the last frame of a batch's answer: seconds the container spent on its inputs

# What the server says when it fails a call itself, and the call-graph status each one gives.
SERVER_KINDS = {"timeout": "TIMEOUT", "terminated": "TERMINATED", "init": "INIT_FAILURE", "queue": "FAILURE",
                "cancelled": "TERMINATED"}


def frame(marker: bytes, data: bytes) -> bytes:
    return (len(data) + 1).to_bytes(4, "big") + marker + data


def server_failure(kind: str, text: str) -> bytes:
    """An outcome the server makes: the call failed outside the function (timeout, lost container...)."""
    return SERVER_FAILURE + json.dumps({"kind": kind, "text": text}).encode()


def parse_server_failure(outcome: bytes) -> tuple[str, str]:
    info = json.loads(outcome[1:])
    return str(info["kind"]), str(info["text"])


def is_failure(outcome: bytes) -> bool:
    return outcome[:1] in (FAILURE, SERVER_FAILURE)


def status(outcome: bytes) -> str:
    """The call-graph status (Modal's InputStatus names) of a finished call's outcome."""
    if outcome[:1] == VALUE:
        return "SUCCESS"
    if outcome[:1] != SERVER_FAILURE:
        return "FAILURE"
    return SERVER_KINDS.get(parse_server_failure(outcome)[0], "FAILURE")


def ends_stream(frame_bytes: bytes) -> bool:
    """Whether a generator's frame is its last (its end, or a failure)."""
    return frame_bytes[:1] != ITEM


class FrameReader:
    """Frames out of a byte stream: `feed(data)` returns the frames it completed, in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= 4:
            n = int.from_bytes(self._buffer[:4], "big")
            if len(self._buffer) < 4 + n:
                break
            frames.append(bytes(self._buffer[4:4 + n]))
            del self._buffer[:4 + n]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of a frame not complete yet."""
        return len(self._buffer)


def batch_body(items: list[tuple[str, bytes]]) -> bytes:
    """A batch request's body: one `C` frame per (call id, pickled arguments)."""
    return b"".join(frame(CALL, call_id.encode() + b"\0" + payload) for call_id, payload in items)


def split_batch(body: bytes) -> list[tuple[str, bytes]]:
    """(call id, pickled arguments) of each input of a batch request; ValueError for anything else."""
    reader = FrameReader()
    items = []
    for item in reader.feed(body):
        if item[:1] != CALL or b"\0" not in item:
            raise ValueError("not a batch of inputs")
        call_id, _, payload = item[1:].partition(b"\0")
        items.append((call_id.decode("ascii"), payload))
    if reader.pending:
        raise ValueError("a batch ends inside a frame")
    return items


def outcome_frame(outcome: bytes) -> bytes:
    """One input's outcome in a batch's answer."""
    return frame(outcome[:1], outcome[1:])
