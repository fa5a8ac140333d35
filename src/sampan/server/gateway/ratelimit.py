"""Per-workspace rate limiting: a token bucket. Pure: the caller passes the time.

Modal's documented limit for a new workspace is 200 requests per second "with a burst multiplier of
5 seconds": the bucket holds `rate * burst_seconds` tokens (1,000), refills at `rate` per second,
and each request takes one. An empty bucket means 429 without touching a container.

    bucket = TokenBucket(rate=200, burst_seconds=5)
    bucket.take(now=0.0)      # True: 999 tokens left
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_RATE = 200.0
DEFAULT_BURST_SECONDS = 5.0


@dataclass
class TokenBucket:
    rate: float = DEFAULT_RATE
    burst_seconds: float = DEFAULT_BURST_SECONDS
    tokens: float = field(default=-1.0)
    updated: float | None = None

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate * self.burst_seconds)

    def take(self, now: float) -> bool:
        """Take one token if there is one; refill first from the time elapsed."""
        if self.tokens < 0 or self.updated is None:
            self.tokens, self.updated = self.capacity, now
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateLimiter:
    """One bucket per workspace; `rate <= 0` disables limiting."""

    def __init__(self, rate: float = DEFAULT_RATE, burst_seconds: float = DEFAULT_BURST_SECONDS) -> None:
        self.rate = rate
        self.burst_seconds = burst_seconds
        self.buckets: dict[str, TokenBucket] = {}

    def allow(self, workspace: str, now: float) -> bool:
        if self.rate <= 0:
            return True
        bucket = self.buckets.get(workspace)
        if bucket is None:
            bucket = self.buckets[workspace] = TokenBucket(self.rate, self.burst_seconds)
        return bucket.take(now)
