"""How many of a `.map`'s inputs go to a container in one request: pure decisions, no I/O.

Each input of a `.map` used to be its own exchange with a container (an HTTP request, a slot of the
pool, a thread hop in the container): for a function that takes microseconds, that exchange is
nearly all of the cost. The server now sends a small function's inputs in batches (callwire.py's
batch frames), which the container runs one after the other and answers in one response, so the
exchange is paid once per batch.

Batching trades the container's own parallelism for less overhead, so it is sized by time: a
batch should take about TARGET_BATCH_S. The pool keeps a moving mean of the time per input
(`update_mean`), as the container measured it (the batch answer's timing frame: time in the function,
not the exchange, which grows with the load); `size()` turns it into a batch size. A `.map`'s first
input goes alone, as a batch of one, to measure it (the rest wait for it up to PROBE_WAIT_S). A
function of a few milliseconds or more is not batched: its inputs run in parallel, as `.remote()`
calls do, one in PROBE_EVERY as a batch of one, so that a slow first measure is not the last word.

A batch that fails as a whole (its container lost, the function's timeout passed) is run again one
input at a time, which gives each input its own outcome; inputs of it that had run are then run a
second time (Modal, too, runs an input again when its container is lost). A function with `retries`
is never batched (each input keeps its own attempts), nor a generator or a `@modal.batched` function.
"""

from __future__ import annotations

TARGET_BATCH_S = 0.005
MAX_BATCH = 64
ALPHA = 0.3  # weight of the newest measurement in the moving mean
IN_FLIGHT = 8  # batches of one `.map` request at a time (the SDK sends 4 requests at once)
PROBE_WAIT_S = 0.05  # how long a `.map` waits for its first input's measure before sending the rest
PROBE_EVERY = 16  # inputs of a function deemed slow: one in so many still goes as a batch of one


def size(mean_input_s: float | None, waiting: int) -> int:
    """Inputs in the next batch: 1 while nothing is known (or the function is slow), at most MAX_BATCH,
    and never more than are waiting."""
    if mean_input_s is None or waiting <= 1:
        return 1
    wanted = int(TARGET_BATCH_S / max(mean_input_s, 1e-6))
    return max(1, min(MAX_BATCH, wanted, waiting))


def update_mean(mean_input_s: float | None, seconds: float, inputs: int) -> float:
    """The moving mean of seconds per input, after an exchange of `inputs` inputs that took `seconds`."""
    per_input = seconds / max(1, inputs)
    return per_input if mean_input_s is None else (1 - ALPHA) * mean_input_s + ALPHA * per_input
